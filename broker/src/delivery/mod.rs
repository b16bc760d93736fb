//! At-least-once delivery: consumers that acknowledge, redelivery timers, durable consumers,
//! queue groups, dead letters, and publish confirmation.
//!
//! - [`settings`]: [`ConsumerSettings`] (ack mode, ack wait, max deliveries, backoff, max in
//!   flight) and the consumer name grammar.
//! - [`consumer_state`]: [`ConsumerState`], the bookkeeping of one consumer, free of I/O.
//! - [`consumer`]: [`Consumer`], which shares one log reader among its members, runs the
//!   timers, publishes dead letters and persists durable consumers.
//! - [`consumers`]: [`Consumers`], the registry by name, and [`Member`], one attached stream.
//! - [`confirmations`]: [`Confirmations`], publishes waiting for N consumers' acks.
//! - [`dead_letters`]: [`DeadLetterSink`], where given-up events go.
//! - [`parts`]: [`ConsumerParts`], the narrow parts of the broker consumers work with.

pub mod confirmations;
pub mod consumer;
pub mod consumer_state;
pub mod consumers;
pub mod dead_letters;
pub mod parts;
pub mod settings;

pub use confirmations::Confirmations;
pub use consumer::{AckItem, Consumer, ConsumerKind, DEAD_LETTER_PREFIX, Out};
pub use consumer_state::{ConsumerState, Outcome, Verb};
pub use consumers::{Attach, Consumers, Member};
pub use dead_letters::DeadLetterSink;
pub use parts::ConsumerParts;
pub use settings::{AckMode, ConsumerSettings};
