//! [`JetStreamOptions`]: where the NATS servers are, how to authenticate, how many replicas
//! each stream keeps, and the log settings bus maps onto stream limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::storage::{FsyncPolicy, LogConfig, StorageError};

/// Prefix of the stream that holds a namespace: namespace `user` lives in `BUS_user`.
pub const STREAM_PREFIX: &str = "BUS_";
/// The KV bucket that holds the broker's own state (consumer positions and such).
pub const STATE_BUCKET: &str = "BUS_STATE";
/// Most events one atomic batch may hold: the server's limit for atomic batch publish.
pub const MAX_ATOMIC_BATCH: usize = 1_000;

/// How to reach JetStream and what to create there.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// Server URLs (`nats://host:4222`), at least one; the client fails over between them.
    pub servers: Vec<String>,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password, with `user`.
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// A PEM file of CA certificates the servers' certificates are checked against.
    pub tls_ca: Option<PathBuf>,
    /// Refuse servers that do not speak TLS.
    pub tls_required: bool,
    /// Replicas of every stream and of the state bucket (1 on a single server; 3 or 5 in a
    /// cluster). Default: 1.
    pub replicas: usize,
    /// Settings of namespaces without an override (retention, dedup window, payload limit).
    pub defaults: LogConfig,
    /// Per-namespace settings.
    pub overrides: HashMap<String, LogConfig>,
    /// How long one request to the server may take before it counts as failed. Default: 10 s.
    pub request_timeout: Duration,
}

impl JetStreamOptions {
    /// Options for `servers` with no credentials, one replica and the default log settings.
    pub fn new(servers: Vec<String>) -> Self {
        JetStreamOptions {
            servers,
            user: None,
            password: None,
            token: None,
            creds: None,
            tls_ca: None,
            tls_required: false,
            replicas: 1,
            defaults: LogConfig::default(),
            overrides: HashMap::new(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Parses `nats://host:4222[,host2:4222...]` (each part with or without a scheme) into
    /// server URLs.
    pub fn parse_servers(spec: &str) -> Result<Vec<String>, StorageError> {
        let servers: Vec<String> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.contains("://") {
                    s.to_owned()
                } else {
                    format!("nats://{s}")
                }
            })
            .collect();
        if servers.is_empty() {
            return Err(StorageError::Config(format!(
                "no NATS server in {spec:?}: expected nats://host:4222[,host2:4222]"
            )));
        }
        Ok(servers)
    }

    /// Checks what JetStream cannot honour: an fsync policy (durability is the server's:
    /// its `sync_interval` and the stream's replicas decide it), a replica count outside
    /// 1..=5, and credentials given twice.
    pub fn validate(&self) -> Result<(), StorageError> {
        let fsync = std::iter::once(("", &self.defaults))
            .chain(self.overrides.iter().map(|(k, v)| (k.as_str(), v)))
            .find(|(_, c)| c.fsync != FsyncPolicy::Always);
        if let Some((ns, _)) = fsync {
            let whose = if ns.is_empty() {
                String::new()
            } else {
                format!(" (namespace {ns})")
            };
            return Err(StorageError::Config(format!(
                "an fsync policy{whose} cannot be set with JetStream storage: durability is the \
                 NATS server's (its jetstream sync_interval, 2 minutes by default, and the \
                 stream's replicas); set sync_interval: always on the server for fsync per write"
            )));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(StorageError::Config(format!(
                "{} replicas: JetStream keeps 1 to 5",
                self.replicas
            )));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(StorageError::Config(
                "a NATS user needs a password and a password a user".into(),
            ));
        }
        let ways = [
            self.user.is_some(),
            self.token.is_some(),
            self.creds.is_some(),
        ];
        if ways.iter().filter(|&&w| w).count() > 1 {
            return Err(StorageError::Config(
                "give one of a NATS user and password, a token or a creds file".into(),
            ));
        }
        Ok(())
    }

    /// The settings of namespace `name`.
    pub fn log_config(&self, name: &str) -> LogConfig {
        self.overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Connects to the servers.
    pub async fn connect(&self) -> Result<async_nats::Client, StorageError> {
        let mut o = async_nats::ConnectOptions::new()
            .name("bus")
            .connection_timeout(self.request_timeout)
            .request_timeout(Some(self.request_timeout));
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        if let Some(c) = &self.creds {
            o = o.credentials_file(c).await.map_err(|e| {
                StorageError::Config(format!("NATS creds file {}: {e}", c.display()))
            })?;
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone());
        }
        if self.tls_required {
            o = o.require_tls(true);
        }
        o.connect(self.servers.as_slice()).await.map_err(|e| {
            StorageError::Remote(format!(
                "connecting to NATS at {}: {e}",
                self.servers.join(",")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_lists() {
        assert_eq!(
            JetStreamOptions::parse_servers("nats://a:4222, b:4223").unwrap(),
            ["nats://a:4222", "nats://b:4223"]
        );
        assert!(JetStreamOptions::parse_servers(" , ").is_err());
    }

    #[test]
    fn refuses_fsync_and_odd_replicas() {
        let mut o = JetStreamOptions::new(vec!["nats://x".into()]);
        assert!(o.validate().is_ok());
        o.defaults.fsync = FsyncPolicy::Never;
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("sync_interval"), "{e}");
        o.defaults.fsync = FsyncPolicy::Always;
        o.replicas = 6;
        assert!(o.validate().is_err());
    }
}
