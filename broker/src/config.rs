//! The broker's configuration: every setting with its documented default, validated once at
//! start. `bus server` maps its flags and environment variables onto [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::storage::{FsyncPolicy, LogConfig, Retention};
use crate::units::{parse_duration, parse_size};

/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:2021";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./bus-data";
/// Default bound on open connections; past it new connections wait.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default bound on namespaces; creating one more is refused.
pub const DEFAULT_MAX_NAMESPACES: usize = 1_000;
/// Default interval of SSE keep-alive comments.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Default time from accepting a connection (or from a later request's first byte) to the
/// whole request head; past it the connection is closed.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to receive a whole request body; past it `408 request_timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a socket may accept no byte of pending output (a subscriber that stopped
/// reading) before its connection is closed.
pub const DEFAULT_STALLED_STREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// Default bound on connections per client address (loopback exempt by default).
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// File in the data directory keeping per-namespace overrides across restarts.
pub const OVERRIDES_FILE: &str = "namespaces.json";

/// Settings of one namespace that differ from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceOverride {
    /// `always`, `never` or `interval:<ms>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<String>,
    /// Retention by age, as a duration (`7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_age: Option<String>,
    /// Retention by bytes, as a size (`10GiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<String>,
    /// Retention by event count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_events: Option<u64>,
}

impl NamespaceOverride {
    /// Parses `key=value,...` with keys `fsync`, `retention-age`, `retention-bytes`,
    /// `retention-events`.
    pub fn parse(spec: &str) -> Result<NamespaceOverride, String> {
        let mut o = NamespaceOverride::default();
        for kv in spec.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {kv:?}"))?;
            match k.trim() {
                "fsync" => o.fsync = Some(v.trim().to_owned()),
                "retention-age" => o.retention_age = Some(v.trim().to_owned()),
                "retention-bytes" => o.retention_bytes = Some(v.trim().to_owned()),
                "retention-events" => {
                    o.retention_events = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("invalid event count {v:?}"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown namespace setting {other:?} (fsync, retention-age, retention-bytes, retention-events)"
                    ));
                }
            }
        }
        o.apply(&LogConfig::default())?;
        Ok(o)
    }

    /// Later settings win key by key.
    pub fn merge(&mut self, later: NamespaceOverride) {
        self.fsync = later.fsync.or(self.fsync.take());
        self.retention_age = later.retention_age.or(self.retention_age.take());
        self.retention_bytes = later.retention_bytes.or(self.retention_bytes.take());
        self.retention_events = later.retention_events.or(self.retention_events.take());
    }

    /// `base` with these settings applied.
    pub fn apply(&self, base: &LogConfig) -> Result<LogConfig, String> {
        let mut c = base.clone();
        if let Some(f) = &self.fsync {
            c.fsync = f.parse()?;
        }
        if let Some(a) = &self.retention_age {
            c.retention.max_age = Some(parse_duration(a)?);
        }
        if let Some(b) = &self.retention_bytes {
            c.retention.max_bytes = Some(parse_size(b)?);
        }
        if let Some(n) = self.retention_events {
            c.retention.max_events = Some(n);
        }
        Ok(c)
    }
}

/// Everything the broker is configured with. `Default` is the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address. Default: `127.0.0.1:2021`.
    pub addr: SocketAddr,
    /// Data directory. Default: `./bus-data`.
    pub data_dir: PathBuf,
    /// When set, the only namespaces that exist besides the reserved ones. Default: any,
    /// created on first publish.
    pub namespaces: Option<Vec<String>>,
    /// Settings of every namespace: fsync (default `always`), segment size (64 MiB), payload
    /// limit (1 MiB), retention (none), dedup window (2 min).
    pub log: LogConfig,
    /// Per-namespace overrides; saved in the data directory and kept on later starts.
    pub overrides: BTreeMap<String, NamespaceOverride>,
    /// Origins allowed by CORS (`*` for any). Default: none (no CORS headers).
    pub cors_origins: Vec<String>,
    /// Open connections at most; past it new connections wait (in the kernel's backlog)
    /// until one closes, which the timeouts below guarantee. Default: 10,000.
    pub max_connections: usize,
    /// Connections per client address at most (an IPv6 client counts by its /64; behind a
    /// trusted proxy, open requests per forwarded address); past it the connection is
    /// closed (a request answered `429 too_many_connections`). Default: 256.
    pub max_connections_per_client: usize,
    /// Whether loopback clients are held to `max_connections_per_client` too. Default:
    /// false, so local benchmarks and tests are unaffected.
    pub limit_loopback_clients: bool,
    /// Proxies whose PROXY protocol header or `X-Forwarded-For` names the client. Default:
    /// none.
    pub trusted_proxies: crate::trusted_proxies::TrustedProxies,
    /// From accepting a connection to its first whole request head, and from a later
    /// request's first byte to its whole head (the TLS handshake included). Default: 10 s.
    pub header_timeout: Duration,
    /// To receive a whole request body, from its head. Default: 30 s.
    pub body_timeout: Duration,
    /// A keep-alive connection with no request open is closed after this. Default: 60 s.
    pub idle_timeout: Duration,
    /// A connection whose socket accepts no byte of pending output for this long is closed
    /// (an SSE stream whose reader stopped; one that reads, however slowly, is never cut).
    /// Default: 5 min.
    pub stalled_stream_timeout: Duration,
    /// Names the broker answers for in `Host` (`example.com`, `.example.com` for it and its
    /// subdomains, an address, `*` for any); any other is `421 misdirected_request`.
    /// Default: empty, meaning only loopback names when listening on loopback without
    /// credentials, and any name otherwise.
    pub allowed_hosts: Vec<String>,
    /// Whether listening on a non-loopback address without credentials is allowed
    /// (`--allow-anonymous`). Default: false, and such an address is refused at start.
    pub allow_anonymous: bool,
    /// With `--storage nats://`, whether durable manual-ack consumers of one namespace are
    /// JetStream durable consumers (`--jetstream-consumers`; see `proto-docs/jetstream.md`).
    /// Default: true; false runs every consumer on the broker's own delivery engine. No
    /// effect on engines without server-side consumers.
    pub jetstream_consumers: bool,
    /// Credentials and permissions (`--auth FILE`): every request is authenticated and
    /// each operation checked against the caller's rights. Default: none, every client may
    /// do everything (and the loopback defaults above apply).
    pub auth: Option<std::sync::Arc<crate::auth::Auth>>,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`). Default: none,
    /// plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Interval of SSE keep-alive comments. Default: 15 s.
    pub heartbeat: Duration,
    /// Namespaces at most (each holds a directory, an open file, a writer thread and, under
    /// `fsync = always`, a syncer thread);
    /// creating one more is refused with `namespace_limit`. Default: 1,000.
    pub max_namespaces: usize,
    /// The file layer under every log. Default: the real file system; tests inject
    /// failures with [`crate::storage::io::SimFs`].
    pub file_system: std::sync::Arc<dyn crate::storage::io::FileSystem>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.parse().expect("valid default address"),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            namespaces: None,
            log: LogConfig::default(),
            overrides: BTreeMap::new(),
            cors_origins: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            limit_loopback_clients: false,
            trusted_proxies: crate::trusted_proxies::TrustedProxies::default(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            stalled_stream_timeout: DEFAULT_STALLED_STREAM_TIMEOUT,
            allowed_hosts: Vec::new(),
            allow_anonymous: false,
            jetstream_consumers: true,
            auth: None,
            tls: None,
            heartbeat: DEFAULT_HEARTBEAT,
            max_namespaces: DEFAULT_MAX_NAMESPACES,
            file_system: std::sync::Arc::new(crate::storage::io::StdFs),
        }
    }
}

impl Config {
    /// Merges the overrides saved in `data_dir` under this config's (which win key by key),
    /// saves the result back, and returns the log settings of every overridden namespace.
    pub fn resolve_overrides(&mut self) -> Result<BTreeMap<String, LogConfig>, String> {
        let saved = load_overrides(&self.data_dir)?;
        self.merge_overrides(saved, true)
    }

    /// The log settings of every overridden namespace from this config's overrides alone,
    /// touching no file (for the memory engine).
    pub fn overrides_in_memory(&mut self) -> Result<BTreeMap<String, LogConfig>, String> {
        self.merge_overrides(BTreeMap::new(), false)
    }

    fn merge_overrides(
        &mut self,
        saved: BTreeMap<String, NamespaceOverride>,
        save: bool,
    ) -> Result<BTreeMap<String, LogConfig>, String> {
        let mut merged = saved;
        for (ns, o) in std::mem::take(&mut self.overrides) {
            merged.entry(ns).or_default().merge(o);
        }
        if save && !merged.is_empty() {
            save_overrides(&self.data_dir, &merged)?;
        }
        let mut out = BTreeMap::new();
        for (ns, o) in &merged {
            crate::storage::check_namespace(ns).map_err(|e| e.to_string())?;
            out.insert(
                ns.clone(),
                o.apply(&self.log)
                    .map_err(|e| format!("namespace {ns}: {e}"))?,
            );
        }
        self.overrides = merged;
        Ok(out)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate().map_err(|e| e.to_string())?;
        if let Some(ns) = &self.namespaces {
            for n in ns {
                crate::subject::validate_namespace(n).map_err(|e| e.to_string())?;
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.heartbeat) {
            return Err(format!("heartbeat {:?} is outside 1s..=5m", self.heartbeat));
        }
        if self.max_connections == 0 {
            return Err("max connections must be positive".into());
        }
        if self.max_connections_per_client == 0 {
            return Err("max connections per client must be positive".into());
        }
        for (name, t) in [
            ("header timeout", self.header_timeout),
            ("body timeout", self.body_timeout),
            ("idle timeout", self.idle_timeout),
            ("stalled-stream timeout", self.stalled_stream_timeout),
        ] {
            if t.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        for h in &self.allowed_hosts {
            crate::http::host::check_allowed_host(h)?;
        }
        if self.credentials_configured() && self.cors_origins.iter().any(|o| o == "*") {
            return Err(
                "--cors-origin '*' cannot go with credentials: name each allowed origin".into(),
            );
        }
        self.check_exposure(self.addr)
    }

    /// Whether listening on `addr` is allowed: a non-loopback address needs credentials or
    /// `allow_anonymous`. The error says what to add.
    pub fn check_exposure(&self, addr: SocketAddr) -> Result<(), String> {
        if addr.ip().is_loopback() || self.credentials_configured() || self.allow_anonymous {
            return Ok(());
        }
        Err(format!(
            "refusing to listen on {addr} without credentials: anyone who can reach it could \
             publish, read and delete events. Listen on loopback (--addr 127.0.0.1:{port}), or \
             add --auth FILE to require credentials, or --allow-anonymous \
             (BUS_ALLOW_ANONYMOUS=true) to serve anonymous clients on the network (see \
             proto-docs/security.md)",
            port = addr.port()
        ))
    }

    /// Whether Host names are limited to loopback ones: listening on loopback, without
    /// credentials and without `allowed_hosts`.
    pub fn loopback_hosts_only(&self) -> bool {
        self.allowed_hosts.is_empty()
            && !self.credentials_configured()
            && self.addr.ip().is_loopback()
    }

    /// Whether clients must present credentials (`--auth`).
    pub fn credentials_configured(&self) -> bool {
        self.auth.is_some()
    }

    /// The fsync policy in force for `namespace`.
    pub fn fsync_for(&self, namespace: &str) -> FsyncPolicy {
        self.overrides
            .get(namespace)
            .and_then(|o| o.apply(&self.log).ok())
            .map_or(self.log.fsync, |c| c.fsync)
    }

    /// Retention in force by default.
    pub fn retention(&self) -> Retention {
        self.log.retention
    }
}

fn load_overrides(dir: &Path) -> Result<BTreeMap<String, NamespaceOverride>, String> {
    let path = dir.join(OVERRIDES_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn save_overrides(dir: &Path, o: &BTreeMap<String, NamespaceOverride>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_vec_pretty(o).map_err(|e| e.to_string())?;
    crate::storage::index::write_atomically(&dir.join(OVERRIDES_FILE), &json)
        .map_err(|e| format!("{}: {e}", dir.join(OVERRIDES_FILE).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_merge_and_are_kept() {
        let o = NamespaceOverride::parse("fsync=never,retention-age=1h").unwrap();
        assert_eq!(o.fsync.as_deref(), Some("never"));
        assert!(NamespaceOverride::parse("fsync=sometimes").is_err());
        assert!(NamespaceOverride::parse("colour=blue").is_err());
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        c.overrides.insert("rpc".into(), o);
        let logs = c.resolve_overrides().unwrap();
        assert_eq!(logs["rpc"].fsync, FsyncPolicy::Never);
        assert_eq!(
            logs["rpc"].retention.max_age,
            Some(Duration::from_secs(3600))
        );
        // A later start without flags keeps them; a flag for one key replaces only that key.
        let mut again = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        again.overrides.insert(
            "rpc".into(),
            NamespaceOverride::parse("fsync=always").unwrap(),
        );
        let logs = again.resolve_overrides().unwrap();
        assert_eq!(logs["rpc"].fsync, FsyncPolicy::Always);
        assert_eq!(
            logs["rpc"].retention.max_age,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(again.fsync_for("rpc"), FsyncPolicy::Always);
        assert_eq!(again.fsync_for("user"), FsyncPolicy::Always);
    }
}
