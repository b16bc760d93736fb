//! `bus-client`: the typed async Rust client for the bus broker.
//!
//! It speaks the broker's HTTP API (`proto-docs/http-api.md`) over pooled HTTP/1.1
//! connections:
//!
//! - [`Client::connect`] (or [`ConnectOptions`]) builds a cheap, cloneable [`Client`] and checks
//!   that the broker answers.
//! - [`Client::publish`] stores one event and returns its [`Receipt`]; the returned
//!   [`PublishBuilder`] sets headers, a dedup id, a content type or a reply subject before it is
//!   awaited. [`Client::publish_batch`] stores several [`BatchItem`]s atomically.
//! - [`Client::subscribe`] returns a [`Subscription`], a `futures::Stream` of [`StreamItem`]s
//!   read from Server-Sent Events; dropping it unsubscribes.
//! - [`Client::pull`] reads one [`Page`] of events and a cursor to continue from.
//! - [`Client::namespaces`] lists the namespaces and their figures.
//!
//! Every operation family has its error type ([`Error`], [`PublishError`]) with a
//! [`kind`](Error::kind) to match on; the broker's `{"error":{"code","message"}}` answers
//! become [`ErrorKind::Api`] with the status and code, the message in [`ApiError`].
//!
//! ```no_run
//! use futures::StreamExt as _;
//! use bus_client::{Client, Start, StreamItem};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("http://127.0.0.1:2021").await?;
//!
//! // Publish, with a header and a dedup id.
//! let receipt = client
//!     .publish("user.created", r#"{"name":"ada"}"#)
//!     .content_type("application/json")
//!     .header("trace", "abc")
//!     .msg_id("signup-ada")
//!     .await?;
//! println!("stored {} as sequence {}", receipt.id, receipt.sequence);
//!
//! // Read everything under `user.` from the start, live.
//! let mut sub = client.subscribe("user.>", Start::Oldest).await?;
//! while let Some(item) = sub.next().await {
//!     match item? {
//!         StreamItem::Event(m) => println!("{} {}", m.subject, String::from_utf8_lossy(&m.payload)),
//!         StreamItem::Gap(g) => eprintln!("missed {}..{} of {}", g.missed_from, g.resume_at, g.namespace),
//!         _ => {}
//!     }
//! }
//!
//! // Or pull pages, continuing from each page's cursor.
//! let page = client.pull("user.>", Start::Oldest, 100, std::time::Duration::ZERO).await?;
//! let next = client.pull("user.>", Start::Cursor(page.cursor), 100, std::time::Duration::from_secs(5)).await?;
//! println!("{} more events", next.events.len());
//! # Ok(()) }
//! ```

mod client;
mod error;
mod message;
mod publish;
pub mod sse;
mod subscription;

pub use client::{Client, ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use error::{ApiError, Error, ErrorKind, PublishError};
pub use message::{
    DecodeError, Gap, Message, NamespaceInfo, Page, Receipt, Start, StartParseError,
};
pub use publish::{BatchItem, PublishBuilder};
pub use subscription::{StreamItem, Subscribed, Subscription};
