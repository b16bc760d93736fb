//! The live path: new events routed through the subject trie to the subscriptions they
//! match, each event matched once and encoded once.
//!
//! - [`RoutedEvent`]: an event shared by every subscriber it goes to, its SSE frame built once.
//! - [`Slot`]: a subscription's bounded queue and the namespaces it is live in.
//! - [`NsRouter`]: per namespace, the task that reads new events once and hands them over.
//! - [`Routes`]: the registry of slots (in the trie) and routers.
//!
//! A [`Subscription`](crate::subscription::Subscription) reads the log while it is behind
//! (catching up) and joins the live path in a namespace once it has read to the router's
//! position; a full queue sends it back to the log. `ARCHITECTURE.md` has the picture.

use std::sync::atomic::{AtomicU64, Ordering};

mod routed_event;
mod router;
mod routes;
mod slot;

pub use routed_event::RoutedEvent;
pub use router::{NsRouter, ROUTE_BATCH};
pub use routes::{Routes, SlotGuard};
pub use slot::{Offer, QUEUE_BYTES, QUEUE_EVENTS, Slot};

/// The live path's sizes at one moment, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveFigures {
    /// Subscriptions registered in the trie (every open subscription).
    pub slots: usize,
    /// Nodes of the trie.
    pub trie_nodes: usize,
    /// Namespace routers running.
    pub routers: usize,
}

/// The live path's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Events handed to a live subscription's queue.
    pub routed: AtomicU64,
    /// Times a live subscription went back to reading the log (its queue was full, or the
    /// router met a gap or stopped).
    pub fell_back: AtomicU64,
    /// Times a subscription joined the live path in a namespace.
    pub joined: AtomicU64,
    /// Subscriptions live in every namespace they touch.
    pub live: AtomicU64,
    /// Subscriptions reading the log in at least one namespace.
    pub catching_up: AtomicU64,
}

impl LiveCounters {
    /// Counts what an offer came to.
    pub fn count(&self, offer: Offer) {
        match offer {
            Offer::Queued => self.routed.fetch_add(1, Ordering::Relaxed),
            Offer::FellBack => self.fell_back.fetch_add(1, Ordering::Relaxed),
            Offer::NotLive => 0,
        };
    }
}
