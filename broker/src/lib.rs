//! `bus-broker`: the engine of the bus event broker.
//!
//! A tour of the crate, in the order data flows through it:
//!
//! - [`subject`]: the grammar of subjects (`user.created`) and patterns (`user.*`, `user.>`).
//!   Parsing yields typed [`subject::Subject`] and [`subject::Pattern`] values or an error that
//!   says what is wrong and where.
//! - [`trie`]: [`trie::SubjectTrie`], which matches a published subject against every live
//!   subscription pattern, visiting only branches that can match.
//! - [`storage`]: the durable event log, one per namespace (the first token of a subject).
//!   Framed, checksummed records in rolling segment files, group-committed `fdatasync`,
//!   memory-mapped reads of sealed segments, crash recovery, retention. Everything above it
//!   reaches storage only through the [`storage::Storage`] trait; three engines implement
//!   it (disk, memory, and [`storage::jetstream`] on NATS JetStream, opened by
//!   [`broker::Broker::on_jetstream`]), and [`broker::Broker::with_storage`] takes any other.
//! - [`namespaces`]: [`namespaces::Namespaces`], the registry of logs over the trait, with
//!   the namespace policy and the "namespace created" watch.
//! - [`interest`]: [`interest::Interest`], the live subscriptions in the subject trie.
//! - [`publisher`]: [`publisher::Publisher`], the publish path.
//! - [`subscription`]: [`subscription::Subscription`], readers over the namespaces a pattern
//!   touches, merged, with a cursor.
//! - [`delivery`]: consumers (acks, redelivery, durable state, groups, dead letters),
//!   working with [`delivery::ConsumerParts`] only.
//! - [`request`] and [`inboxes`]: request/reply.
//! - [`broker`]: [`broker::Broker`], the façade over all of the above, which nothing below
//!   it knows.
//! - [`auth`]: credentials (tokens, JWTs, session cookies) and per-subject permissions;
//!   every handler checks its right on the request's [`auth::Caller`].
//! - [`http`] and [`server`]: the HTTP API and the server loop that serves it;
//!   [`listener`] bounds the connections, [`connection`] serves one (timeouts, per-client
//!   limits, the PROXY protocol of [`trusted_proxies`], [`tls`]).
//!
//! The wire forms (the event JSON, error codes, start positions and cursors, units, the
//! JSON of receipts, namespaces, consumers and subscriptions) are defined once in the
//! `bus-proto` crate and shared with the client; [`units`], [`cursor`], [`event`] and
//! [`error::ErrorCode`] re-export or adapt them.

pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod cursor;
pub mod delivery;
pub mod error;
pub mod event;
pub mod http;
pub mod inboxes;
pub mod interest;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod namespaces;
pub mod process_stats;
pub mod publisher;
pub mod request;
pub mod server;
pub mod storage;
pub mod subject;
pub mod subscription;
mod sync;
pub mod tls;
pub mod token_table;
pub mod trie;
pub mod trusted_proxies;
pub mod units;
