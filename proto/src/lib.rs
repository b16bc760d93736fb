//! `bus-proto`: the bus wire protocol, shared by the broker (`bus-broker`), the client
//! (`bus-client`) and the `bus` command (`bus-cli`). What one side writes, the other reads
//! with the same types, so the protocol is written down once (`proto-docs/http-api.md` is
//! its prose). No I/O, no async runtime: values, their JSON, and parsers.
//!
//! A tour, in the order a request meets them:
//!
//! - [`units`]: the human units at the edges: sizes (`64KiB`), durations (`500ms`, `1h30m`)
//!   and RFC 3339 times (nanoseconds since the epoch inside bus). [`durations`] holds the
//!   serde adapters for durations in JSON (`"30000ms"`).
//! - [`start`]: [`Start`], where reading starts (`from=`): `oldest`, `newest`, a time, or an
//!   event id or cursor. [`event_id`] is the grammar of event ids (`user-42-00000abc`) and
//!   [`cursor`] of [`Cursor`]s, a position per namespace, carried as the SSE `id:` and a pull
//!   page's `cursor`.
//! - [`event`]: the event JSON, written from an [`EventView`] of an event's fields (the one
//!   form an event takes on the wire: SSE `data:`, pull pages, CLI output);
//!   [`decoded_event`]: [`DecodedEvent`], the same JSON read back.
//! - [`receipt`]: [`Receipt`], the answer to a publish. The hand-written JSON writers of
//!   events and receipts append to a [`json_out::JsonOut`]: a `String`, or a `Vec<u8>` that
//!   is an HTTP body as it is.
//! - [`ack`]: [`AckMode`] (`none` / `manual`) and [`AckStatus`], the answer to an
//!   acknowledgement.
//! - [`consumer`]: [`ConsumerInfo`] and [`ConsumerKind`], consumers as the broker lists them;
//!   [`consumer_update`]: [`ConsumerUpdate`], the settings a `PATCH` changes.
//! - [`namespace`]: [`NamespaceInfo`], a namespace's figures.
//! - [`subscription`]: [`SubscriptionInfo`] (`GET /v1/subscriptions`) and [`Subscribed`],
//!   the first message of a stream. [`gap`]: [`Gap`], events lost before they were
//!   read, with a [`GapReason`] (retention, or damage a repair could not salvage).
//! - [`error`]: [`ErrorCode`], the stable error codes with their spelling and HTTP status,
//!   and the error JSON ([`ErrorBody`](error::ErrorBody), [`ErrorDetail`](error::ErrorDetail)).
//! - [`sse`]: [`SseParser`](sse::SseParser), the one incremental, bounded parser of
//!   Server-Sent Events (client and tests alike).
//!
//! JSON field names and values are the protocol's and do not change; types that are read
//! tolerate unknown fields, so a newer broker can add some.

pub mod ack;
pub mod consumer;
pub mod consumer_update;
pub mod cursor;
pub mod decoded_event;
pub mod durations;
pub mod error;
pub mod event;
pub mod event_id;
pub mod gap;
pub mod json_out;
pub mod namespace;
pub mod receipt;
pub mod sse;
pub mod start;
pub mod subscription;
pub mod units;
pub mod whoami;

pub use ack::{AckMode, AckStatus};
pub use consumer::{ConsumerInfo, ConsumerKind};
pub use consumer_update::ConsumerUpdate;
pub use cursor::Cursor;
pub use decoded_event::{DecodeError, DecodedEvent};
pub use error::ErrorCode;
pub use event::EventView;
pub use gap::{Gap, GapReason};
pub use namespace::NamespaceInfo;
pub use receipt::{Receipt, ReceiptRef};
pub use start::{InvalidStart, Start, StartParseError};
pub use subscription::{Subscribed, SubscriptionInfo};
pub use whoami::Whoami;
