//! [`Broker`]: the cheap-to-clone handle that everything above storage goes through:
//! publish, subscribe, pull, and the figures management and metrics report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::{Attach, Confirmations, Consumers, Member};
use crate::error::{Error, ErrorCode};
use crate::inboxes::Inboxes;
use crate::metrics::Metrics;
use crate::storage::{
    DiskStorage, EventLog, NewEvent, OpenReport, Receipt, StateStore, Storage, StorageError,
    StorageOptions, now_ns,
};
use crate::subject::{Pattern, Subject, is_reserved_namespace};
use crate::subscription::{Delivery, StartSpec, Subscription};
use crate::trie::SharedSubjectTrie;

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

/// A live subscription as management lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionInfo {
    /// Subscription id.
    pub id: String,
    /// Its pattern.
    pub pattern: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Events delivered so far.
    pub delivered: u64,
    /// `stream` (ack mode none, no consumer) or `consumer` (a member of a consumer).
    pub kind: &'static str,
}

/// Figures of one namespace, as management reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NamespaceInfo {
    /// The namespace.
    pub name: String,
    /// Events held.
    pub events: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Oldest retained sequence (the next one when empty).
    pub first_sequence: u64,
    /// Newest sequence (0 when nothing was published).
    pub last_sequence: u64,
    /// Segment files.
    pub segments: u64,
    /// Live subscriptions whose pattern touches this namespace.
    pub subscribers: u64,
    /// The fsync policy.
    pub fsync: String,
    /// Why the namespace is read-only, if it is.
    pub read_only: Option<String>,
}

/// One event of a publish request.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// The subject, as given.
    pub subject: String,
    /// Event headers (names lowercased by the caller).
    pub headers: Vec<(String, String)>,
    /// Dedup id.
    pub msg_id: Option<String>,
    /// Reply subject.
    pub reply_to: Option<String>,
    /// Content type.
    pub content_type: Option<String>,
    /// Payload.
    pub payload: Bytes,
}

/// A page of pulled events.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, with their namespaces.
    pub events: Vec<(String, crate::storage::Event)>,
    /// Gaps met: (namespace, missed_from, resume_at).
    pub gaps: Vec<(String, u64, u64)>,
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

struct SubEntry {
    pattern: Pattern,
    started_ns: u64,
    delivered: Arc<AtomicU64>,
    kind: &'static str,
}

struct Inner {
    config: Config,
    storage: Arc<DiskStorage>,
    subs: SharedSubjectTrie<u64>,
    sub_info: Mutex<BTreeMap<u64, SubEntry>>,
    next_sub: AtomicU64,
    /// Bumped whenever a namespace is created, so multi-namespace subscriptions pick it up.
    namespaces: watch::Sender<u64>,
    metrics: Metrics,
    shutdown: CancellationToken,
    consumers: Consumers,
    confirmations: Confirmations,
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

/// Keeps a subscription registered; unregisters it when dropped.
pub struct SubscriptionGuard {
    broker: Broker,
    id: u64,
    pattern: Pattern,
    delivered: Arc<AtomicU64>,
}

impl SubscriptionGuard {
    /// Counts one delivery.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscription's id.
    pub fn id(&self) -> String {
        format!("s-{}", self.id)
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.broker.inner.subs.remove(&self.pattern, &self.id);
        crate::storage::log::lock(&self.broker.inner.sub_info).remove(&self.id);
    }
}

impl Broker {
    /// Opens the data directory (locking it and recovering every namespace) with `config`.
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
        let broker = Broker {
            inner: Arc::new(Inner {
                config,
                storage: Arc::new(storage),
                subs: SharedSubjectTrie::new(),
                sub_info: Mutex::new(BTreeMap::new()),
                next_sub: AtomicU64::new(1),
                namespaces: watch::Sender::new(0),
                metrics: Metrics::default(),
                shutdown: CancellationToken::new(),
                consumers: Consumers::default(),
                confirmations: Confirmations::default(),
                inboxes: Inboxes::default(),
            }),
        };
        let restored = broker
            .inner
            .consumers
            .restore(&broker)
            .map_err(|e| BrokerError::Config(format!("restoring consumers: {}", e.message)))?;
        if restored > 0 {
            tracing::info!(consumers = restored, "durable consumers restored");
        }
        Ok((broker, reports))
    }

    /// Syncs and closes every log. Streams end first (through the shutdown token).
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        // Consumers hold the broker (through their readers): forgetting them breaks the cycle.
        self.inner.consumers.close().await;
        if let Err(e) = self.inner.storage.close().await {
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

    /// The broker's own durable state.
    pub(crate) fn state_store(&self) -> Arc<dyn StateStore> {
        self.inner.storage.state()
    }

    /// Attaches a live subscription to a consumer (created on first attach).
    pub async fn attach(&self, pattern: &str, from: &str, a: Attach) -> Result<Member, Error> {
        let pattern = self.parse_pattern(pattern)?;
        let start = StartSpec::parse(from)?;
        let guard = self.register(&pattern, "consumer");
        self.inner
            .consumers
            .attach(self, pattern, start, a, guard)
            .await
    }

    /// Publishes one event and waits until `required` distinct consumers acked it, or
    /// `timeout`: the receipt and how many confirmed. A duplicate does not wait.
    pub async fn publish_confirmed(
        &self,
        p: Publish,
        required: usize,
        timeout: Duration,
    ) -> Result<(Receipt, Option<usize>), Error> {
        let subject = Self::check_subject(&p.subject)?;
        let confirms = &self.inner.confirmations;
        let interest = confirms.interest(subject.namespace());
        let receipt = self.publish(p).await?;
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

    /// Publishes an event the broker makes itself (dead letters), into any namespace.
    pub(crate) async fn publish_internal(&self, p: Publish) -> Result<Receipt, Error> {
        let mut receipts = self.append_checked(vec![p], false, true).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::internal("publishing", "no receipt"))
    }

    pub(crate) fn namespace_changes(&self) -> watch::Receiver<u64> {
        self.inner.namespaces.subscribe()
    }

    pub(crate) fn namespace_names(&self) -> Vec<String> {
        self.inner.storage.namespaces()
    }

    pub(crate) fn log(&self, namespace: &str) -> Option<Arc<dyn EventLog>> {
        self.inner
            .storage
            .namespace(namespace, false)
            .ok()
            .flatten()
    }

    pub(crate) fn check_allowed(&self, namespace: &str) -> Result<(), Error> {
        if let Some(allowed) = &self.inner.config.namespaces
            && !is_reserved_namespace(namespace)
            && !allowed.iter().any(|a| a == namespace)
        {
            return Err(Error::new(
                ErrorCode::UnknownNamespace,
                format!(
                    "namespace {namespace:?} does not exist; namespaces: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The log of `namespace`, created on first use.
    fn log_for_publish(&self, namespace: &str) -> Result<Arc<dyn EventLog>, Error> {
        self.check_allowed(namespace)?;
        if let Some(log) = self.log(namespace) {
            return Ok(log);
        }
        let max = self.inner.config.max_namespaces;
        if self.inner.storage.namespaces().len() >= max {
            return Err(Error::new(
                ErrorCode::NamespaceLimit,
                format!(
                    "cannot create namespace {namespace:?}: the broker holds its limit of {max} namespaces (--max-namespaces)"
                ),
            ));
        }
        let log = self
            .inner
            .storage
            .namespace(namespace, true)?
            .ok_or_else(|| Error::internal("creating a namespace", namespace))?;
        self.inner.namespaces.send_modify(|v| *v += 1);
        tracing::info!(namespace, "namespace created");
        Ok(log)
    }

    fn new_event(p: Publish) -> Result<NewEvent, Error> {
        if let Some(r) = &p.reply_to {
            Subject::parse(r).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidHeader,
                    format!("invalid reply subject: {e}"),
                )
            })?;
        }
        Ok(NewEvent {
            subject: p.subject,
            headers: p.headers,
            reply_to: p.reply_to,
            msg_id: p.msg_id,
            content_type: p.content_type,
            payload: p.payload,
        })
    }

    /// A subject events may be stored under. Inboxes are never stored: a reply goes through
    /// [`Broker::reply`], so here every inbox counts as not live.
    pub(crate) fn check_subject(subject: &str) -> Result<Subject, Error> {
        let s = Subject::parse(subject).map_err(Error::subject)?;
        s.check_publish(|_| false).map_err(Error::subject)?;
        Ok(s)
    }

    /// Publishes one event; resolves once it is durable under the namespace's policy.
    pub async fn publish(&self, p: Publish) -> Result<Receipt, Error> {
        let mut receipts = self.append(vec![p], false).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::internal("publishing", "no receipt"))
    }

    /// Publishes events of one namespace atomically.
    pub async fn publish_batch(&self, items: Vec<Publish>) -> Result<Vec<Receipt>, Error> {
        self.append(items, true).await
    }

    /// Appends; errors name the item at fault when `batch` is set.
    async fn append(&self, items: Vec<Publish>, batch: bool) -> Result<Vec<Receipt>, Error> {
        self.append_checked(items, batch, false).await
    }

    /// Appends; `internal` events may go to reserved namespaces and exceed the client limits.
    async fn append_checked(
        &self,
        items: Vec<Publish>,
        batch: bool,
        internal: bool,
    ) -> Result<Vec<Receipt>, Error> {
        let at_item = |e: Error, i: usize| if batch { at_item(e, i) } else { e };
        let started = Instant::now();
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::new(
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
            ));
        }
        let mut namespace: Option<String> = None;
        let mut events = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for (i, p) in items.into_iter().enumerate() {
            let subject = if internal {
                Subject::parse_internal(&p.subject).map_err(Error::subject)?
            } else {
                Self::check_subject(&p.subject).map_err(|e| at_item(e, i))?
            };
            match &namespace {
                None => namespace = Some(subject.namespace().to_owned()),
                Some(ns) if ns != subject.namespace() => {
                    return Err(Error::new(
                        ErrorCode::InvalidBatch,
                        format!(
                            "item {i}: subject {:?} is not in namespace {ns:?}: a batch must stay in one namespace",
                            p.subject
                        ),
                    ));
                }
                Some(_) => {}
            }
            sizes.push(p.payload.len() as u64);
            events.push(Self::new_event(p).map_err(|e| at_item(e, i))?);
        }
        let namespace =
            namespace.ok_or_else(|| Error::new(ErrorCode::InvalidBatch, "empty batch"))?;
        let log = self.log_for_publish(&namespace)?;
        let receipts = log.append(events).await.map_err(|e| match Error::from(e) {
            e if !batch && e.code == ErrorCode::InvalidBatch => {
                Error::new(ErrorCode::InvalidHeader, e.message)
            }
            e => e,
        })?;
        let fresh = receipts.iter().filter(|r| !r.duplicate).count() as u64;
        let fresh_bytes: u64 = receipts
            .iter()
            .zip(&sizes)
            .filter(|(r, _)| !r.duplicate)
            .map(|(_, n)| n)
            .sum();
        let c = self.inner.metrics.namespace(&namespace);
        c.published.fetch_add(fresh, Ordering::Relaxed);
        c.published_bytes.fetch_add(fresh_bytes, Ordering::Relaxed);
        self.inner
            .metrics
            .publish_latency
            .observe(started.elapsed());
        Ok(receipts)
    }

    fn parse_pattern(&self, pattern: &str) -> Result<Pattern, Error> {
        let p = Pattern::parse(pattern).map_err(Error::pattern)?;
        if let crate::subject::NamespaceScope::One(ns) = p.namespace() {
            self.check_allowed(ns)?;
        }
        Ok(p)
    }

    /// A registered (listed, counted) subscription from `from`.
    pub fn subscribe(&self, pattern: &str, from: &str) -> Result<Subscription, Error> {
        let pattern = self.parse_pattern(pattern)?;
        let start = StartSpec::parse(from)?;
        let guard = self.register(&pattern, "stream");
        Subscription::open(self.clone(), pattern, &start, Some(guard))
    }

    /// Registers a live subscriber of `pattern` (listed, counted, and seen by
    /// [`Broker::has_subscribers`]) until the guard drops.
    pub(crate) fn register(&self, pattern: &Pattern, kind: &'static str) -> SubscriptionGuard {
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let delivered = Arc::new(AtomicU64::new(0));
        self.inner.subs.insert(pattern, id);
        crate::storage::log::lock(&self.inner.sub_info).insert(
            id,
            SubEntry {
                pattern: pattern.clone(),
                started_ns: now_ns(),
                delivered: delivered.clone(),
                kind,
            },
        );
        SubscriptionGuard {
            broker: self.clone(),
            id,
            pattern: pattern.clone(),
            delivered,
        }
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
        let mut sub = Subscription::open(self.clone(), pattern, &start, None)?;
        let mut page = Page::default();
        let take = |d: Delivery, page: &mut Page| match d {
            Delivery::Event {
                namespace, event, ..
            } => page.events.push((namespace, event)),
            Delivery::Gap {
                namespace,
                missed_from,
                resume_at,
            } => page.gaps.push((namespace, missed_from, resume_at)),
        };
        if !wait.is_zero() {
            match sub.try_next()? {
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
        let mut bytes: usize = page.events.iter().map(|(_, e)| e.payload.len()).sum();
        while page.events.len() < limit && bytes < MAX_PAGE_BYTES {
            match sub.try_next() {
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

    /// Figures of every namespace.
    pub fn namespaces(&self) -> Vec<NamespaceInfo> {
        self.namespace_names()
            .iter()
            .filter_map(|n| self.namespace(n))
            .collect()
    }

    /// Figures of one namespace.
    pub fn namespace(&self, name: &str) -> Option<NamespaceInfo> {
        let log = self.log(name)?;
        let s = log.stats();
        let subscribers = crate::storage::log::lock(&self.inner.sub_info)
            .values()
            .filter(|e| e.pattern.may_match_namespace(name))
            .count() as u64;
        Some(NamespaceInfo {
            name: name.to_owned(),
            events: s.events,
            bytes: s.bytes,
            first_sequence: s.first_seq,
            last_sequence: s.last_seq,
            segments: s.segments,
            subscribers,
            fsync: self.inner.config.fsync_for(name).to_string(),
            read_only: s.read_only,
        })
    }

    /// Live subscriptions.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        crate::storage::log::lock(&self.inner.sub_info)
            .iter()
            .map(|(id, e)| SubscriptionInfo {
                id: format!("s-{id}"),
                pattern: e.pattern.as_str().to_owned(),
                started: crate::units::format_rfc3339(e.started_ns),
                delivered: e.delivered.load(Ordering::Relaxed),
                kind: e.kind,
            })
            .collect()
    }

    /// Whether any live subscription matches `subject` (for request/reply's no-responders).
    pub fn has_subscribers(&self, subject: &Subject) -> bool {
        !self.inner.subs.matches(subject).is_empty()
    }

    /// The Prometheus text of `GET /metrics`.
    /// What `GET /healthz` answers: `status` is `ok`, or `degraded` while a namespace or the
    /// state log refuses writes after a storage failure (each is listed with its cause; they
    /// probe and heal by themselves).
    pub fn health(&self) -> serde_json::Value {
        let mut damaged = serde_json::Map::new();
        for n in self.namespace_names() {
            if let Some(cause) = self.log(&n).and_then(|l| l.stats().read_only) {
                damaged.insert(
                    n,
                    serde_json::json!({"state": "read_only", "read_only": cause}),
                );
            }
        }
        let state = self.inner.storage.state_stats().read_only;
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

    pub fn metrics_text(&self) -> String {
        let stats: Vec<_> = self
            .namespace_names()
            .into_iter()
            .filter_map(|n| self.log(&n).map(|l| (n, l.stats())))
            .collect();
        let subs = crate::storage::log::lock(&self.inner.sub_info).len();
        self.inner.metrics.render(&stats, subs)
    }
}

fn at_item(e: Error, i: usize) -> Error {
    Error::new(e.code, format!("item {i}: {}", e.message))
}
