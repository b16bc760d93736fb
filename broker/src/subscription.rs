//! [`Subscription`]: one reader per namespace a pattern touches, merged into one sequence of
//! deliveries, with a cursor that records the position in every namespace.
//!
//! Two paths, per namespace:
//! - **Catching up.** Behind the tail, a subscription reads the log at its own pace (the log is
//!   the buffer), so a slow subscriber slows only itself and its memory does not grow with its
//!   lag. Events that do not match the pattern are passed over, and the cursor moves past
//!   them too.
//! - **Live.** Once it has read a namespace up to the position of that namespace's router
//!   (see [`crate::live`]), it joins: from then on the router, which matched the event's
//!   subject once against the trie of live subscriptions, hands it exactly the matching
//!   events after that position through its bounded queue, and its log reader is closed (an
//!   idle live subscription holds no reader). Events already read are dropped if handed over
//!   again, so the switch loses and doubles nothing. When the queue overflows, the
//!   subscription takes what is queued and reads the log again from there.
//!
//! Events are delivered in sequence order within each namespace; namespaces are interleaved
//! round-robin among those with events ready, and the live queue takes turns with the logs.
//! Namespaces created after the subscription started are picked up and read from their
//! oldest event.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::cursor::Cursor;
use crate::error::{Error, ErrorCode};
use crate::interest::InterestGuard;
use crate::live::{NsRouter, RoutedEvent, Routes, SlotGuard};
use crate::metrics::{Metrics, NamespaceCounters};
use crate::namespaces::Namespaces;
use crate::storage::{EventLog, GapReason, IdLookup, LogReader, ReadItem, Start};
use crate::subject::{NamespaceScope, Pattern};

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartSpec {
    /// The oldest retained event of every namespace.
    Oldest,
    /// Only events published after the subscription started.
    Newest,
    /// The first event at or after this time (ns since the epoch).
    Time(u64),
    /// The positions of a cursor (or an event id); namespaces it does not name from oldest.
    Cursor(Cursor),
    /// The next sequence to read per namespace (a consumer's saved position); namespaces it
    /// does not name from oldest.
    Positions(std::collections::BTreeMap<String, u64>),
}

impl StartSpec {
    /// Parses `oldest`, `newest`, an RFC 3339 time, or an event id / cursor.
    pub fn parse(s: &str) -> Result<StartSpec, Error> {
        let invalid =
            |e: bus_proto::InvalidStart| Error::new(ErrorCode::InvalidStart, e.to_string());
        Ok(match bus_proto::Start::parse_param(s).map_err(invalid)? {
            bus_proto::Start::Oldest => StartSpec::Oldest,
            bus_proto::Start::Newest => StartSpec::Newest,
            bus_proto::Start::Time(ns) => StartSpec::Time(ns),
            bus_proto::Start::Cursor(c) => StartSpec::Cursor(
                Cursor::parse(&c).ok_or_else(|| invalid(bus_proto::InvalidStart(c.clone())))?,
            ),
        })
    }
}

/// Records a subscription may pass over (not matching its pattern) in one go before it
/// lets other tasks run.
pub const SCAN_BUDGET: usize = 1024;

/// The outcome of one round of reading.
enum Step {
    Ready(Box<Delivery>),
    /// Every reader is at its end.
    Idle,
    /// The scan budget ran out; there may be more.
    Budget,
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event matching the pattern, and the cursor just after it.
    Event {
        /// The event, with its namespace; shared with the other subscriptions it went to.
        event: Arc<RoutedEvent>,
        /// The cursor positioned just after this event (empty for readers without cursors).
        cursor: String,
    },
    /// Events the subscription had not read are gone (retention, or damage).
    Gap {
        /// The namespace.
        namespace: String,
        /// First sequence missed.
        missed_from: u64,
        /// Sequence reading resumed at.
        resume_at: u64,
        /// Why they are gone.
        reason: GapReason,
    },
}

/// The subscription's place in one namespace.
struct NsReader {
    /// The namespace.
    namespace: Arc<str>,
    /// Its log (for cursor ids, and to read it again after a fall-back).
    log: Arc<dyn EventLog>,
    /// The log reader while catching up; `None` while live, or while a reader is to be
    /// opened again at `next` after a fall-back.
    reader: Option<Box<dyn LogReader>>,
    /// The next sequence to deliver or pass over.
    next: u64,
    /// Whether the router hands this namespace's events over (the slot is live in it).
    live: bool,
    /// The namespace's router, to join once the log is read up to it.
    router: Arc<NsRouter>,
    /// Its delivery counters.
    counters: Arc<NamespaceCounters>,
}

/// A live subscription. Dropping it unsubscribes.
///
/// Bounded: at most one reader (one chunk or one map) per namespace the pattern touches
/// while catching up, none while live, and the live queue ([`crate::live::QUEUE_EVENTS`]),
/// whatever the subscriber's lag.
pub struct Subscription {
    /// Where the logs are (and new namespaces appear).
    namespace_registry: Arc<Namespaces>,
    /// Delivery counters.
    metrics: Arc<Metrics>,
    /// The live path.
    routes: Arc<Routes>,
    /// What is delivered.
    pattern: Pattern,
    /// One reader per namespace the pattern touches.
    readers: Vec<NsReader>,
    /// The index in `readers` of each namespace given a reader.
    index: HashMap<Arc<str>, usize>,
    /// Changes when a namespace is created.
    namespaces: watch::Receiver<u64>,
    /// A change was seen and its new namespaces are not all given a reader yet.
    refresh_pending: bool,
    /// The reader whose turn is next.
    next_rr: usize,
    /// Whether the live queue is looked at before the logs next time (they take turns).
    live_first: bool,
    /// Registration in the registry of live interest; removed on drop.
    guard: Option<InterestGuard>,
    /// Registration on the live path; removed on drop.
    slot: SlotGuard,
    /// Whether every namespace is live: what the live/catching-up gauges count it as.
    all_live: bool,
    /// The same, mirrored for the listing (possibly shared with a consumer's members).
    live: Arc<AtomicBool>,
    /// Whether deliveries carry their cursor (consumers keep their own positions).
    cursors: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern.as_str())
            .finish()
    }
}

impl Subscription {
    /// Opens readers on every existing namespace the pattern touches, positioned at `start`.
    pub(crate) async fn open(
        namespace_registry: Arc<Namespaces>,
        metrics: Arc<Metrics>,
        routes: Arc<Routes>,
        pattern: Pattern,
        start: &StartSpec,
        guard: Option<InterestGuard>,
    ) -> Result<Subscription, Error> {
        let namespaces = namespace_registry.changes();
        if let StartSpec::Cursor(c) = start {
            for ns in c.positions.keys() {
                if !pattern.may_match_namespace(ns) {
                    return Err(Error::new(
                        ErrorCode::InvalidStart,
                        format!(
                            "start position is in namespace {ns:?}, which pattern {:?} does not touch",
                            pattern.as_str()
                        ),
                    ));
                }
            }
        }
        let slot = routes.register(&pattern);
        let live = guard
            .as_ref()
            .map_or_else(|| Arc::new(AtomicBool::new(true)), InterestGuard::live_flag);
        live.store(true, Ordering::Relaxed);
        routes.counters().live.fetch_add(1, Ordering::Relaxed);
        let mut sub = Subscription {
            namespace_registry,
            metrics,
            routes,
            pattern,
            readers: Vec::new(),
            index: HashMap::new(),
            namespaces,
            refresh_pending: false,
            next_rr: 0,
            live_first: true,
            guard,
            slot,
            all_live: true,
            live,
            cursors: true,
        };
        for ns in sub.candidate_namespaces() {
            let log = sub.namespace_registry.get(&ns).ok_or_else(|| {
                Error::new(
                    ErrorCode::UnknownEvent,
                    format!("namespace {ns:?} no longer exists"),
                )
            })?;
            let start = resolve(&*log, &ns, start).await?;
            sub.add_reader(ns, log, start).await?;
        }
        if let StartSpec::Cursor(c) = start {
            for ns in c.positions.keys() {
                sub.namespace_registry.check_damaged(ns)?;
                if !sub.index.contains_key(ns.as_str()) {
                    return Err(Error::new(
                        ErrorCode::UnknownEvent,
                        format!("unknown event: namespace {ns:?} does not exist"),
                    ));
                }
            }
        }
        Ok(sub)
    }

    /// The namespaces the pattern touches that have no reader yet. A namespace set aside as
    /// damaged is left out: a wildcard subscription serves the healthy ones (one naming the
    /// damaged namespace is refused before it opens).
    fn candidate_namespaces(&self) -> Vec<String> {
        let scope = self.pattern.namespace();
        self.namespace_registry
            .names()
            .into_iter()
            .filter(|ns| {
                scope.includes(ns)
                    && !self.index.contains_key(ns.as_str())
                    && self.namespace_registry.damage(ns).is_none()
            })
            .collect()
    }

    async fn add_reader(
        &mut self,
        namespace: String,
        log: Arc<dyn EventLog>,
        start: Start,
    ) -> Result<(), Error> {
        let namespace: Arc<str> = namespace.into();
        let router = self.routes.router(&namespace, &log).await?;
        let reader = log.reader(start).await?;
        let counters = self.metrics.namespace(&namespace);
        self.index.insert(namespace.clone(), self.readers.len());
        self.readers.push(NsReader {
            namespace,
            log,
            next: reader.position(),
            reader: Some(reader),
            live: false,
            router,
            counters,
        });
        self.update_state();
        Ok(())
    }

    /// Picks up namespaces created since the last look; they are read from their oldest event.
    ///
    /// A look that fails or is cancelled half-way (opening a reader may wait, for an engine
    /// over the network) stays pending, so the next call finishes it.
    async fn refresh(&mut self) -> Result<(), Error> {
        if self.namespaces.has_changed().unwrap_or(false) {
            self.namespaces.borrow_and_update();
            self.refresh_pending = true;
        }
        if !self.refresh_pending {
            return Ok(());
        }
        for ns in self.candidate_namespaces() {
            if let Some(log) = self.namespace_registry.get(&ns) {
                self.add_reader(ns, log, Start::Oldest).await?;
            }
        }
        self.refresh_pending = false;
        Ok(())
    }

    /// Opens the log again, where the subscription stands, in the namespaces it fell back
    /// from the live path in. Cancelled half-way, the next call finishes it.
    async fn reopen(&mut self) -> Result<(), Error> {
        for r in &mut self.readers {
            if !r.live && r.reader.is_none() {
                r.reader = Some(r.log.reader(Start::Sequence(r.next)).await?);
            }
        }
        Ok(())
    }

    /// Joins the live path in every namespace whose log was read to its end (starting a
    /// router again where the last one ended). Returns whether any joined.
    async fn join_idle(&mut self) -> Result<bool, Error> {
        let mut joined = false;
        for i in 0..self.readers.len() {
            let r = &self.readers[i];
            if r.live || r.reader.is_none() {
                continue;
            }
            if r.router.ended() {
                let router = self.routes.router(&r.namespace, &r.log).await?;
                self.readers[i].router = router;
            }
            joined |= self.try_join(i);
        }
        Ok(joined)
    }

    /// Joins the live path in namespace `i` if its log was read up to the router's position:
    /// the router takes over where the reader stands (see [`NsRouter::join`]).
    fn try_join(&mut self, i: usize) -> bool {
        let r = &mut self.readers[i];
        if r.live || !r.router.may_join(r.next) || !r.router.join(self.slot.slot(), r.next) {
            return false;
        }
        r.live = true;
        r.reader = None;
        self.routes
            .counters()
            .joined
            .fetch_add(1, Ordering::Relaxed);
        self.update_state();
        true
    }

    /// Takes the namespaces the router stopped handing over (the queue was full, or the
    /// router met a gap or stopped) back to reading the log. Called once the queue is empty:
    /// everything queued before the fall-back has been taken.
    fn take_fallbacks(&mut self) {
        let slot = self.slot.slot();
        let mut changed = false;
        for r in &mut self.readers {
            if r.live && !slot.is_live(&r.namespace) {
                r.live = false;
                changed = true;
            }
        }
        if changed {
            self.update_state();
        }
    }

    /// Keeps the live/catching-up figures and the listing's flag in step.
    fn update_state(&mut self) {
        let live = self.readers.iter().all(|r| r.live);
        self.live.store(live, Ordering::Relaxed);
        if self.all_live != live {
            self.all_live = live;
            let c = self.routes.counters();
            let (from, to) = if live {
                (&c.catching_up, &c.live)
            } else {
                (&c.live, &c.catching_up)
            };
            from.fetch_sub(1, Ordering::Relaxed);
            to.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events the router handed over that the subscription has not taken yet (at most
    /// [`crate::live::QUEUE_EVENTS`]).
    pub fn queued(&self) -> usize {
        self.slot.slot().queued()
    }

    /// Whether the subscription is live in every namespace it touches.
    pub fn is_live(&self) -> bool {
        self.all_live
    }

    /// Mirrors [`Subscription::is_live`] into `flag` from now on (a consumer's flag, which
    /// its members' listings read and which outlives a reader replaced by a seek).
    pub(crate) fn sharing_live(mut self, flag: Arc<AtomicBool>) -> Subscription {
        flag.store(self.all_live, Ordering::Relaxed);
        self.live = flag;
        self
    }

    /// Stops computing a cursor for each delivery (theirs is then empty): for readers whose
    /// owner records positions itself.
    pub(crate) fn without_cursors(mut self) -> Subscription {
        self.cursors = false;
        self
    }

    /// The next sequence to read in every namespace with a reader.
    pub fn positions(&self) -> Vec<(String, u64)> {
        self.readers
            .iter()
            .map(|r| (r.namespace.to_string(), r.next))
            .collect()
    }

    /// The subscription's id, when it is registered.
    pub fn id(&self) -> Option<String> {
        self.guard.as_ref().map(InterestGuard::id)
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The cursor of the current position: after everything delivered or passed over (on
    /// the live path, after the last event delivered: the events after it that did not
    /// match were never looked at, and resuming passes over them again).
    ///
    /// Namespaces where nothing was read yet are left out (an absent namespace is read from
    /// its oldest event), which keeps cursors short; when nothing was read anywhere the cursor
    /// is `oldest`, which is exactly that position. A cursor holds one id (about 30 bytes)
    /// per namespace the subscription has read from.
    pub fn cursor(&self) -> String {
        let ids: Vec<String> = self
            .readers
            .iter()
            .map(|r| (r.next.saturating_sub(1), r))
            .filter(|(seq, _)| *seq > 0)
            .map(|(seq, r)| r.log.id_of(seq))
            .collect();
        if ids.is_empty() {
            return "oldest".to_owned();
        }
        Cursor::format(ids.iter().map(String::as_str))
    }

    /// A delivery of `event` from namespace `i`, counted.
    fn deliver(&self, i: usize, event: Arc<RoutedEvent>) -> Delivery {
        let r = &self.readers[i];
        r.counters.delivered.fetch_add(1, Ordering::Relaxed);
        r.counters
            .delivered_bytes
            .fetch_add(event.payload.len() as u64, Ordering::Relaxed);
        if let Some(g) = &self.guard {
            g.delivered();
        }
        Delivery::Event {
            event,
            cursor: if self.cursors {
                self.cursor()
            } else {
                String::new()
            },
        }
    }

    /// Handles one item read from the log of reader `i`: a delivery, or `None` when it was
    /// passed over.
    fn handle(&mut self, i: usize, item: ReadItem) -> Option<Delivery> {
        let r = &mut self.readers[i];
        if let Some(reader) = &r.reader {
            r.next = reader.position();
        }
        match item {
            ReadItem::Gap {
                missed_from,
                resume_at,
                reason,
            } => Some(Delivery::Gap {
                namespace: r.namespace.to_string(),
                missed_from,
                resume_at,
                reason,
            }),
            ReadItem::Event(event) => {
                // Subjects read from the log were checked when published.
                let matches = match &self.pattern.namespace() {
                    NamespaceScope::One(_) if self.pattern.is_literal() => {
                        self.pattern.as_str() == event.subject
                    }
                    _ => self.pattern.matches_text(&event.subject),
                };
                if !matches {
                    return None;
                }
                let event = Arc::new(RoutedEvent::new(r.namespace.clone(), event));
                Some(self.deliver(i, event))
            }
        }
    }

    /// The next event the router handed over that the subscription does not have yet.
    fn poll_live(&mut self) -> Option<Delivery> {
        while let Some(event) = self.slot.slot().pop() {
            let Some(&i) = self.index.get(&*event.namespace) else {
                continue;
            };
            let r = &mut self.readers[i];
            // Handed over before a fall-back, or already read from the log before joining.
            if !r.live || event.sequence < r.next {
                continue;
            }
            r.next = event.sequence + 1;
            // The router matched the subject against this subscription's pattern.
            return Some(self.deliver(i, event));
        }
        None
    }

    /// The next delivery at hand, without waiting and without looking for namespaces
    /// created since the last look (for callers holding a lock; the next call to
    /// [`Subscription::next`] or [`Subscription::try_next`] picks them up).
    pub fn try_next_at_hand(&mut self) -> Result<Option<Delivery>, Error> {
        Ok(match self.poll(false)? {
            Step::Ready(d) => Some(*d),
            Step::Idle | Step::Budget => None,
        })
    }

    /// The next delivery available now, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<Delivery>, Error> {
        self.refresh().await?;
        self.reopen().await?;
        Ok(match self.poll(false)? {
            Step::Ready(d) => Some(*d),
            Step::Idle | Step::Budget => None,
        })
    }

    /// The live queue and the logs, taking turns: a delivery, idle, or out of budget.
    /// `join`: whether a log read up to the router's position joins the live path (only for
    /// a caller that will wait: events the router has not handed over yet are not at hand,
    /// and a call that only takes what is at hand must still see everything in the log).
    fn poll(&mut self, join: bool) -> Result<Step, Error> {
        if self.live_first
            && let Some(d) = self.poll_live()
        {
            self.live_first = false;
            return Ok(Step::Ready(Box::new(d)));
        }
        let step = self.poll_logs(join)?;
        if matches!(step, Step::Ready(_)) {
            self.live_first = true;
            return Ok(step);
        }
        if let Some(d) = self.poll_live() {
            self.live_first = false;
            return Ok(Step::Ready(Box::new(d)));
        }
        // The queue is empty: what fell back reads the log again (reopened by the caller).
        self.take_fallbacks();
        Ok(step)
    }

    /// Reads the logs until a delivery, until every reader is idle, or until [`SCAN_BUDGET`]
    /// records were passed over (so that a selective pattern over a busy namespace never
    /// holds a worker thread for long). Namespaces take turns, also while passing over
    /// records.
    fn poll_logs(&mut self, join: bool) -> Result<Step, Error> {
        let n = self.readers.len();
        let mut idle = 0;
        let mut examined = 0;
        while idle < n {
            let i = self.next_rr % n;
            self.next_rr = i + 1;
            let r = &mut self.readers[i];
            let Some(reader) = r.reader.as_mut() else {
                idle += 1;
                continue;
            };
            match reader
                .try_next()
                .map_err(|e| read_error(&r.namespace, &*r.log, e))?
            {
                Some(item) => {
                    idle = 0;
                    let delivery = self.handle(i, item);
                    if join {
                        // Up to the router's position now: the router takes it from here.
                        self.try_join(i);
                    }
                    if let Some(d) = delivery {
                        return Ok(Step::Ready(Box::new(d)));
                    }
                    examined += 1;
                    if examined >= SCAN_BUDGET {
                        return Ok(Step::Budget);
                    }
                }
                None => idle += 1,
            }
        }
        Ok(Step::Idle)
    }

    /// The next delivery, waiting for it; `Ok(None)` once the broker closes.
    pub async fn next(&mut self) -> Result<Option<Delivery>, Error> {
        loop {
            self.refresh().await?;
            self.reopen().await?;
            match self.poll(true)? {
                Step::Ready(d) => return Ok(Some(*d)),
                Step::Budget => {
                    // Let other tasks (and this stream's shutdown arm) run between budgets.
                    tokio::task::yield_now().await;
                    continue;
                }
                Step::Idle => {}
            }
            if self.join_idle().await? {
                continue;
            }
            // Wait for the live queue, any log still read, or a new namespace. The outcome is
            // taken out of the select so that the readers are no longer borrowed when it is
            // handled.
            let slot = self.slot.slot();
            let mut reading: Vec<_> = self
                .readers
                .iter_mut()
                .enumerate()
                .filter_map(|(i, r)| r.reader.as_mut().map(|rd| (i, rd)))
                .collect();
            let indices: Vec<usize> = reading.iter().map(|(i, _)| *i).collect();
            let any_log = async {
                if reading.is_empty() {
                    std::future::pending().await
                } else {
                    futures::future::select_all(reading.iter_mut().map(|(_, r)| r.next())).await
                }
            };
            let outcome = tokio::select! {
                () = slot.woken() => None,
                (res, k, _) = any_log => Some((res, indices[k])),
                changed = self.namespaces.changed() => {
                    if changed.is_err() {
                        return Ok(None);
                    }
                    // Let refresh see the change.
                    self.namespaces.mark_changed();
                    None
                }
            };
            if let Some((res, i)) = outcome {
                match res.map_err(|e| {
                    let r = &self.readers[i];
                    read_error(&r.namespace, &*r.log, e)
                })? {
                    None => return Ok(None),
                    Some(item) => {
                        let delivery = self.handle(i, item);
                        self.try_join(i);
                        if let Some(d) = delivery {
                            return Ok(Some(d));
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let c = self.routes.counters();
        let gauge = if self.all_live {
            &c.live
        } else {
            &c.catching_up
        };
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A read failure as an API error: damage sets the namespace aside (the reader recorded it
/// in the log) and is answered `503 namespace_damaged`, naming file, offset and the repair.
fn read_error(namespace: &str, log: &dyn EventLog, e: crate::storage::StorageError) -> Error {
    if let Some(c) = e.corruption() {
        tracing::error!(namespace, corruption = %c, "damaged record");
        if let Some(message) = log.stats().damaged {
            return Error::new(ErrorCode::NamespaceDamaged, message);
        }
        return Error::new(
            ErrorCode::NamespaceDamaged,
            format!(
                "namespace {namespace} is damaged: {c}; stop the broker and run `bus inspect --repair <data dir>` to cut it at the damage"
            ),
        );
    }
    Error::from(e)
}

/// The storage start position in `namespace` for a subscription start.
async fn resolve(log: &dyn EventLog, namespace: &str, start: &StartSpec) -> Result<Start, Error> {
    Ok(match start {
        StartSpec::Oldest => Start::Oldest,
        StartSpec::Newest => Start::Newest,
        StartSpec::Time(t) => Start::Time(*t),
        StartSpec::Positions(p) => p
            .get(namespace)
            .map_or(Start::Oldest, |n| Start::Sequence(*n)),
        StartSpec::Cursor(c) => match c.positions.get(namespace) {
            None | Some((0, _)) => Start::Oldest,
            Some((_, id)) => match log.lookup_id(id).await {
                IdLookup::Found(s) | IdLookup::Deleted { sequence: s, .. } => {
                    Start::Sequence(s + 1)
                }
                IdLookup::Unknown => {
                    return Err(Error::new(
                        ErrorCode::UnknownEvent,
                        format!("unknown event {id:?}"),
                    ));
                }
            },
        },
    })
}
