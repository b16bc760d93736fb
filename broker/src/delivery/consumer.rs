//! [`Consumer`]: one durable consumer, ephemeral queue group, or manual-ack subscription,
//! shared by its members (live subscriptions). Each event goes to exactly one member.
//!
//! The consumer reads the log through one shared [`Subscription`] (the log is the buffer:
//! nothing is queued in memory ahead of the members), and keeps its bookkeeping in a
//! [`ConsumerState`]. A member asking for its next delivery gets, in order: a pending event
//! that is ready to go out again (lowest sequence first), else, while the consumer has room
//! under `max_in_flight` and the member under its own cap, the next matching event from the
//! log. Members take turns at the reader (a fair lock), which spreads events over them.
//!
//! Durable consumers persist their state as one record in the broker's state store. Acks
//! wait until a record that includes them is durable; many acks share one write (the writer
//! takes the newest state each time round, so acks arriving during a write ride the next
//! one). Other changes (deliveries, nacks) are written within [`LAZY_PERSIST`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::consumer_state::{ConsumerState, Key, MemberId, Outcome, Snapshot, Verb};
use super::parts::ConsumerParts;
use super::settings::{AckMode, ConsumerSettings};
use crate::error::{Error, ErrorCode};
use crate::live::RoutedEvent;
use crate::publisher::Publish;
use crate::storage::{Event, GapReason, ReadItem, Start, StateStore, parse_event_id};
use crate::subject::NamespaceScope;
use crate::subject::{Pattern, Subject};
use crate::subscription::{Delivery, StartSpec, Subscription};
use crate::sync::lock;

mod server_backed;

use server_backed::{ServerBacked, ServerRecord, server_config};

/// Longest time a change that no ack waits for stays unwritten.
pub const LAZY_PERSIST: Duration = Duration::from_millis(100);
/// Prefix of the dead-letter subjects: `_bus_.dead.<original subject>`.
pub const DEAD_LETTER_PREFIX: &str = "_bus_.dead";
/// Key prefix of durable consumers in the state store.
pub const STATE_PREFIX: &str = "consumer/";

/// What kind of consumer (the wire type; this broker makes only `Durable`, `Group` and
/// `Subscription`).
pub use bus_proto::ConsumerKind;

/// The persisted record of a durable consumer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConsumerRecord {
    /// Its name.
    pub name: String,
    /// Its filter pattern.
    pub pattern: String,
    /// Its settings.
    pub settings: ConsumerSettings,
    /// When it was created (ns since the epoch).
    pub created_ns: u64,
    /// Its position and pending deliveries (empty when the storage engine keeps them).
    pub state: Snapshot,
    /// Set when the storage engine keeps its deliveries (a JetStream durable consumer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerRecord>,
}

/// What a member receives.
#[derive(Debug, Clone)]
pub enum Out {
    /// An event, with its delivery count (1 on first delivery).
    Event {
        /// The event, with its namespace (shared with other subscriptions it went to).
        event: Arc<RoutedEvent>,
        /// Deliveries of this event to this consumer, this one included.
        count: u32,
    },
    /// Events are gone (retention, or damage) before they were delivered or acknowledged.
    Gap {
        /// The namespace.
        namespace: String,
        /// First sequence missed.
        missed_from: u64,
        /// Where delivery resumes.
        resume_at: u64,
        /// Why they are gone.
        reason: GapReason,
    },
}

/// Why an event goes to the dead-letter subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Delivered `max_deliver` times without an ack.
    MaxDeliver,
    /// A member said `term`.
    Terminated,
}

impl DeadReason {
    fn as_str(self) -> &'static str {
        match self {
            DeadReason::MaxDeliver => "max_deliver",
            DeadReason::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Durable {
    /// Highest state version known durable.
    version: u64,
    /// Failed writes so far. Each one rolled back every resolution not yet durable, so a
    /// waiter that saw fewer failures when its ack was applied answers with an error; the
    /// next write is tried afresh (the state log heals by itself).
    failures: u64,
    /// Set when the writer stopped (the broker closes, or the consumer was deleted): what
    /// is not durable by then never will be, so its waiters are answered at once.
    stopped: bool,
}

/// Longest pause between attempts to write a changed state that no ack waits for, after a
/// failed write (an ack waiting tries again at once).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

struct Persist {
    store: Arc<dyn StateStore>,
    durable: watch::Sender<Durable>,
    /// An ack waits: write now.
    urgent: Notify,
    /// Something changed: write within [`LAZY_PERSIST`].
    nudge: Notify,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Outcome of reading one event back for redelivery or dead-lettering.
enum ReadBack {
    Found(Event),
    Gone { resume_at: u64, reason: GapReason },
}

/// A consumer. See the module documentation.
pub struct Consumer {
    name: String,
    kind: ConsumerKind,
    pattern: Pattern,
    created_ns: u64,
    /// The parts of the broker it works with (logs, metrics, state, dead letters).
    parts: ConsumerParts,
    state: std::sync::Mutex<ConsumerState>,
    /// Woken when a delivery may have become possible (ack, nack, member left, seek...).
    changed: Notify,
    /// The shared reader (`None` when the storage engine delivers: see `server`).
    reader: Option<tokio::sync::Mutex<Subscription>>,
    /// Set when the storage engine keeps the deliveries (`consumer/server_backed.rs`).
    server: Option<ServerBacked>,
    /// Whether the reader is live everywhere (kept by the reader, also across a seek's new
    /// one; members' listings show it).
    live: Arc<AtomicBool>,
    /// Set while a seek waits for the reader, so that no member takes it meanwhile.
    seeking: AtomicBool,
    /// Cancelled when the consumer is deleted (or its last member left, for ephemeral ones).
    deleted: CancellationToken,
    persist: Option<Persist>,
    /// The principal that created a single subscription's consumer (`~s-<n>`), the only one
    /// (besides an admin) that may ack or manage it; unset for named consumers, whose rights
    /// go by name.
    owner: std::sync::OnceLock<std::sync::Arc<str>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("pattern", &self.pattern.as_str())
            .finish()
    }
}

/// A consumer as `GET /v1/consumers` lists it (the wire type).
pub use bus_proto::ConsumerInfo;

/// One acknowledgement of a batch.
#[derive(Debug, Clone)]
pub struct AckItem {
    /// The event id.
    pub id: String,
    /// What to do.
    pub verb: Verb,
}

impl Consumer {
    /// A new consumer reading from `start`; durable ones are written before this returns.
    pub(crate) async fn create(
        parts: &ConsumerParts,
        name: String,
        kind: ConsumerKind,
        pattern: Pattern,
        start: &StartSpec,
        settings: ConsumerSettings,
    ) -> Result<Arc<Consumer>, Error> {
        if let Some(c) =
            Self::create_server_backed(parts, &name, kind, &pattern, start, &settings).await?
        {
            return Ok(c);
        }
        let reader = Self::open_reader(parts, &pattern, start).await?;
        let mut state = ConsumerState::new(settings);
        if kind == ConsumerKind::Durable {
            state = state.tentative();
        }
        for (ns, next) in reader.positions() {
            state.set_position(&ns, next);
        }
        let c = Consumer::build(
            parts,
            name,
            kind,
            pattern,
            crate::storage::now_ns(),
            state,
            Some(reader),
            None,
        );
        if let Some(p) = &c.persist {
            p.store.put(&c.state_key(), c.record()?.0).await?;
            c.start_persister();
        }
        Ok(c)
    }

    /// A durable consumer whose deliveries the storage engine keeps, when this one
    /// qualifies (see `consumer/server_backed.rs`); `None` leaves it to this engine.
    async fn create_server_backed(
        parts: &ConsumerParts,
        name: &str,
        kind: ConsumerKind,
        pattern: &Pattern,
        start: &StartSpec,
        settings: &ConsumerSettings,
    ) -> Result<Option<Arc<Consumer>>, Error> {
        let (Some(servers), ConsumerKind::Durable, AckMode::Manual, NamespaceScope::One(ns)) = (
            parts
                .server_consumers
                .clone()
                .filter(|_| parts.create_on_server),
            kind,
            settings.ack,
            pattern.namespace(),
        ) else {
            return Ok(None);
        };
        // Before the namespace exists, the server's consumer waits for it (and starts at its
        // first event).
        let (server, origin) = if parts.namespaces.get(ns).is_some() {
            let origin = Self::start_in(parts, pattern, ns, start).await?;
            let config = server_config(ns, name, pattern.as_str(), origin, settings);
            (Some(servers.open(config).await?), origin)
        } else {
            (None, 1)
        };
        let sb = ServerBacked::new(ns, server, origin, origin.saturating_sub(1));
        let c = Consumer::build(
            parts,
            name.to_owned(),
            kind,
            pattern.clone(),
            crate::storage::now_ns(),
            ConsumerState::new(settings.clone()),
            None,
            Some(sb),
        );
        let written = match c.record() {
            Ok((bytes, _)) => parts
                .store
                .put(&c.state_key(), bytes)
                .await
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let _ = servers.delete(ns, name).await;
            return Err(e);
        }
        Ok(Some(c))
    }

    /// The sequence `start` resolves to in namespace `ns`.
    async fn start_in(
        parts: &ConsumerParts,
        pattern: &Pattern,
        ns: &str,
        start: &StartSpec,
    ) -> Result<u64, Error> {
        let reader = Self::open_reader(parts, pattern, start).await?;
        Ok(reader
            .positions()
            .into_iter()
            .find(|(n, _)| n == ns)
            .map_or(1, |(_, p)| p))
    }

    /// A durable consumer read back from its record at start-up.
    pub(crate) async fn restore(
        parts: &ConsumerParts,
        record: ConsumerRecord,
    ) -> Result<Arc<Consumer>, Error> {
        let pattern = Pattern::parse(&record.pattern).map_err(Error::pattern)?;
        if let Some(sr) = &record.server {
            let servers = parts.server_consumers.clone().ok_or_else(|| {
                Error::internal(
                    "restoring consumers",
                    format!(
                        "consumer {:?} is kept by a storage engine with server-side consumers (JetStream), not this one",
                        record.name
                    ),
                )
            })?;
            let config = server_config(
                &sr.namespace,
                &record.name,
                &record.pattern,
                sr.origin,
                &record.settings,
            );
            let (server, delivered) = if parts.namespaces.get(&sr.namespace).is_some() {
                let server = servers.open(config).await?;
                let delivered = server.state().await.map_or(0, |s| s.delivered);
                (Some(server), delivered)
            } else {
                (None, 0)
            };
            let sb = ServerBacked::new(&sr.namespace, server, sr.origin, delivered);
            return Ok(Consumer::build(
                parts,
                record.name,
                ConsumerKind::Durable,
                pattern,
                record.created_ns,
                ConsumerState::new(record.settings),
                None,
                Some(sb),
            ));
        }
        let positions = record.state.next.clone();
        let (state, dead) = ConsumerState::restore(record.settings, record.state);
        let state = state.tentative();
        let reader = Self::open_reader(parts, &pattern, &StartSpec::Positions(positions)).await?;
        let c = Consumer::build(
            parts,
            record.name,
            ConsumerKind::Durable,
            pattern,
            record.created_ns,
            state,
            Some(reader),
            None,
        );
        c.start_persister();
        if !dead.is_empty() {
            c.spawn_dead_letters(dead, DeadReason::MaxDeliver);
        }
        Ok(c)
    }

    /// The shared reader of a consumer: a subscription that keeps no cursors (the consumer
    /// records its positions itself) and is not listed (its members are).
    async fn open_reader(
        parts: &ConsumerParts,
        pattern: &Pattern,
        start: &StartSpec,
    ) -> Result<Subscription, Error> {
        Ok(Subscription::open(
            parts.namespaces.clone(),
            parts.metrics.clone(),
            parts.routes.clone(),
            pattern.clone(),
            start,
            None,
        )
        .await?
        .without_cursors())
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        parts: &ConsumerParts,
        name: String,
        kind: ConsumerKind,
        pattern: Pattern,
        created_ns: u64,
        state: ConsumerState,
        reader: Option<Subscription>,
        server: Option<ServerBacked>,
    ) -> Arc<Consumer> {
        let live = Arc::new(AtomicBool::new(false));
        let persist = (kind == ConsumerKind::Durable && server.is_none()).then(|| Persist {
            store: parts.store.clone(),
            durable: watch::Sender::new(Durable::default()),
            urgent: Notify::new(),
            nudge: Notify::new(),
            stop: CancellationToken::new(),
            task: std::sync::Mutex::new(None),
        });
        Arc::new(Consumer {
            name,
            kind,
            pattern,
            created_ns,
            parts: parts.clone(),
            state: std::sync::Mutex::new(state),
            changed: Notify::new(),
            live: live.clone(),
            reader: reader.map(|r| tokio::sync::Mutex::new(r.sharing_live(live))),
            server,
            seeking: AtomicBool::new(false),
            deleted: CancellationToken::new(),
            persist,
            owner: std::sync::OnceLock::new(),
        })
    }

    /// Records the principal that created it (single subscriptions only; the first wins).
    pub(crate) fn set_owner(&self, owner: std::sync::Arc<str>) {
        let _ = self.owner.set(owner);
    }

    /// The principal that created it, for single subscriptions.
    pub fn owner(&self) -> Option<&str> {
        self.owner.get().map(|o| &**o)
    }

    /// The flag saying whether its reader is live everywhere.
    pub(crate) fn live_flag(&self) -> Arc<AtomicBool> {
        self.live.clone()
    }

    /// The name (generated for single subscriptions: `~s-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind.
    pub fn kind(&self) -> ConsumerKind {
        self.kind
    }

    /// The filter pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// When it was created (ns since the epoch).
    pub fn created_ns(&self) -> u64 {
        self.created_ns
    }

    /// The settings.
    pub fn settings(&self) -> ConsumerSettings {
        lock(&self.state).settings().clone()
    }

    /// Cancelled once the consumer is deleted.
    pub fn deleted(&self) -> &CancellationToken {
        &self.deleted
    }

    /// The consumer as management lists it (a server-backed one with the server's figures,
    /// asked for now).
    pub async fn info(&self) -> ConsumerInfo {
        let info = self.local_info();
        if self.server.is_some() {
            self.server_info(info).await
        } else {
            info
        }
    }

    /// The listing from what this node keeps, without asking the storage engine (a
    /// server-backed consumer's settings are right, its figures are not).
    pub(crate) fn local_info(&self) -> ConsumerInfo {
        let (settings, positions, pending, redelivered, members) = {
            let st = lock(&self.state);
            let positions: BTreeMap<String, u64> =
                st.positions().map(|(k, v)| (k.to_owned(), v)).collect();
            (
                st.settings().clone(),
                positions,
                st.pending_count(),
                st.redelivered(),
                st.member_count(),
            )
        };
        let scope = self.pattern.namespace();
        let mut lag = 0;
        for (ns, log) in self.parts.namespaces.all() {
            if !scope.includes(&ns) {
                continue;
            }
            {
                let s = log.stats();
                let next = positions.get(&ns).copied().unwrap_or(s.first_seq);
                lag += (s.last_seq + 1).saturating_sub(next.max(s.first_seq));
            }
        }
        ConsumerInfo {
            name: self.name.clone(),
            kind: self.kind,
            pattern: self.pattern.as_str().to_owned(),
            created: crate::units::format_rfc3339(self.created_ns),
            ack: settings.ack,
            ack_wait: settings.ack_wait,
            max_deliver: settings.max_deliver,
            backoff: settings.backoff.clone(),
            max_in_flight: settings.max_in_flight as u64,
            positions,
            pending: pending as u64,
            redelivered,
            members: members as u64,
            lag,
        }
    }

    fn state_key(&self) -> String {
        format!("{STATE_PREFIX}{}", self.name)
    }

    /// The persisted form of the state, with the version it was taken at.
    fn record(&self) -> Result<(Bytes, u64), Error> {
        let st = lock(&self.state);
        let version = st.version();
        let record = ConsumerRecord {
            name: self.name.clone(),
            pattern: self.pattern.as_str().to_owned(),
            settings: st.settings().clone(),
            created_ns: self.created_ns,
            state: st.snapshot(),
            server: self.server.as_ref().map(ServerBacked::record),
        };
        drop(st);
        serde_json::to_vec(&record)
            .map(|b| (Bytes::from(b), version))
            .map_err(|e| Error::internal("encoding consumer state", e))
    }

    fn start_persister(self: &Arc<Self>) {
        let Some(p) = &self.persist else { return };
        let this = self.clone();
        let handle = tokio::spawn(async move { this.persist_loop().await });
        *lock(&p.task) = Some(handle);
    }

    /// Writes the newest state whenever it changed: at once when an ack waits for it, else
    /// within [`LAZY_PERSIST`] ([`RETRY_AFTER_FAILURE`] after a failed write); a last time
    /// when stopped. A successful write makes the resolutions it records final; a failed one
    /// undoes every resolution not yet durable, under the state's lock, before the waiting
    /// acks learn of it.
    async fn persist_loop(self: Arc<Self>) {
        let Some(p) = &self.persist else { return };
        let mut written = p.durable.borrow().version;
        let mut failed = false;
        loop {
            let dirty = lock(&self.state).version() > written;
            let pause = if failed {
                RETRY_AFTER_FAILURE
            } else {
                LAZY_PERSIST
            };
            let stopping = tokio::select! {
                _ = p.urgent.notified() => false,
                _ = tokio::time::sleep(pause), if dirty => false,
                // Now dirty: go round to wait at most LAZY_PERSIST.
                _ = p.nudge.notified(), if !dirty => continue,
                _ = p.stop.cancelled() => true,
            };
            if lock(&self.state).version() > written {
                let result = match self.record() {
                    Ok((bytes, version)) => p
                        .store
                        .put(&self.state_key(), bytes)
                        .await
                        .map(|()| version)
                        .map_err(Error::from),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(version) => {
                        if failed {
                            tracing::info!(consumer = %self.name, "consumer state written again");
                        }
                        failed = false;
                        written = version;
                        lock(&self.state).commit(version);
                        p.durable
                            .send_modify(|d| d.version = d.version.max(version));
                    }
                    Err(e) => {
                        if !failed {
                            tracing::error!(consumer = %self.name, error = %e.message, "writing consumer state; acks not yet durable are undone");
                        }
                        failed = true;
                        let dead = {
                            let mut st = lock(&self.state);
                            let dead = st.rollback(Instant::now());
                            // Under the state's lock: an ack applied before the rollback
                            // sees this failure, one applied after it does not.
                            p.durable.send_modify(|d| d.failures += 1);
                            dead
                        };
                        self.changed.notify_waiters();
                        if !dead.is_empty() {
                            self.spawn_dead_letters(dead, DeadReason::Terminated);
                        }
                    }
                }
            }
            if stopping {
                break;
            }
        }
        p.durable.send_modify(|d| d.stopped = true);
    }

    /// Failed state writes so far; read under the state's lock together with the change
    /// that will wait for [`Consumer::durable`].
    fn failures(&self) -> u64 {
        self.persist
            .as_ref()
            .map_or(0, |p| p.durable.borrow().failures)
    }

    /// Waits until the state at `version` is durable (at once for ephemeral consumers).
    /// `failures` is [`Consumer::failures`] as read when the change was made: a failed write
    /// since then undid it, and is answered as an error.
    async fn durable(&self, version: u64, failures: u64) -> Result<(), Error> {
        let Some(p) = &self.persist else {
            return Ok(());
        };
        let mut rx = p.durable.subscribe();
        p.urgent.notify_one();
        let d = rx
            .wait_for(|d| d.version >= version || d.failures > failures || d.stopped)
            .await
            .map_err(|_| Error::new(ErrorCode::ShuttingDown, "the broker is shutting down"))?;
        if d.version < version && d.stopped && d.failures <= failures {
            return Err(if self.deleted.is_cancelled() {
                self.deleted_error()
            } else {
                Error::new(
                    ErrorCode::ShuttingDown,
                    "the broker is shutting down; the change was not made durable",
                )
            });
        }
        if d.failures > failures {
            return Err(Error::new(
                ErrorCode::ReadOnly,
                "consumer state could not be written, so this change was undone; retry (see the broker log)",
            ));
        }
        Ok(())
    }

    /// Writes the state a last time and stops the writer.
    pub(crate) async fn close(&self) {
        if let Some(p) = &self.persist {
            p.stop.cancel();
            let task = lock(&p.task).take();
            if let Some(t) = task {
                let _ = t.await;
            }
        }
    }

    /// Deletes the consumer: members' streams end; a durable's record is removed (and the
    /// server's consumer, for a server-backed one).
    pub(crate) async fn delete(&self) -> Result<(), Error> {
        self.deleted.cancel();
        self.changed.notify_waiters();
        if let Some(sb) = &self.server {
            if let Some(servers) = &self.parts.server_consumers {
                servers.delete(sb.namespace(), &self.name).await?;
            }
            self.parts.store.delete(&self.state_key()).await?;
        }
        if let Some(p) = &self.persist {
            p.stop.cancel();
            let task = lock(&p.task).take();
            if let Some(t) = task {
                let _ = t.await;
            }
            p.store.delete(&self.state_key()).await?;
        }
        Ok(())
    }

    /// Adds a member holding at most `max` deliveries at once.
    pub(crate) fn join(&self, member: MemberId, max: Option<usize>) {
        if let Some(sb) = &self.server {
            self.server_join(sb, member, max);
        }
        lock(&self.state).join(member, max);
    }

    /// Removes a member; what it held goes to the others at once. Returns the members left.
    pub(crate) fn leave(self: &Arc<Self>, member: MemberId) -> usize {
        if self.server.is_some() {
            lock(&self.state).leave(member);
            return self.server_leave(member);
        }
        let (left, dead) = {
            let mut st = lock(&self.state);
            let dead = st.leave(member);
            (st.member_count(), dead)
        };
        if !dead.is_empty() {
            self.spawn_dead_letters(dead, DeadReason::MaxDeliver);
        }
        self.changed.notify_waiters();
        self.wake_persister();
        left
    }

    /// Deliveries and nacks are written lazily, within [`LAZY_PERSIST`].
    fn wake_persister(&self) {
        if let Some(p) = &self.persist {
            p.nudge.notify_one();
        }
    }

    /// Waits until this consumer is deleted; the error its members' streams end with.
    pub async fn wait_deleted(&self) -> Error {
        self.deleted.cancelled().await;
        self.deleted_error()
    }

    fn deleted_error(&self) -> Error {
        Error::new(
            ErrorCode::UnknownConsumer,
            format!("consumer {:?} was deleted", self.name),
        )
    }

    /// The next deliveries for `member` (at least one, at most `max`), waiting for one;
    /// `Ok(None)` once the broker closes.
    pub async fn next(
        self: &Arc<Self>,
        member: MemberId,
        max: usize,
    ) -> Result<Option<Vec<Out>>, Error> {
        if self.server.is_some() {
            return self.server_next(member, max).await;
        }
        let Some(shared_reader) = &self.reader else {
            return Err(Error::internal(
                "consumer engine",
                "a consumer without a reader",
            ));
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.deleted.is_cancelled() {
                return Err(self.deleted_error());
            }
            let now = Instant::now();
            let (ready, room, deadline, dead) = {
                let mut st = lock(&self.state);
                let dead = st.expire(now);
                let ready = st.take_ready(member, now);
                let room = st.room_for_new(member);
                (ready, room, st.next_deadline(), dead)
            };
            if !dead.is_empty() {
                self.spawn_dead_letters(dead, DeadReason::MaxDeliver);
            }
            if let Some((key, count)) = ready {
                self.parts
                    .metrics
                    .redelivered
                    .fetch_add(1, Ordering::Relaxed);
                self.wake_persister();
                match self.read_back(&key).await? {
                    ReadBack::Found(event) => {
                        return Ok(Some(vec![Out::Event {
                            event: Arc::new(RoutedEvent::new(key.ns.clone(), event)),
                            count,
                        }]));
                    }
                    ReadBack::Gone { resume_at, reason } => {
                        lock(&self.state).gap(&key.ns, resume_at);
                        self.changed.notify_waiters();
                        return Ok(Some(vec![Out::Gap {
                            namespace: key.ns.to_string(),
                            missed_from: key.seq,
                            resume_at,
                            reason,
                        }]));
                    }
                }
            }
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(sleep);
            if !room || self.seeking.load(Ordering::Acquire) {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = &mut sleep => {}
                }
                continue;
            }
            let mut reader = tokio::select! {
                g = shared_reader.lock() => g,
                _ = &mut notified => continue,
                _ = &mut sleep => continue,
            };
            // Another member may have used the last room meanwhile, or a seek begun.
            if self.seeking.load(Ordering::Acquire) || !lock(&self.state).room_for_new(member) {
                continue;
            }
            let item = tokio::select! {
                d = reader.next() => d?,
                _ = &mut notified => continue,
                _ = &mut sleep => continue,
            };
            let Some(first) = item else {
                return Ok(None);
            };
            let mut out = Vec::new();
            {
                // Take what else is ready at once, while there is room, under one lock.
                let mut st = lock(&self.state);
                let now = Instant::now();
                let mut item = Some(first);
                while let Some(d) = item.take() {
                    out.extend(Self::register(&mut st, member, d, now));
                    if out.len() >= max || !st.room_for_new(member) {
                        break;
                    }
                    // A read error after the first item surfaces on the next call.
                    item = reader.try_next_at_hand().ok().flatten();
                }
            }
            drop(reader);
            if out.is_empty() {
                // Everything read was behind the consumer's position (a gap it learnt of
                // while redelivering moved it on).
                continue;
            }
            self.wake_persister();
            return Ok(Some(out));
        }
    }

    /// Records a delivery read from the log as going to `member`; `None` for an event behind
    /// the consumer's position (passed by a gap it met while redelivering: the live path may
    /// have queued it before retention deleted it).
    fn register(
        st: &mut ConsumerState,
        member: MemberId,
        d: Delivery,
        now: Instant,
    ) -> Option<Out> {
        Some(match d {
            Delivery::Event { event, .. } => {
                if st.was_read(&event.namespace, event.sequence) {
                    return None;
                }
                let key = st.key(&event.namespace, event.sequence);
                let count = st.deliver_new(member, key, now);
                Out::Event { event, count }
            }
            Delivery::Gap {
                namespace,
                missed_from,
                resume_at,
                reason,
            } => {
                st.gap(&namespace, resume_at);
                Out::Gap {
                    namespace,
                    missed_from,
                    resume_at,
                    reason,
                }
            }
        })
    }

    /// Reads one event of the log again.
    async fn read_back(&self, key: &Key) -> Result<ReadBack, Error> {
        // A namespace set aside is not gone: its events come back once it is repaired.
        self.parts.namespaces.check_damaged(&key.ns)?;
        let Some(log) = self.parts.namespaces.get(&key.ns) else {
            return Ok(ReadBack::Gone {
                resume_at: key.seq + 1,
                reason: GapReason::Retention,
            });
        };
        let mut r = log.reader(Start::Sequence(key.seq)).await?;
        Ok(match r.try_next()? {
            Some(ReadItem::Event(e)) if e.sequence == key.seq => ReadBack::Found(e),
            Some(ReadItem::Gap {
                resume_at, reason, ..
            }) => ReadBack::Gone { resume_at, reason },
            _ => ReadBack::Gone {
                resume_at: key.seq + 1,
                reason: GapReason::Retention,
            },
        })
    }

    /// Publishes dead letters in the background. Outside a runtime (a member dropped at
    /// teardown) nothing is spawned: the events stay pending with their counts, and are
    /// dead-lettered when the consumer is next restored.
    fn spawn_dead_letters(self: &Arc<Self>, keys: Vec<Key>, reason: DeadReason) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            for key in keys {
                this.dead_letter(&key, reason).await;
            }
        });
    }

    /// Publishes the dead letter of `key`, then forgets the event. On failure the event
    /// stays pending (and counted), and is dead-lettered again after a restart.
    async fn dead_letter(&self, key: &Key, reason: DeadReason) -> bool {
        let count = lock(&self.state).count(key).unwrap_or(0);
        match self.dead_letter_of(key, count, reason).await {
            Ok(()) => {
                self.parts
                    .metrics
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                lock(&self.state).resolve(key);
                self.changed.notify_waiters();
                self.wake_persister();
                true
            }
            Err(e) => {
                tracing::error!(consumer = %self.name, namespace = %key.ns, sequence = key.seq, error = %e.message, "publishing a dead letter");
                false
            }
        }
    }

    /// Reads event `key` back and publishes its dead letter (nothing when retention deleted
    /// it meanwhile).
    async fn dead_letter_of(&self, key: &Key, count: u32, reason: DeadReason) -> Result<(), Error> {
        match self.read_back(key).await? {
            ReadBack::Found(e) => self.publish_dead_letter(e, count, reason).await,
            ReadBack::Gone { .. } => Ok(()),
        }
    }

    async fn publish_dead_letter(
        &self,
        e: Event,
        count: u32,
        reason: DeadReason,
    ) -> Result<(), Error> {
        let original = Subject::parse_internal(&e.subject).map_err(Error::subject)?;
        let subject = Subject::prefixed(DEAD_LETTER_PREFIX, &original).map_err(Error::subject)?;
        let mut headers = e.headers;
        headers.retain(|(n, _)| !n.starts_with("bus-"));
        headers.extend([
            ("bus-consumer".to_owned(), self.name.clone()),
            ("bus-original-id".to_owned(), e.id.clone()),
            ("bus-original-subject".to_owned(), e.subject.clone()),
            ("bus-delivery-count".to_owned(), count.to_string()),
            ("bus-reason".to_owned(), reason.as_str().to_owned()),
        ]);
        let p = Publish {
            subject: subject.as_str().to_owned(),
            headers,
            msg_id: Some(format!("dead:{}:{}", self.name, e.id)),
            reply_to: None,
            content_type: e.content_type,
            payload: e.payload,
            dedup_scope: None,
        };
        self.parts.dead_letters.put(p).await.map(|_| ())
    }

    /// The key of event `id`, or why it cannot be one of this consumer's.
    async fn key_of(&self, id: &str) -> Result<Key, Error> {
        let unknown = || Error::new(ErrorCode::UnknownEvent, format!("unknown event {id:?}"));
        let (ns, _, _) = parse_event_id(id).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("{id:?} is not an event id"),
            )
        })?;
        self.parts.namespaces.check_damaged(ns)?;
        let log = self.parts.namespaces.get(ns).ok_or_else(unknown)?;
        match log.sequence_of(id).await {
            Some(seq) => Ok(Key::new(ns, seq)),
            None => Err(unknown()),
        }
    }

    /// Whether event `key` (already read by the consumer) matches its filter, so that it
    /// was delivered to it.
    async fn was_delivered(&self, key: &Key) -> bool {
        match self.read_back(key).await {
            Ok(ReadBack::Found(e)) => {
                Subject::parse_internal(&e.subject).is_ok_and(|s| self.pattern.matches(&s))
            }
            // Deleted by retention since: it was read, so count it as handled.
            Ok(ReadBack::Gone { .. }) => true,
            Err(_) => false,
        }
    }

    /// Applies a batch of acknowledgements, answering each. Acks and terms are answered
    /// once the state recording them is durable.
    pub async fn acknowledge(self: &Arc<Self>, items: &[AckItem]) -> Vec<Result<Outcome, Error>> {
        if self.deleted.is_cancelled() {
            return items.iter().map(|_| Err(self.deleted_error())).collect();
        }
        if lock(&self.state).settings().ack == AckMode::None {
            let e = Error::new(
                ErrorCode::InvalidParameter,
                format!(
                    "consumer {:?} uses ack mode none: there is nothing to acknowledge",
                    self.name
                ),
            );
            return items.iter().map(|_| Err(e.clone())).collect();
        }
        if self.server.is_some() {
            return self.server_acknowledge(items).await;
        }
        let mut keys: Vec<Result<Key, Error>> = Vec::with_capacity(items.len());
        for item in items {
            keys.push(self.key_of(&item.id).await);
        }
        let now = Instant::now();
        let mut results = Vec::with_capacity(items.len());
        // Dead letters by reason: a `term`, or a nack ending the last allowed delivery.
        let (mut terminated, mut exhausted) = (Vec::new(), Vec::new());
        let mut acked = Vec::new();
        let (version, failures) = {
            let mut st = lock(&self.state);
            for (item, key) in items.iter().zip(&keys) {
                results.push(key.as_ref().map_err(Clone::clone).map(|key| {
                    // Shares the namespace's text with the state: cheaper comparisons.
                    let key = st.key(&key.ns, key.seq);
                    let (outcome, d) = st.apply(&key, item.verb, now);
                    if outcome == Outcome::Acked {
                        acked.push(key);
                    }
                    if outcome == Outcome::Terminated {
                        terminated.extend(d);
                    } else {
                        exhausted.extend(d);
                    }
                    outcome
                }));
            }
            let resolved = results
                .iter()
                .any(|r| matches!(r, Ok(Outcome::AlreadyResolved)));
            // "Already resolved" is answered once that resolution is durable: the newest
            // resolution's version covers it.
            let version = if resolved {
                st.version().max(st.resolved_version())
            } else {
                st.version()
            };
            (version, self.failures())
        };
        // An event the consumer read but that is no longer pending was handled before,
        // unless it never matched the filter (another consumer's event).
        for (r, key) in results.iter_mut().zip(&keys) {
            if let (Ok(Outcome::AlreadyResolved), Ok(key)) = (&r, key)
                && !self.was_delivered(key).await
            {
                *r = Ok(Outcome::NotDelivered);
            }
        }
        self.changed.notify_waiters();
        self.wake_persister();
        if !exhausted.is_empty() {
            self.spawn_dead_letters(exhausted, DeadReason::MaxDeliver);
        }
        // A `term` is answered once its dead letter is stored and the event is no longer
        // pending in durable state: a crash after the answer cannot bring it back.
        let mut undead = Vec::new();
        for key in &terminated {
            if !self.dead_letter(key, DeadReason::Terminated).await {
                undead.push(key.clone());
            }
        }
        if !undead.is_empty() {
            for (r, key) in results.iter_mut().zip(&keys) {
                if let (Ok(Outcome::Terminated), Ok(k)) = (&r, key)
                    && undead.contains(k)
                {
                    *r = Err(Error::new(
                        ErrorCode::ReadOnly,
                        "the dead letter could not be stored; the event stays pending (see the broker log)",
                    ));
                }
            }
        }
        let version = lock(&self.state).version().max(version);
        let needs_durable = results.iter().any(|r| {
            matches!(
                r,
                Ok(Outcome::Acked | Outcome::Terminated | Outcome::AlreadyResolved)
            )
        });
        if needs_durable && let Err(e) = self.durable(version, failures).await {
            return results
                .into_iter()
                .map(|r| match r {
                    Ok(Outcome::Acked | Outcome::Terminated | Outcome::AlreadyResolved) => {
                        Err(e.clone())
                    }
                    other => other,
                })
                .collect();
        }
        let m = &self.parts.metrics;
        let nacked = results
            .iter()
            .filter(|r| matches!(r, Ok(Outcome::Nacked)))
            .count() as u64;
        m.acked.fetch_add(acked.len() as u64, Ordering::Relaxed);
        m.nacked.fetch_add(nacked, Ordering::Relaxed);
        let confirms = &self.parts.confirmations;
        for key in &acked {
            confirms.acked(&key.ns, key.seq, &self.name);
        }
        results
    }

    /// Changes the settings (the ack mode stays) and answers the consumer's listing once
    /// the change is durable (durable consumers).
    pub async fn update_settings(&self, settings: ConsumerSettings) -> Result<ConsumerInfo, Error> {
        if self.deleted.is_cancelled() {
            return Err(self.deleted_error());
        }
        if self.server.is_some() {
            self.server_update(&settings).await?;
            lock(&self.state).set_settings(settings);
            let (bytes, _) = self.record()?;
            self.parts.store.put(&self.state_key(), bytes).await?;
            self.server_changed();
            return Ok(self.info().await);
        }
        let (version, failures) = {
            let mut st = lock(&self.state);
            st.set_settings(settings);
            (st.version(), self.failures())
        };
        // A wider bound may let members take more at once.
        self.changed.notify_waiters();
        self.durable(version, failures).await?;
        Ok(self.info().await)
    }

    /// Moves the consumer to `start`: pending deliveries are dropped and reading restarts.
    pub async fn seek(&self, start: &StartSpec) -> Result<(), Error> {
        if let Some(sb) = &self.server {
            return self.server_seek(sb, start).await;
        }
        let Some(shared_reader) = &self.reader else {
            return Err(Error::internal(
                "consumer engine",
                "a consumer without a reader",
            ));
        };
        self.seeking.store(true, Ordering::Release);
        self.changed.notify_waiters();
        let result = async {
            let mut reader = shared_reader.lock().await;
            let fresh = Self::open_reader(&self.parts, &self.pattern, start)
                .await?
                .sharing_live(self.live.clone());
            let positions = fresh.positions().into_iter().collect();
            *reader = fresh;
            let mut st = lock(&self.state);
            st.reset(positions);
            Ok::<_, Error>((st.version(), self.failures()))
        }
        .await;
        self.seeking.store(false, Ordering::Release);
        self.changed.notify_waiters();
        let (version, failures) = result?;
        self.durable(version, failures).await
    }

    /// A seek of a server-backed consumer: the server's consumer is made anew at `start`.
    async fn server_seek(&self, sb: &ServerBacked, start: &StartSpec) -> Result<(), Error> {
        let Some(servers) = &self.parts.server_consumers else {
            return Err(Error::internal(
                "consumer engine",
                "no server-side consumers",
            ));
        };
        let ns = sb.namespace().to_owned();
        // What the fetch on its way brings is from the consumer being replaced.
        self.fetch_ended(sb).await;
        servers.delete(&ns, &self.name).await?;
        if self.parts.namespaces.get(&ns).is_some() {
            let origin = Self::start_in(&self.parts, &self.pattern, &ns, start).await?;
            let config = server_config(
                &ns,
                &self.name,
                self.pattern.as_str(),
                origin,
                &self.settings(),
            );
            sb.replace(Some(servers.open(config).await?), origin);
        } else {
            sb.replace(None, 1);
        }
        let (bytes, _) = self.record()?;
        self.parts.store.put(&self.state_key(), bytes).await?;
        self.server_changed();
        Ok(())
    }
}
