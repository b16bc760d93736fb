//! [`Slot`]: a subscription's place on the live path — the bounded queue the router fills,
//! and the namespaces in which the subscription is live.
//!
//! A subscription is *live* in a namespace when it has read that namespace's log up to the
//! router's position and joined ([`Slot::join`], called under the router's lock). From then
//! on the router hands it every matching event of that namespace, in sequence order, through
//! this queue, and the subscription no longer reads that log. It is *catching up* in every
//! other namespace it touches, reading the log at its own pace.
//!
//! Bound and overflow: at most [`QUEUE_EVENTS`] events, or [`QUEUE_BYTES`] bytes of payload
//! once it holds one, are queued. An event that does not fit is not queued: the router
//! removes the namespace from the slot's live set instead ([`Offer::FellBack`]), and the
//! subscription, once it has taken what is queued, reads that namespace's log again from
//! where it stands. So a subscriber that cannot keep up costs no memory beyond its queue,
//! loses nothing (the log has every event), and delays nobody: the router never waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::RoutedEvent;
use crate::sync::lock;

/// Most events a slot queues.
pub const QUEUE_EVENTS: usize = 256;
/// Most payload bytes a slot queues (an event larger than this is still queued into an
/// empty queue: it is stored, and the log would hand it over all the same).
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// What the router's offer of an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// The slot is not live in the event's namespace: nothing to do.
    NotLive,
    /// The queue was full: the slot is no longer live in that namespace.
    FellBack,
}

/// A subscription's queue on the live path. See the module docs.
#[derive(Debug)]
pub struct Slot {
    /// Its id, which orders slots in the trie.
    id: u64,
    /// The queue and the live set, under one short lock.
    state: Mutex<SlotState>,
    /// Woken when the queue goes from empty to not, and on a fall-back.
    wake: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Events handed over and not yet taken, oldest first.
    queue: VecDeque<Arc<RoutedEvent>>,
    /// Payload bytes in `queue`.
    bytes: usize,
    /// The namespaces in which the router hands this slot its events.
    live: Vec<Arc<str>>,
}

impl Slot {
    /// An empty slot, live nowhere.
    pub fn new(id: u64) -> Slot {
        Slot {
            id,
            state: Mutex::new(SlotState::default()),
            wake: Notify::new(),
        }
    }

    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Hands `event` over if the slot is live in its namespace (the router's side).
    pub fn offer(&self, event: &Arc<RoutedEvent>) -> Offer {
        let mut st = lock(&self.state);
        let Some(i) = st.live.iter().position(|n| **n == *event.namespace) else {
            return Offer::NotLive;
        };
        let size = event.payload.len();
        let full = st.queue.len() >= QUEUE_EVENTS
            || (!st.queue.is_empty() && st.bytes + size > QUEUE_BYTES);
        if full {
            st.live.swap_remove(i);
            drop(st);
            self.wake.notify_one();
            return Offer::FellBack;
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(event.clone());
        st.bytes += size;
        drop(st);
        if was_empty {
            self.wake.notify_one();
        }
        Offer::Queued
    }

    /// Makes the slot live in `namespace` (the subscription's side, under the router's lock,
    /// after it read the log up to the router's position).
    pub fn join(&self, namespace: &Arc<str>) {
        let mut st = lock(&self.state);
        if !st.live.iter().any(|n| **n == **namespace) {
            st.live.push(namespace.clone());
        }
    }

    /// Makes the slot catch up in `namespace` (after damage or a gap at the router).
    pub fn leave(&self, namespace: &str) -> bool {
        let mut st = lock(&self.state);
        let Some(i) = st.live.iter().position(|n| **n == *namespace) else {
            return false;
        };
        st.live.swap_remove(i);
        drop(st);
        self.wake.notify_one();
        true
    }

    /// Whether the slot is live in `namespace`.
    pub fn is_live(&self, namespace: &str) -> bool {
        lock(&self.state).live.iter().any(|n| **n == *namespace)
    }

    /// The oldest event handed over, if any.
    pub fn pop(&self) -> Option<Arc<RoutedEvent>> {
        let mut st = lock(&self.state);
        let e = st.queue.pop_front()?;
        st.bytes -= e.payload.len();
        Some(e)
    }

    /// How many events are queued.
    pub fn queued(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Resolves when the router handed something over or made the slot fall back (a wake-up
    /// given while nobody waited is kept for the next wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// A slot as the trie holds it: ordered by id.
#[derive(Debug, Clone)]
pub struct SlotHandle(pub Arc<Slot>);

impl PartialEq for SlotHandle {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for SlotHandle {}

impl PartialOrd for SlotHandle {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SlotHandle {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Event;

    fn event(ns: &str, seq: u64, size: usize) -> Arc<RoutedEvent> {
        Arc::new(RoutedEvent::new(
            ns.into(),
            Event {
                sequence: seq,
                id: format!("{ns}-{seq}"),
                subject: format!("{ns}.x"),
                time_ns: 0,
                headers: vec![],
                reply_to: None,
                msg_id: None,
                content_type: None,
                payload: bytes::Bytes::from(vec![b'x'; size]),
            },
        ))
    }

    #[test]
    fn only_a_namespace_joined_is_handed_over() {
        let slot = Slot::new(1);
        assert_eq!(slot.offer(&event("user", 1, 1)), Offer::NotLive);
        slot.join(&"user".into());
        assert_eq!(slot.offer(&event("user", 2, 1)), Offer::Queued);
        assert_eq!(slot.offer(&event("order", 2, 1)), Offer::NotLive);
        assert_eq!(slot.pop().map(|e| e.sequence), Some(2));
        assert!(slot.pop().is_none());
    }

    #[test]
    fn a_full_queue_falls_back_and_keeps_what_it_holds() {
        let slot = Slot::new(1);
        slot.join(&"user".into());
        for seq in 1..=QUEUE_EVENTS as u64 {
            assert_eq!(slot.offer(&event("user", seq, 1)), Offer::Queued);
        }
        let next = QUEUE_EVENTS as u64 + 1;
        assert_eq!(slot.offer(&event("user", next, 1)), Offer::FellBack);
        assert!(!slot.is_live("user"));
        assert_eq!(slot.offer(&event("user", next + 1, 1)), Offer::NotLive);
        assert_eq!(slot.queued(), QUEUE_EVENTS);
        assert_eq!(slot.pop().map(|e| e.sequence), Some(1));
    }

    #[test]
    fn the_byte_bound_counts_payloads_but_takes_one_large_event() {
        let slot = Slot::new(1);
        slot.join(&"user".into());
        assert_eq!(
            slot.offer(&event("user", 1, QUEUE_BYTES + 1)),
            Offer::Queued
        );
        assert_eq!(slot.offer(&event("user", 2, 1)), Offer::FellBack);
        assert_eq!(slot.pop().map(|e| e.sequence), Some(1));
        slot.join(&"user".into());
        assert_eq!(slot.offer(&event("user", 3, 1)), Offer::Queued);
    }
}
