//! [`JetStreamStorage`]: the storage engine on a NATS JetStream server or cluster.
//!
//! Each namespace is a stream `BUS_<namespace>` over subjects `<namespace>` and
//! `<namespace>.>`, created with `bus.namespace` and `bus.incarnation` in its metadata;
//! streams without that mark are not bus's and are left alone (a namespace whose stream
//! name is taken by one is refused). The broker's state is the KV bucket `BUS_STATE`.
//! Retention is the stream's limits (`max_age`, `max_bytes`, `max_msgs`, discard old), the
//! dedup window its duplicate window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use futures::future::BoxFuture;

use super::consumer::{JsConsumers, Logs};
use super::log::{JetStreamLog, remote};
use super::options::{JetStreamOptions, STATE_BUCKET, STREAM_PREFIX};
use super::state::KvState;
use crate::storage::{
    EventLog, LogConfig, ServerConsumers, StateStore, Storage, StorageError, check_namespace,
};

/// The metadata key naming the namespace a stream holds (bus's mark).
pub const META_NAMESPACE: &str = "bus.namespace";
/// The metadata key holding the incarnation ids are made with.
pub const META_INCARNATION: &str = "bus.incarnation";

/// The JetStream engine.
pub struct JetStreamStorage {
    /// How it was reached and what it creates.
    options: JetStreamOptions,
    /// The connection.
    client: async_nats::Client,
    /// JetStream on it.
    js: jetstream::Context,
    /// Namespaces opened, by name (shared with the consumers, which run on their streams).
    logs: Logs,
    /// Durable consumers on the streams.
    consumers: Arc<JsConsumers>,
    /// The broker's state.
    state: Arc<KvState>,
}

impl std::fmt::Debug for JetStreamStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStorage")
            .field("servers", &self.options.servers)
            .finish()
    }
}

/// A stream's config for namespace `name` with `config`'s limits.
fn stream_config(
    name: &str,
    config: &LogConfig,
    replicas: usize,
    metadata: HashMap<String, String>,
) -> stream::Config {
    let r = config.retention;
    let mut dup = config.dedup_window;
    if let Some(age) = r.max_age {
        dup = dup.min(age);
    }
    stream::Config {
        name: format!("{STREAM_PREFIX}{name}"),
        subjects: vec![name.to_owned(), format!("{name}.>")],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: r.max_age.unwrap_or_default(),
        max_bytes: r.max_bytes.map_or(-1, |b| b.min(i64::MAX as u64) as i64),
        max_messages: r.max_events.map_or(-1, |n| n.min(i64::MAX as u64) as i64),
        max_messages_per_subject: -1,
        max_consumers: -1,
        duplicate_window: if dup.is_zero() {
            std::time::Duration::from_millis(1)
        } else {
            dup
        },
        allow_direct: true,
        allow_atomic_publish: true,
        metadata,
        ..stream::Config::default()
    }
}

impl JetStreamStorage {
    /// Connects, checks that the server has JetStream, and opens (or creates) the state
    /// bucket.
    pub async fn connect(options: JetStreamOptions) -> Result<Self, StorageError> {
        options.validate()?;
        let client = options.connect().await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(options.request_timeout);
        js.query_account()
            .await
            .map_err(|e| remote("JetStream is not enabled on the NATS server", e))?;
        let kv = match js.get_key_value(STATE_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(jetstream::kv::Config {
                    bucket: STATE_BUCKET.to_owned(),
                    description: "bus: the broker's durable state".into(),
                    history: 1,
                    storage: stream::StorageType::File,
                    num_replicas: options.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| remote("creating the state bucket", e))?,
        };
        let logs: Logs = Arc::new(RwLock::new(BTreeMap::new()));
        let consumers = Arc::new(JsConsumers::new(
            client.clone(),
            logs.clone(),
            options.replicas,
            options.request_timeout,
        ));
        Ok(JetStreamStorage {
            options,
            client,
            js,
            logs,
            consumers,
            state: Arc::new(KvState::new(kv)),
        })
    }

    /// Namespace `name`'s log if it is open here, for what only this engine has
    /// ([`JetStreamLog::info_requests`]).
    pub fn log(&self, name: &str) -> Option<Arc<JetStreamLog>> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The servers, for the startup log.
    pub fn servers(&self) -> &[String] {
        &self.options.servers
    }

    /// Creates namespace `name`'s stream to receive events copied from another engine: its
    /// sequences start at `first_seq` and its ids carry `incarnation`. Refused when the
    /// stream exists.
    pub async fn import_namespace(
        &self,
        name: &str,
        first_seq: u64,
        incarnation: u32,
    ) -> Result<Arc<JetStreamLog>, StorageError> {
        check_namespace(name)?;
        let stream_name = format!("{STREAM_PREFIX}{name}");
        if self.js.get_stream(&stream_name).await.is_ok() {
            return Err(StorageError::Config(format!(
                "stream {stream_name} exists already: migrate moves into an empty JetStream \
                 and overwrites nothing"
            )));
        }
        let config = self.options.log_config(name);
        let metadata = HashMap::from([
            (META_NAMESPACE.to_owned(), name.to_owned()),
            (META_INCARNATION.to_owned(), incarnation.to_string()),
        ]);
        let mut c = stream_config(name, &config, self.options.replicas, metadata);
        c.first_sequence = Some(first_seq.max(1));
        let info = self
            .js
            .create_stream(c)
            .await
            .map_err(|e| remote("creating a stream", e))?
            .info()
            .await
            .map_err(|e| remote("reading a new stream", e))?
            .clone();
        let log = JetStreamLog::open(
            name,
            stream_name,
            config,
            incarnation,
            self.client.clone(),
            self.js.clone(),
            &info.state,
        );
        self.logs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), log.clone());
        Ok(log)
    }

    async fn open(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<Arc<JetStreamLog>>, StorageError> {
        check_namespace(name)?;
        if let Some(l) = self
            .logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(Some(l.clone()));
        }
        let stream_name = format!("{STREAM_PREFIX}{name}");
        let config = self.options.log_config(name);
        let info = match self.js.get_stream(&stream_name).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| remote("reading a stream", e))?
                    .clone();
                if info.config.metadata.get(META_NAMESPACE).map(String::as_str) != Some(name) {
                    return Err(StorageError::Config(format!(
                        "stream {stream_name} exists but bus did not create it (no \
                         {META_NAMESPACE} in its metadata): it is left alone, so namespace \
                         {name} cannot be used"
                    )));
                }
                // The limits follow the configuration; the mark and incarnation stay.
                let want = stream_config(
                    name,
                    &config,
                    info.config.num_replicas.max(1),
                    info.config.metadata.clone(),
                );
                let same = want.max_age == info.config.max_age
                    && want.max_bytes == info.config.max_bytes
                    && want.max_messages == info.config.max_messages
                    && want.duplicate_window == info.config.duplicate_window;
                if same {
                    info
                } else {
                    let mut c = info.config.clone();
                    c.max_age = want.max_age;
                    c.max_bytes = want.max_bytes;
                    c.max_messages = want.max_messages;
                    c.duplicate_window = want.duplicate_window;
                    self.js
                        .update_stream(c)
                        .await
                        .map_err(|e| remote("updating a stream's limits", e))?
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                if !create {
                    return Ok(None);
                }
                let incarnation = (uuid::Uuid::new_v4().as_u128() >> 96) as u32;
                let metadata = HashMap::from([
                    (META_NAMESPACE.to_owned(), name.to_owned()),
                    (META_INCARNATION.to_owned(), incarnation.to_string()),
                ]);
                let c = stream_config(name, &config, self.options.replicas, metadata);
                self.js
                    .create_stream(c)
                    .await
                    .map_err(|e| remote("creating a stream", e))?
                    .info()
                    .await
                    .map_err(|e| remote("reading a new stream", e))?
                    .clone()
            }
            Err(e) => return Err(remote("reading a stream", e)),
        };
        let incarnation = info
            .config
            .metadata
            .get(META_INCARNATION)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                StorageError::Remote(format!("stream {stream_name} has no {META_INCARNATION}"))
            })?;
        let log = JetStreamLog::open(
            name,
            stream_name,
            config,
            incarnation,
            self.client.clone(),
            self.js.clone(),
            &info.state,
        );
        log.load_recent().await?;
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let log = logs.entry(name.to_owned()).or_insert(log).clone();
        Ok(Some(log))
    }
}

impl Storage for JetStreamStorage {
    fn namespace<'a>(
        &'a self,
        name: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn EventLog>>, StorageError>> {
        Box::pin(async move {
            Ok(self
                .open(name, create)
                .await?
                .map(|l| Arc::new(l) as Arc<dyn EventLog>))
        })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        Box::pin(async move {
            let mut names = Vec::new();
            let mut streams = self.js.streams();
            while let Some(info) = streams.next().await {
                let info = info.map_err(|e| remote("listing streams", e))?;
                if let Some(ns) = info.config.metadata.get(META_NAMESPACE)
                    && info.config.name == format!("{STREAM_PREFIX}{ns}")
                    && check_namespace(ns).is_ok()
                {
                    names.push(ns.clone());
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn server_consumers(&self) -> Option<Arc<dyn ServerConsumers>> {
        Some(self.consumers.clone())
    }

    fn state(&self) -> Arc<dyn StateStore> {
        self.state.clone()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let logs: Vec<_> = self
                .logs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            for log in logs {
                log.close();
            }
            // Bounded: with the server gone, a flush would wait for it forever.
            match tokio::time::timeout(self.options.request_timeout, self.client.flush()).await {
                Ok(r) => r.map_err(|e| remote("flushing the NATS connection", e)),
                Err(_) => Err(StorageError::Remote(
                    "the NATS server did not answer the closing flush".into(),
                )),
            }
        })
    }
}
