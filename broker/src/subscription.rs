//! [`Subscription`]: one reader per namespace a pattern touches, merged into one sequence of
//! deliveries, with a cursor that records the position in every namespace.
//!
//! Each subscription reads the logs at its own pace (the log is the buffer), so a slow
//! subscriber slows only itself and its memory does not grow with its lag. Events are read
//! in sequence order within each namespace; namespaces are interleaved round-robin among
//! those with events ready. Events that do not match the pattern are passed over, but the
//! cursor moves past them too, so resuming never reads them again. Namespaces created after
//! the subscription started are picked up and read from their oldest event.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::cursor::Cursor;
use crate::error::{Error, ErrorCode};
use crate::interest::InterestGuard;
use crate::metrics::{Metrics, NamespaceCounters};
use crate::namespaces::Namespaces;
use crate::storage::{Event, EventLog, IdLookup, LogReader, ReadItem, Start};
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
        /// The namespace.
        namespace: String,
        /// The event.
        event: Event,
        /// The cursor positioned just after this event.
        cursor: String,
    },
    /// Events the subscription had not read were deleted by retention.
    Gap {
        /// The namespace.
        namespace: String,
        /// First sequence missed.
        missed_from: u64,
        /// Sequence reading resumed at.
        resume_at: u64,
    },
}

/// The reader of one namespace.
struct NsReader {
    /// The namespace.
    namespace: String,
    /// Its log (for cursor ids).
    log: Arc<dyn EventLog>,
    /// The position in it.
    reader: Box<dyn LogReader>,
    /// Its delivery counters.
    counters: Arc<NamespaceCounters>,
}

/// A live subscription. Dropping it unsubscribes.
///
/// Bounded: one reader (at most one chunk or one map) per namespace the pattern touches,
/// whatever the subscriber's lag.
pub struct Subscription {
    /// Where the logs are (and new namespaces appear).
    namespace_registry: Arc<Namespaces>,
    /// Delivery counters.
    metrics: Arc<Metrics>,
    /// What is delivered.
    pattern: Pattern,
    /// One reader per namespace the pattern touches.
    readers: Vec<NsReader>,
    /// Namespaces already given a reader.
    known: HashSet<String>,
    /// Changes when a namespace is created.
    namespaces: watch::Receiver<u64>,
    /// A change was seen and its new namespaces are not all given a reader yet.
    refresh_pending: bool,
    /// The reader whose turn is next.
    next_rr: usize,
    /// Registration in the registry of live interest; removed on drop.
    guard: Option<InterestGuard>,
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
        let mut sub = Subscription {
            namespace_registry,
            metrics,
            pattern,
            readers: Vec::new(),
            known: HashSet::new(),
            namespaces,
            refresh_pending: false,
            next_rr: 0,
            guard,
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
                if !sub.known.contains(ns) {
                    return Err(Error::new(
                        ErrorCode::UnknownEvent,
                        format!("unknown event: namespace {ns:?} does not exist"),
                    ));
                }
            }
        }
        Ok(sub)
    }

    fn candidate_namespaces(&self) -> Vec<String> {
        let scope = self.pattern.namespace();
        self.namespace_registry
            .names()
            .into_iter()
            .filter(|ns| scope.includes(ns) && !self.known.contains(ns))
            .collect()
    }

    async fn add_reader(
        &mut self,
        namespace: String,
        log: Arc<dyn EventLog>,
        start: Start,
    ) -> Result<(), Error> {
        let reader = log.reader(start).await?;
        let counters = self.metrics.namespace(&namespace);
        self.known.insert(namespace.clone());
        self.readers.push(NsReader {
            namespace,
            log,
            reader,
            counters,
        });
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
            .map(|r| (r.namespace.clone(), r.reader.position()))
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

    /// The cursor of the current position: after everything delivered or passed over.
    ///
    /// Namespaces where nothing was read yet are left out (an absent namespace is read from
    /// its oldest event), which keeps cursors short; when nothing was read anywhere the cursor
    /// is `oldest`, which is exactly that position. A cursor holds one id (about 30 bytes)
    /// per namespace the subscription has read from.
    pub fn cursor(&self) -> String {
        let ids: Vec<String> = self
            .readers
            .iter()
            .map(|r| r.reader.position().saturating_sub(1))
            .zip(&self.readers)
            .filter(|(seq, _)| *seq > 0)
            .map(|(seq, r)| r.log.id_of(seq))
            .collect();
        if ids.is_empty() {
            return "oldest".to_owned();
        }
        Cursor::format(ids.iter().map(String::as_str))
    }

    /// Handles one item read from reader `i`: a delivery, or `None` when it was passed over.
    fn handle(&mut self, i: usize, item: ReadItem) -> Option<Delivery> {
        let r = &self.readers[i];
        match item {
            ReadItem::Gap {
                missed_from,
                resume_at,
            } => Some(Delivery::Gap {
                namespace: r.namespace.clone(),
                missed_from,
                resume_at,
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
                r.counters.delivered.fetch_add(1, Ordering::Relaxed);
                r.counters
                    .delivered_bytes
                    .fetch_add(event.payload.len() as u64, Ordering::Relaxed);
                if let Some(g) = &self.guard {
                    g.delivered();
                }
                let namespace = r.namespace.clone();
                Some(Delivery::Event {
                    namespace,
                    event,
                    cursor: if self.cursors {
                        self.cursor()
                    } else {
                        String::new()
                    },
                })
            }
        }
    }

    /// The next delivery at hand, without waiting and without looking for namespaces
    /// created since the last look (for callers holding a lock; the next call to
    /// [`Subscription::next`] or [`Subscription::try_next`] picks them up).
    pub fn try_next_at_hand(&mut self) -> Result<Option<Delivery>, Error> {
        Ok(match self.poll()? {
            Step::Ready(d) => Some(*d),
            Step::Idle | Step::Budget => None,
        })
    }

    /// The next delivery available now, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<Delivery>, Error> {
        self.refresh().await?;
        Ok(match self.poll()? {
            Step::Ready(d) => Some(*d),
            Step::Idle | Step::Budget => None,
        })
    }

    /// Reads until a delivery, until every reader is idle, or until [`SCAN_BUDGET`] records
    /// were passed over (so that a selective pattern over a busy namespace never holds a
    /// worker thread for long). Namespaces take turns, also while passing over records.
    fn poll(&mut self) -> Result<Step, Error> {
        let n = self.readers.len();
        let mut idle = 0;
        let mut examined = 0;
        while idle < n {
            let i = self.next_rr % n;
            self.next_rr = i + 1;
            match self.readers[i]
                .reader
                .try_next()
                .map_err(|e| read_error(&self.readers[i].namespace, e))?
            {
                Some(item) => {
                    idle = 0;
                    if let Some(d) = self.handle(i, item) {
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
            match self.poll()? {
                Step::Ready(d) => return Ok(Some(*d)),
                Step::Budget => {
                    // Let other tasks (and this stream's shutdown arm) run between budgets.
                    tokio::task::yield_now().await;
                    continue;
                }
                Step::Idle => {}
            }
            // Wait for any reader or a new namespace. The outcome is taken out of the select
            // so that the readers are no longer borrowed when it is handled.
            let outcome = if self.readers.is_empty() {
                if self.namespaces.changed().await.is_err() {
                    return Ok(None);
                }
                self.namespaces.mark_changed();
                None
            } else {
                let any =
                    futures::future::select_all(self.readers.iter_mut().map(|r| r.reader.next()));
                tokio::select! {
                    (res, i, _) = any => Some((res, i)),
                    changed = self.namespaces.changed() => {
                        if changed.is_err() {
                            return Ok(None);
                        }
                        // Let refresh see the change.
                        self.namespaces.mark_changed();
                        None
                    }
                }
            };
            if let Some((res, i)) = outcome {
                match res.map_err(|e| read_error(&self.readers[i].namespace, e))? {
                    None => return Ok(None),
                    Some(item) => {
                        if let Some(d) = self.handle(i, item) {
                            return Ok(Some(d));
                        }
                    }
                }
            }
        }
    }
}

/// A read failure as an API error: damage is reported without internals.
fn read_error(namespace: &str, e: crate::storage::StorageError) -> Error {
    if let Some(c) = e.corruption() {
        tracing::error!(namespace, corruption = %c, "damaged record");
        return Error::new(
            ErrorCode::Internal,
            format!(
                "damaged data in namespace {namespace} at sequence {}; see the broker log",
                c.sequence
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
