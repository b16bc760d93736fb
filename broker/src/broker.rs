//! [`Broker`]: the cheap-to-clone façade that the HTTP layer and embedders go through:
//! publish, subscribe, pull, consumers, request/reply, and the figures management and
//! metrics report.
//!
//! It owns its parts and delegates to them; none of them knows it:
//!
//! - [`Namespaces`]: the registry of logs over the [`Storage`] engine;
//! - [`Interest`]: the registry of live subscriptions (the subject trie);
//! - [`Publisher`]: the publish path, which the dead-letter sink wraps;
//! - [`Consumers`]: at-least-once delivery, given [`ConsumerParts`];
//! - [`Confirmations`], [`Inboxes`], [`Metrics`].
//!
//! So dependencies point one way (façade → parts → storage), and closing needs no cycle
//! to be broken: [`Broker::close`] stops the streams, writes consumers a last time and
//! closes the engine.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::{Attach, Confirmations, ConsumerParts, Consumers, DeadLetterSink, Member};
use crate::error::{Error, ErrorCode};
use crate::inboxes::Inboxes;
use crate::interest::Interest;
use crate::live::Routes;
use crate::metrics::Metrics;
use crate::namespaces::{NamespacePolicy, Namespaces};
use crate::storage::{
    DiskStorage, JetStreamOptions, JetStreamStorage, MemoryStorage, OpenReport, Receipt, Storage,
    StorageError, StorageOptions,
};
use crate::subject::{Pattern, Subject};
use crate::subscription::{Delivery, StartSpec, Subscription};

pub use crate::interest::InterestGuard as SubscriptionGuard;
pub use crate::publisher::{CheckedPublish, Publish, Publisher};
pub use bus_proto::{NamespaceInfo, SubscriptionInfo};

/// Why the broker could not open.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Invalid settings.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be opened (locked, damaged, unreadable).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A page of pulled events.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, with their namespaces.
    pub events: Vec<Arc<crate::live::RoutedEvent>>,
    /// Gaps met.
    pub gaps: Vec<bus_proto::Gap>,
    /// Where to continue from.
    pub cursor: String,
}

/// Most events in one pull page.
pub const MAX_PULL_LIMIT: usize = 1000;
/// Longest wait of one pull.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(60);
/// A pull page stops once its payloads reach this many bytes (it always holds at least one
/// event when one is available).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most items in one batch publish.
pub const MAX_BATCH_ITEMS: usize = 10_000;
/// Namespaces [`Broker::refresh_stats`] asks for their figures at once, at most (a scrape
/// of thousands of namespaces on JetStream keeps this many `STREAM.INFO` in flight).
pub const REFRESH_CONCURRENCY: usize = 32;
/// Longest [`Broker::refresh_stats`] waits for fresh figures; past it (a server gone, or
/// slow), what is shown is the figures at hand.
pub const MAX_REFRESH_WAIT: Duration = Duration::from_secs(2);

/// What the façade holds: the parts, each behind its own handle.
struct Inner {
    /// The configuration in force.
    config: Config,
    /// The logs.
    namespaces: Arc<Namespaces>,
    /// Live subscriptions, as listed.
    interest: Arc<Interest>,
    /// The live path: every subscription's queue in the trie, and the routers.
    routes: Arc<Routes>,
    /// The publish path.
    publisher: Publisher,
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// Cancelled when the broker begins to shut down.
    shutdown: CancellationToken,
    /// Consumers by name.
    consumers: Arc<Consumers>,
    /// Publishes waiting for acks.
    confirmations: Arc<Confirmations>,
    /// Requests waiting for replies.
    inboxes: Inboxes,
}

/// The broker. Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

impl Broker {
    /// Opens the data directory (locking it and recovering every namespace) with `config`,
    /// on the disk engine.
    pub async fn open(mut config: Config) -> Result<(Broker, Vec<OpenReport>), BrokerError> {
        config.validate().map_err(BrokerError::Config)?;
        let overrides = config.resolve_overrides().map_err(BrokerError::Config)?;
        let mut options = StorageOptions::new(&config.data_dir);
        options.defaults = config.log.clone();
        options.overrides = overrides.into_iter().collect();
        options.fs = config.file_system.clone();
        let (storage, reports) = tokio::task::spawn_blocking(move || DiskStorage::open(options))
            .await
            .map_err(|e| BrokerError::Config(format!("open task failed: {e}")))??;
        let broker = Broker::with_storage(config, Arc::new(storage)).await?;
        Ok((broker, reports))
    }

    /// A broker on the memory engine: nothing touches the disk (`config.data_dir` is not
    /// used), everything is lost when it closes. For tests and embedding.
    pub async fn in_memory(mut config: Config) -> Result<Broker, BrokerError> {
        config.validate().map_err(BrokerError::Config)?;
        let overrides = config.overrides_in_memory().map_err(BrokerError::Config)?;
        let storage = MemoryStorage::new(config.log.clone(), overrides.into_iter().collect());
        Broker::with_storage(config, Arc::new(storage)).await
    }

    /// A broker on NATS JetStream (`options` name the servers and credentials): every
    /// namespace a stream, the broker's state a KV bucket. `config`'s log settings become
    /// the streams' limits; an fsync policy is refused (durability is the server's).
    pub async fn on_jetstream(
        mut config: Config,
        mut options: JetStreamOptions,
    ) -> Result<Broker, BrokerError> {
        config.validate().map_err(BrokerError::Config)?;
        let overrides = config.overrides_in_memory().map_err(BrokerError::Config)?;
        options.defaults = config.log.clone();
        options.overrides = overrides.into_iter().collect();
        let storage = JetStreamStorage::connect(options).await?;
        tracing::info!(servers = %storage.servers().join(","), "storage: NATS JetStream");
        Broker::with_storage(config, Arc::new(storage)).await
    }

    /// A broker on `storage`, any engine. `config`'s storage settings (data directory,
    /// fsync, retention) are the engine's business: the caller opened it with them.
    pub async fn with_storage(
        config: Config,
        storage: Arc<dyn Storage>,
    ) -> Result<Broker, BrokerError> {
        config.validate().map_err(BrokerError::Config)?;
        let policy = NamespacePolicy {
            allowed: config.namespaces.clone(),
            max: config.max_namespaces,
        };
        let namespaces = Arc::new(Namespaces::open(storage, policy).await?);
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let publisher = Publisher::new(namespaces.clone(), metrics.clone(), shutdown.clone());
        let routes = Arc::new(Routes::new(metrics.live.clone(), shutdown.clone()));
        let confirmations = Arc::new(Confirmations::default());
        let consumers = Arc::new(Consumers::new(ConsumerParts {
            namespaces: namespaces.clone(),
            metrics: metrics.clone(),
            routes: routes.clone(),
            store: namespaces.state_store(),
            dead_letters: DeadLetterSink::new(publisher.clone()),
            confirmations: confirmations.clone(),
            server_consumers: namespaces.server_consumers(),
            create_on_server: config.jetstream_consumers,
        }));
        let restored = consumers
            .restore()
            .await
            .map_err(|e| BrokerError::Config(format!("restoring consumers: {}", e.message)))?;
        if restored > 0 {
            tracing::info!(consumers = restored, "durable consumers restored");
        }
        Ok(Broker {
            inner: Arc::new(Inner {
                config,
                namespaces,
                interest: Arc::new(Interest::default()),
                routes,
                publisher,
                metrics,
                shutdown,
                consumers,
                confirmations,
                inboxes: Inboxes::default(),
            }),
        })
    }

    /// Ends every stream (through the shutdown token), writes durable consumers a last
    /// time, then syncs and closes every log.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        self.inner.consumers.close().await;
        if let Err(e) = self.inner.namespaces.close().await {
            tracing::error!(error = %e, "closing storage");
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Cancelled when the broker begins to shut down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The consumers.
    pub fn consumers(&self) -> &Consumers {
        &self.inner.consumers
    }

    /// Publishes waiting for acks.
    pub fn confirmations(&self) -> &Confirmations {
        &self.inner.confirmations
    }

    /// Requests waiting for replies.
    pub fn inboxes(&self) -> &Inboxes {
        &self.inner.inboxes
    }

    /// Attaches a live subscription to a consumer (created on first attach).
    pub async fn attach(&self, pattern: &str, from: &str, a: Attach) -> Result<Member, Error> {
        let pattern = self.parse_pattern(pattern)?;
        let start = StartSpec::parse(from)?;
        let guard = self.inner.interest.register(&pattern, "consumer");
        self.inner.consumers.attach(pattern, start, a, guard).await
    }

    /// Publishes one checked event and waits until `required` distinct consumers acked it, or
    /// `timeout`: the receipt and how many confirmed. A duplicate does not wait.
    pub async fn publish_confirmed(
        &self,
        p: CheckedPublish,
        required: usize,
        timeout: Duration,
    ) -> Result<(Receipt, Option<usize>), Error> {
        let confirms = &self.inner.confirmations;
        let interest = confirms.interest(p.subject().namespace());
        let receipt = self.publish_checked(p).await?;
        if receipt.duplicate {
            return Ok((receipt, None));
        }
        let token = self.inner.shutdown.clone();
        let n = tokio::select! {
            n = confirms.wait(&interest, &receipt.namespace, receipt.sequence, required, timeout) => n,
            _ = token.cancelled() => {
                return Err(Error::new(ErrorCode::ShuttingDown, "the broker is shutting down"));
            }
        };
        Ok((receipt, Some(n)))
    }

    /// Refuses a namespace outside `--namespaces`.
    /// Makes sure the namespace of `subject` exists before `caller` publishes there:
    /// creating it needs the caller's `create_namespace` right on it, within its quota.
    pub async fn admit_namespace(
        &self,
        subject: &Subject,
        caller: &crate::auth::Caller,
    ) -> Result<(), Error> {
        let ns = subject.namespace();
        let exists = self.inner.namespaces.check_damaged_exists(ns)?;
        if exists || subject.is_reserved() {
            return Ok(());
        }
        match caller.create_quota(ns)? {
            None => self.inner.namespaces.get_or_create(ns).await.map(|_| ()),
            Some(quota) => self
                .inner
                .namespaces
                .get_or_create_as(ns, Some((caller.name(), quota)))
                .await
                .map(|_| ()),
        }
    }

    pub(crate) fn check_allowed(&self, namespace: &str) -> Result<(), Error> {
        self.inner.namespaces.check_allowed(namespace)
    }

    /// A subject events may be stored under (see [`Publisher::check_subject`]).
    pub(crate) fn check_subject(subject: &str) -> Result<Subject, Error> {
        Publisher::check_subject(subject)
    }

    /// Publishes one event; resolves once it is durable under the namespace's policy.
    pub async fn publish(&self, p: Publish) -> Result<Receipt, Error> {
        self.inner.publisher.publish(p).await
    }

    /// [`Broker::publish`] of an event whose subject is checked already.
    pub async fn publish_checked(&self, p: CheckedPublish) -> Result<Receipt, Error> {
        self.inner.publisher.publish_checked(p).await
    }

    /// Publishes events of one namespace atomically.
    pub async fn publish_batch(&self, items: Vec<Publish>) -> Result<Vec<Receipt>, Error> {
        self.inner.publisher.publish_batch(items).await
    }

    /// [`Broker::publish_batch`] of events whose subjects are checked already.
    pub async fn publish_batch_checked(
        &self,
        items: Vec<CheckedPublish>,
    ) -> Result<Vec<Receipt>, Error> {
        self.inner.publisher.publish_batch_checked(items).await
    }

    fn parse_pattern(&self, pattern: &str) -> Result<Pattern, Error> {
        let p = Pattern::parse(pattern).map_err(Error::pattern)?;
        if let crate::subject::NamespaceScope::One(ns) = p.namespace() {
            self.check_allowed(ns)?;
            self.inner.namespaces.check_damaged(ns)?;
        }
        Ok(p)
    }

    /// Opens an unregistered subscription (a pull, a consumer's reader).
    async fn open_subscription(
        &self,
        pattern: Pattern,
        start: &StartSpec,
        guard: Option<SubscriptionGuard>,
    ) -> Result<Subscription, Error> {
        Subscription::open(
            self.inner.namespaces.clone(),
            self.inner.metrics.clone(),
            self.inner.routes.clone(),
            pattern,
            start,
            guard,
        )
        .await
    }

    /// A registered (listed, counted) subscription from `from`.
    pub async fn subscribe(&self, pattern: &str, from: &str) -> Result<Subscription, Error> {
        let pattern = self.parse_pattern(pattern)?;
        let start = StartSpec::parse(from)?;
        let guard = self.inner.interest.register(&pattern, "stream");
        self.open_subscription(pattern, &start, Some(guard)).await
    }

    /// A page of up to `limit` events from `from`, waiting up to `wait` for the first.
    pub async fn pull(
        &self,
        pattern: &str,
        from: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Page, Error> {
        let pattern = self.parse_pattern(pattern)?;
        let start = StartSpec::parse(from)?;
        let mut sub = self.open_subscription(pattern, &start, None).await?;
        let mut page = Page::default();
        let take = |d: Delivery, page: &mut Page| match d {
            Delivery::Event { event, .. } => page.events.push(event),
            Delivery::Gap {
                namespace,
                missed_from,
                resume_at,
                reason,
            } => page.gaps.push(bus_proto::Gap {
                namespace,
                missed_from,
                resume_at,
                reason,
            }),
        };
        if !wait.is_zero() {
            match sub.try_next().await? {
                Some(d) => take(d, &mut page),
                None => {
                    let token = self.inner.shutdown.clone();
                    tokio::select! {
                        d = sub.next() => { if let Some(d) = d? { take(d, &mut page) } }
                        _ = tokio::time::sleep(wait) => {}
                        _ = token.cancelled() => {
                            return Err(Error::new(ErrorCode::ShuttingDown, "the broker is shutting down"));
                        }
                    }
                }
            }
        }
        let mut bytes: usize = page.events.iter().map(|e| e.payload.len()).sum();
        while page.events.len() < limit && bytes < MAX_PAGE_BYTES {
            match sub.try_next().await {
                Ok(Some(d)) => {
                    if let Delivery::Event { event, .. } = &d {
                        bytes += event.payload.len();
                    }
                    take(d, &mut page)
                }
                Ok(None) => break,
                // Damage further on: return what was read; the cursor stops before it.
                Err(_) if !page.events.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        page.cursor = sub.cursor();
        Ok(page)
    }

    /// Brings the figures of the namespaces `wanted` names up to date where the engine keeps
    /// them from a server ([`EventLog::refresh_stats`](crate::storage::EventLog::refresh_stats));
    /// awaited before figures others may have changed are shown. At most
    /// [`REFRESH_CONCURRENCY`] namespaces are asked at once, for at most
    /// [`MAX_REFRESH_WAIT`] in all; engines that keep their figures current answer at once.
    pub async fn refresh_stats(&self, wanted: impl Fn(&str) -> bool) {
        use futures::StreamExt;
        let logs: Vec<_> = self
            .inner
            .namespaces
            .all()
            .into_iter()
            .filter(|(n, _)| wanted(n))
            .map(|(_, l)| l)
            .collect();
        let all =
            futures::stream::iter(logs).for_each_concurrent(REFRESH_CONCURRENCY, |l| async move {
                l.refresh_stats().await
            });
        // Cancelling a refresh leaves the figures as they were.
        let _ = tokio::time::timeout(MAX_REFRESH_WAIT, all).await;
    }

    /// Figures of every namespace not set aside as damaged.
    pub fn namespaces(&self) -> Vec<NamespaceInfo> {
        self.inner
            .namespaces
            .names()
            .iter()
            // Set aside, whenever found (`/healthz` lists it): as damage found at start.
            .filter(|n| self.inner.namespaces.damage(n).is_none())
            .filter_map(|n| self.namespace(n))
            .collect()
    }

    /// Refuses a namespace set aside as damaged (`503 namespace_damaged`, naming the file,
    /// the offset and the repair command).
    pub fn check_damaged(&self, name: &str) -> Result<(), Error> {
        self.inner.namespaces.check_damaged(name)
    }

    /// Figures of one namespace.
    pub fn namespace(&self, name: &str) -> Option<NamespaceInfo> {
        let log = self.inner.namespaces.get(name)?;
        let s = log.stats();
        Some(NamespaceInfo {
            name: name.to_owned(),
            events: s.events,
            bytes: s.bytes,
            first_sequence: s.first_seq,
            last_sequence: s.last_seq,
            segments: s.segments,
            subscribers: self.inner.interest.touching(name),
            fsync: self.inner.config.fsync_for(name).to_string(),
            read_only: s.read_only,
        })
    }

    /// Live subscriptions.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.inner.interest.list()
    }

    /// Whether any live subscription matches `subject` (for request/reply's no-responders).
    pub fn has_subscribers(&self, subject: &Subject) -> bool {
        self.inner.interest.has_subscribers(subject)
    }

    /// What `GET /healthz` answers: `status` is `ok`, or `degraded` while a namespace or the
    /// state log refuses writes after a storage failure (each is listed with its cause; they
    /// probe and heal by themselves), or while a namespace is set aside as damaged (listed
    /// with `"state": "damaged"` and the message its requests get; it stays so until it is
    /// repaired offline).
    pub fn health(&self) -> serde_json::Value {
        let mut damaged = serde_json::Map::new();
        for (n, message) in self.inner.namespaces.damaged() {
            damaged.insert(
                n,
                serde_json::json!({"state": "damaged", "damaged": message}),
            );
        }
        for (n, log) in self.inner.namespaces.all() {
            if let Some(cause) = log.stats().read_only
                && !damaged.contains_key(&n)
            {
                damaged.insert(
                    n,
                    serde_json::json!({"state": "read_only", "read_only": cause}),
                );
            }
        }
        let state = self.inner.namespaces.state_store().read_only();
        let status = if damaged.is_empty() && state.is_none() {
            "ok"
        } else {
            "degraded"
        };
        let state_log = match state {
            None => serde_json::json!({"state": "ok"}),
            Some(cause) => serde_json::json!({"state": "read_only", "read_only": cause}),
        };
        serde_json::json!({"status": status, "namespaces": damaged, "state_log": state_log})
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn metrics_text(&self) -> String {
        let stats: Vec<_> = self
            .inner
            .namespaces
            .all()
            .into_iter()
            .map(|(n, l)| (n, l.stats()))
            .collect();
        let mut text = self.inner.metrics.render(
            &stats,
            self.inner.interest.len(),
            &self.inner.routes.figures(),
        );
        crate::metrics::render_recovery(
            &mut text,
            self.inner.namespaces.damaged().len(),
            self.inner.namespaces.recovery(),
        );
        crate::metrics::render_info(
            &mut text,
            env!("CARGO_PKG_VERSION"),
            &self.inner.config.log.fsync,
        );
        if let Some(auth) = &self.inner.config.auth {
            use std::fmt::Write as _;
            text.push_str(
                "# HELP bus_auth_refusals_total Requests refused by authentication (401, 429) or by a missing right (403), by reason.\n# TYPE bus_auth_refusals_total counter\n",
            );
            for (reason, n) in auth.refusals() {
                let _ = writeln!(text, "bus_auth_refusals_total{{reason=\"{reason}\"}} {n}");
            }
            let _ = write!(
                text,
                "# HELP bus_auth_sessions Open session cookies.\n# TYPE bus_auth_sessions gauge\nbus_auth_sessions {}\n",
                auth.sessions_open()
            );
        }
        text
    }
}
