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
//!   read from Server-Sent Events; dropping it unsubscribes. [`Client::subscribe_with`] takes
//!   [`SubscribeOptions`]: manual acks, a durable consumer, a queue group, redelivery
//!   settings.
//! - A manual-ack delivery is acknowledged through its [`Message`] ([`Message::ack`],
//!   [`Message::nack`], [`Message::nack_with_delay`], [`Message::in_progress`],
//!   [`Message::term`]), or by id with [`Client::acknowledge`] and, many in one request,
//!   [`Client::ack_batch`].
//! - [`PublishBuilder::confirm`] makes a publish wait until N consumers acked the event.
//! - [`Client::consumers`], [`Client::consumer`], [`Client::seek_consumer`] and
//!   [`Client::delete_consumer`] manage consumers.
//! - [`Client::request`] sends a request and waits for its [`Reply`] (request/reply);
//!   [`Client::reply`] answers a request delivered with a `reply_to` inbox.
//! - [`Client::pull`] reads one [`Page`] of events and a cursor to continue from.
//! - [`Client::namespaces`] lists the namespaces and their figures.
//!
//! Every operation family has its error type ([`Error`], [`PublishError`], [`RequestError`]) with a
//! [`kind`](Error::kind) to match on; the broker's `{"error":{"code","message"}}` answers
//! become [`ErrorKind::Api`] with the status and code, the message in [`ApiError`].
//!
//! ```no_run
//! use futures::StreamExt as _;
//! use bus_client::{AckMode, Client, Start, StreamItem, SubscribeOptions};
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
//! // A durable consumer with manual acks: what is not acked comes back.
//! let options = SubscribeOptions::new().durable("mailer").ack(AckMode::Manual);
//! let mut work = client.subscribe_with("user.created", options).await?;
//! while let Some(item) = work.next().await {
//!     if let StreamItem::Event(m) = item? {
//!         // ... send the welcome mail, then:
//!         m.ack().await?;
//!     }
//! }
//!
//! // Or pull pages, continuing from each page's cursor.
//! let page = client.pull("user.>", Start::Oldest, 100, std::time::Duration::ZERO).await?;
//! let next = client.pull("user.>", Start::Cursor(page.cursor), 100, std::time::Duration::from_secs(5)).await?;
//! println!("{} more events", next.events.len());
//! # Ok(()) }
//! ```

mod ack;
mod ack_batcher;
mod client;
mod consumer;
mod error;
mod message;
mod publish;
mod reconnect;
mod request;
mod serve;
pub mod sse;
mod subscription;

pub use ack::{AckItem, AckOp, AckResult, AckStatus};
pub use client::{Client, ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use consumer::{AckMode, ConsumerInfo, ConsumerKind, SubscribeOptions};
pub use error::{ApiError, Error, ErrorKind, PublishError, RequestError};
pub use message::{
    DecodeError, Gap, Message, NamespaceInfo, Page, Receipt, Start, StartParseError,
};
pub use publish::{BatchItem, PublishBuilder};
pub use reconnect::ReconnectPolicy;
pub use request::{ERROR_HEADER, Reply, ReplyBuilder, RequestBuilder};
pub use serve::{Answer, HandlerError, ServeOptions, header_safe};
pub use subscription::{StreamItem, Subscribed, Subscription};
