//! The JetStream engine: every namespace in a NATS JetStream stream, the broker's state in
//! a KV bucket (`--storage nats://host:4222`). See `proto-docs/jetstream.md` for the
//! mapping and what differs from the disk engine.
//!
//! - [`options`]: where the servers are, credentials, replicas; what is refused (fsync).
//! - `codec`: an event as a NATS message (headers, in order).
//! - `log`: [`JetStreamLog`], one namespace's stream: appends (single publishes and atomic
//!   batches), id lookups, figures.
//! - `reader`: batched direct gets, and the reader built on them.
//! - `consumer`: durable pull consumers, bus's durable consumers of one namespace.
//! - `state`: the state bucket.
//! - `storage`: [`JetStreamStorage`], the engine.
//! - `migrate`: [`migrate`], a data directory moved into JetStream (`bus migrate`).

mod codec;
mod consumer;
mod log;
mod migrate;
pub mod options;
mod reader;
mod state;
mod storage;

pub use log::JetStreamLog;
pub use migrate::{MigrateReport, migrate};
pub use options::JetStreamOptions;
pub use storage::JetStreamStorage;
