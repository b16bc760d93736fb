//! [`NsRouter`]: the task that routes one namespace's new events to the live subscriptions
//! they match.
//!
//! It follows the log's tail with its own reader, so it sees an event once it is durable
//! under the namespace's fsync policy (what every reader sees), on a tokio task: never on the
//! log's writer or syncer threads. For each event it matches the subject once against the
//! trie of live subscriptions and offers the shared [`RoutedEvent`] to each match; the cost of
//! an event is one match plus one queue push per subscription it matches, whatever the number
//! of subscriptions that exist. Events matching nothing are passed over without being copied.
//!
//! Its position (the next sequence it will route) is kept under a lock that a subscription
//! takes to join ([`NsRouter::join`]): it joins only when it has read the log up to that
//! position, so that the router hands it exactly the events after what it read — no gap and
//! no duplicate (a subscription ahead of the router drops what it already has).
//!
//! Ends on the broker's shutdown, when the log closes, or on a read failure; on its way out
//! every subscription live in the namespace falls back to reading the log (and meets the
//! failure there, with its file and offset), and joins are refused from then on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::slot::{Offer, SlotHandle};
use super::{LiveCounters, RoutedEvent};
use crate::storage::{LogReader, ReadItem};
use crate::subject::Subject;
use crate::sync::lock;
use crate::trie::SharedSubjectTrie;

/// Most events routed under one hold of the position lock.
pub const ROUTE_BATCH: usize = 256;

/// The position a router that has ended reports: no subscription can join it.
const ENDED: u64 = u64::MAX;

/// One namespace's router. See the module docs.
#[derive(Debug)]
pub struct NsRouter {
    /// The namespace.
    namespace: Arc<str>,
    /// The next sequence the router will route; [`ENDED`] once it has stopped.
    position: Mutex<u64>,
    /// The same, readable without the lock: a subscription reading the log checks it after
    /// each record to see whether joining is worth the lock.
    hint: AtomicU64,
}

impl NsRouter {
    /// The router of `namespace` whose reader stands at `position`.
    pub fn new(namespace: Arc<str>, position: u64) -> NsRouter {
        NsRouter {
            namespace,
            position: Mutex::new(position),
            hint: AtomicU64::new(position),
        }
    }

    /// A router that has ended already: joins are refused (the caller reads the log).
    pub fn ended_router(namespace: Arc<str>) -> NsRouter {
        NsRouter::new(namespace, ENDED)
    }

    /// Makes `slot` live here if its subscription has read up to the router's position
    /// (`next` is the next sequence it would read). Returns whether it joined; if not, the
    /// log holds events the subscription must read first.
    pub fn join(&self, slot: &super::Slot, next: u64) -> bool {
        let position = lock(&self.position);
        if *position == ENDED || next < *position {
            return false;
        }
        slot.join(&self.namespace);
        true
    }

    /// Whether a subscription whose next sequence is `next` may join now (checked again,
    /// under the lock, by [`NsRouter::join`]).
    pub fn may_join(&self, next: u64) -> bool {
        let hint = self.hint.load(Ordering::Acquire);
        hint != ENDED && next >= hint
    }

    /// Whether the router has stopped.
    pub fn ended(&self) -> bool {
        *lock(&self.position) == ENDED
    }

    /// Routes the log's new events until shutdown, the log's end or a read failure.
    pub async fn run(
        self: Arc<Self>,
        mut reader: Box<dyn LogReader>,
        trie: Arc<SharedSubjectTrie<SlotHandle>>,
        counters: Arc<LiveCounters>,
        shutdown: CancellationToken,
    ) {
        // However the task ends (also dropped with its runtime), joins are refused from then
        // on and everyone live here reads the log again.
        let _end = Ending {
            router: self.clone(),
            trie: trie.clone(),
            counters: counters.clone(),
        };
        let mut matched = Vec::new();
        let mut batch = Vec::with_capacity(ROUTE_BATCH);
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = reader.next() => r,
            };
            let mut failure = None;
            match first {
                Ok(Some(item)) => batch.push(item),
                Ok(None) => break,
                Err(e) => failure = Some(e),
            }
            while failure.is_none() && batch.len() < ROUTE_BATCH {
                match reader.try_next() {
                    Ok(Some(item)) => batch.push(item),
                    Ok(None) => break,
                    Err(e) => failure = Some(e),
                }
            }
            let mut position = lock(&self.position);
            for item in batch.drain(..) {
                match item {
                    ReadItem::Event(e) => {
                        let sequence = e.sequence;
                        // Subjects read from the log were checked when published.
                        if let Ok(subject) = Subject::parse(&e.subject) {
                            trie.match_into(&subject, &mut matched);
                        }
                        if !matched.is_empty() {
                            let event = Arc::new(RoutedEvent::new(self.namespace.clone(), e));
                            for h in matched.drain(..) {
                                counters.count(h.0.offer(&event));
                            }
                        }
                        *position = sequence + 1;
                    }
                    ReadItem::Gap { resume_at, .. } => {
                        // Retention went past the router (rare: it reads at the tail). The
                        // live subscriptions read the gap from the log themselves.
                        *position = resume_at;
                        self.everyone_leaves(&trie, &counters);
                    }
                }
            }
            self.hint.store(*position, Ordering::Release);
            drop(position);
            if let Some(e) = failure {
                tracing::error!(namespace = %self.namespace, error = %e, "live routing stopped: the log cannot be read");
                break;
            }
        }
    }

    /// Stops for good: joins are refused, and everyone live here reads the log again.
    fn end(&self, trie: &SharedSubjectTrie<SlotHandle>, counters: &LiveCounters) {
        *lock(&self.position) = ENDED;
        self.hint.store(ENDED, Ordering::Release);
        self.everyone_leaves(trie, counters);
    }

    /// Makes every subscription live here read the log again.
    fn everyone_leaves(&self, trie: &SharedSubjectTrie<SlotHandle>, counters: &LiveCounters) {
        for h in trie.handles() {
            if h.0.leave(&self.namespace) {
                counters.count(Offer::FellBack);
            }
        }
    }
}

/// Ends the router when its task ends, however it ends.
struct Ending {
    router: Arc<NsRouter>,
    trie: Arc<SharedSubjectTrie<SlotHandle>>,
    counters: Arc<LiveCounters>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.router.end(&self.trie, &self.counters);
    }
}
