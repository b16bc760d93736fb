//! [`ServerConsumers`]: durable consumers kept by the storage engine itself, for engines
//! that have them (JetStream's durable pull consumers).
//!
//! With one, a durable consumer filtering one namespace keeps its position, its pending
//! deliveries, their delivery counts and their redelivery timers (ack wait, backoff) on the
//! server, and the server bounds its unacknowledged deliveries: nothing a second broker node
//! would need lives in this one. The delivery engine keeps only what the server has no notion
//! of (members and their caps, dead letters, publish confirmations, refusals such as `in
//! progress` for a delivery no longer held); see `delivery/server_backed.rs`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{Event, StorageError};

/// Where a new server-side consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStart {
    /// The oldest event kept.
    Oldest,
    /// Only events stored after its creation.
    Newest,
    /// At this sequence.
    Sequence(u64),
    /// At the first event stored at or after this time (ns since the epoch).
    Time(u64),
}

/// What the server keeps of one consumer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConsumerConfig {
    /// The namespace (the stream).
    pub namespace: String,
    /// The consumer's name (unique in the namespace).
    pub name: String,
    /// The subject filter, within the namespace.
    pub filter: String,
    /// Where it starts (used only at creation).
    pub start: ServerStart,
    /// Wait before a delivery not acknowledged is redelivered (when `backoff` is empty).
    pub ack_wait: Duration,
    /// `backoff[i]`: the wait after delivery `i + 1`, the last repeating.
    pub backoff: Vec<Duration>,
    /// Deliveries of one event the server makes at most; `None`: unlimited.
    pub max_deliver: Option<u32>,
    /// Bound on deliveries not yet acknowledged, across every fetcher.
    pub max_ack_pending: usize,
}

/// One delivery fetched from a server-side consumer.
#[derive(Debug, Clone)]
pub struct ServerMessage {
    /// The event.
    pub event: Event,
    /// Deliveries of this event to the consumer, this one included.
    pub delivered: u32,
    /// The server's handle on this delivery (what its acknowledgements are sent to).
    pub token: String,
}

/// The server's figures for one consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerConsumerState {
    /// Highest sequence delivered so far (0: none).
    pub delivered: u64,
    /// Every sequence up to this one is acknowledged (or was never the consumer's).
    pub ack_floor: u64,
    /// Deliveries not yet acknowledged.
    pub ack_pending: u64,
    /// Of those, events delivered more than once.
    pub redelivered: u64,
    /// Matching events not yet delivered.
    pub unread: u64,
}

/// How one delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with it; answered once the server recorded it.
    Ack,
    /// Deliver it again, now or after the delay.
    Nak(Option<Duration>),
    /// Restart its ack wait.
    Progress,
    /// Never deliver it again.
    Term,
}

/// One server-side consumer.
pub trait ServerConsumer: Send + Sync + 'static {
    /// Up to `max` deliveries: waits at most `wait` for the first, then takes what else is
    /// there without waiting. An empty answer means none came in time. Messages that reach
    /// this node are never dropped on the way: the future completes with all of them or
    /// with an error (cancelling it may leave deliveries pending on the server until their
    /// ack wait runs out).
    fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<ServerMessage>, StorageError>>;

    /// Settles the delivery of `sequence`. `token` is the delivery's own handle when this
    /// node has it; without it the server is told by sequence, which it accepts for any
    /// delivery still pending. An `Ack` resolves once the server confirmed it.
    fn settle<'a>(
        &'a self,
        sequence: u64,
        token: Option<&'a str>,
        how: Settle,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// The newest sequence of the namespace this node knows of.
    fn newest(&self) -> u64;

    /// Resolves once the namespace's newest sequence is above `seen` (this node's appends
    /// at once; other writers' when the engine next looks, within `at_most`), or after
    /// `at_most`.
    fn wait_past(&self, seen: u64, at_most: Duration) -> BoxFuture<'_, ()>;

    /// The server's figures, asked for now.
    fn state(&self) -> BoxFuture<'_, Result<ServerConsumerState, StorageError>>;

    /// Changes the redelivery settings (`start` and `filter` stay).
    fn update(&self, config: ServerConsumerConfig) -> BoxFuture<'_, Result<(), StorageError>>;
}

/// The engine's server-side consumers.
pub trait ServerConsumers: Send + Sync + 'static {
    /// The consumer `config` names, created when it does not exist. An existing one with
    /// the same filter is opened as it is (its position and pending deliveries kept); one
    /// with another filter or kind is replaced. Fails when the namespace does not exist.
    fn open(
        &self,
        config: ServerConsumerConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn ServerConsumer>, StorageError>>;

    /// Deletes consumer `name` of `namespace` (nothing when it does not exist).
    fn delete<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
}
