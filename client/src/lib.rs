//! `bus-client`: the typed async Rust client for the bus broker.
//!
//! It speaks the broker's HTTP API (`proto-docs/http-api.md`) over pooled HTTP/1.1
//! connections:
//!
//! - [`Client::connect`] (or [`ConnectOptions`]) builds a cheap, cloneable [`Client`] and checks
//!   that the broker answers. [`ConnectOptions::authorization`] sends an `Authorization` header
//!   with every request, for a broker behind an authenticating proxy.
//! - [`Client::publish`] stores one event and returns its [`Receipt`]; the returned
//!   [`PublishBuilder`] sets headers, a dedup id, a content type or a reply subject before it is
//!   awaited. [`Client::publish_json`] publishes any `Serialize` value as JSON.
//!   [`Client::publish_batch`] stores several [`BatchItem`]s atomically.
//! - Every publish carries a dedup id: a fresh random one unless [`PublishBuilder::msg_id`] sets
//!   one derived from the data. So a publish is safe to send again, and the client does: after
//!   a refused or dropped connection it retries it as the [`ReconnectPolicy`] allows (a batch
//!   only when every item has an id). [`PublishBuilder::no_msg_id`] opts out of both. Other
//!   requests are not retried, background ack batches excepted (acks are idempotent).
//! - [`Client::subscribe`] returns a [`Subscription`], a `futures::Stream` of [`StreamItem`]s
//!   read from Server-Sent Events; dropping it unsubscribes. [`Client::subscribe_with`] takes
//!   [`SubscribeOptions`]: manual acks, a durable consumer, a queue group, redelivery
//!   settings. The redelivery settings and `limit` are sent only when the subscription
//!   attaches to a consumer; a plain stream sends `pattern` and `from` alone and keeps its
//!   `limit` itself.
//! - A subscription whose connection drops reconnects by itself and resumes exactly (see
//!   [`Subscription`]): a plain one from the cursor after the last event it yielded (nothing
//!   missed, nothing repeated), a member of a durable consumer or group from the consumer's
//!   state (what was not acked comes again). [`ConnectOptions::reconnect`] sets the
//!   [`ReconnectPolicy`]; the default tries 30 times, 100 ms doubling to 2 s apart, about
//!   53 s, before the stream ends with an error.
//! - A manual-ack delivery is acknowledged through its [`Message`] ([`Message::ack`],
//!   [`Message::nack`], [`Message::nack_with_delay`], [`Message::in_progress`],
//!   [`Message::term`]), or by id with [`Client::acknowledge`] and, many in one request,
//!   [`Client::ack_batch`].
//! - Acks are batched in the background: [`Message::ack`] only queues the ack (waiting only
//!   when 10,000 are queued already) and a task per manual-ack subscription sends up to 1,000
//!   per request.
//!   [`Message::double_ack`] waits for the broker's answer; [`Subscription::flush_acks`] waits
//!   until every queued ack was sent and answered; dropping the subscription and its messages
//!   sends what is queued, as long as the runtime runs: before a program returns from `main`,
//!   await [`Subscription::close`] (or [`Subscription::ack_flushed`] after the drops). Acks
//!   a runtime shutdown cancels are counted in [`Client::statistics`]
//!   ([`Statistics::acks_lost`]) and logged with `tracing::warn!`.
//!   An ack lost with the connection or the process means a redelivery, never a loss.
//!   The other operations are sent one request each.
//! - [`PublishBuilder::confirm`] makes a publish wait until N consumers acked the event.
//! - [`Client::consumers`], [`Client::consumer`], [`Client::seek_consumer`] and
//!   [`Client::delete_consumer`] manage consumers.
//! - [`Client::request`] sends a request and waits for its [`Reply`] (request/reply);
//!   [`Client::reply`] answers a request delivered with a `reply_to` inbox.
//! - [`Client::serve`] runs a handler for every message of a pattern, [`ServeOptions`] setting
//!   the subscription (by default a queue group named after the pattern), the handlers running
//!   at once (default 16) and a shutdown signal. A handler's [`Answer`] becomes the reply to a
//!   request; its [`HandlerError`] becomes an error reply, or for work a nack (after its
//!   `retry_after`). Every message is acked once answered, failed work excepted.
//! - [`Client::pull`] reads one [`Page`] of events and a cursor to continue from.
//! - [`Client::namespaces`] lists the namespaces and their figures.
//!
//! Every operation family has its error type ([`Error`], [`PublishError`], [`RequestError`]) with a
//! [`kind`](Error::kind) to match on; the broker's `{"error":{"code","message"}}` answers
//! become [`ErrorKind::Api`] with the status and code, the message in [`ApiError`]. A request
//! nobody listens to fails at once with [`ErrorKind::NoResponders`].
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use futures::StreamExt as _;
//! use bus_client::{
//!     AckMode, Answer, Client, ErrorKind, HandlerError, ServeOptions, Start, StreamItem,
//!     SubscribeOptions,
//! };
//!
//! #[derive(serde::Serialize)]
//! struct Signup {
//!     name: String,
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("http://127.0.0.1:2021").await?;
//!
//! // Publish bytes with a content type, a header and a dedup id of our own (the default, a
//! // random one, makes the client's retries safe; this one makes ours safe too).
//! let receipt = client
//!     .publish("user.created", r#"{"name":"ada"}"#)
//!     .content_type("application/json")
//!     .header("trace", "abc")
//!     .msg_id("signup-ada")
//!     .await?;
//! println!("stored {} as sequence {}", receipt.id, receipt.sequence);
//! // Or any `Serialize` value, as JSON.
//! client
//!     .publish_json("user.created", &Signup { name: "grace".into() })?
//!     .await?;
//!
//! // A responder in the background: `serve` runs the handler for each request, 8 at once,
//! // and sends its answer as the reply.
//! let responder = client.clone();
//! tokio::spawn(async move {
//!     let options = ServeOptions::new().concurrency(8);
//!     responder
//!         .serve("rpc.user.get", options, |m| async move {
//!             let id: u64 = m.payload_json().map_err(|e| HandlerError::new(e.to_string()))?;
//!             Ok(Answer::new(format!(r#"{{"id":{id},"name":"ada"}}"#))
//!                 .content_type("application/json"))
//!         })
//!         .await
//! });
//!
//! // Or answer by hand: subscribe, and reply to each request's `reply_to` inbox.
//! let mut pings = client.subscribe("rpc.ping", Start::Newest).await?;
//! let answerer = client.clone();
//! tokio::spawn(async move {
//!     while let Some(Ok(item)) = pings.next().await {
//!         if let StreamItem::Event(m) = item
//!             && let Some(inbox) = &m.reply_to
//!         {
//!             let _ = answerer.reply(inbox, "pong").await;
//!         }
//!     }
//! });
//!
//! // Request/reply, branching on what went wrong.
//! match client.request("rpc.user.get", "7").timeout(Duration::from_secs(2)).await {
//!     Ok(reply) => println!("user 7: {}", reply.text().unwrap_or("(binary)")),
//!     Err(e) if e.kind() == &ErrorKind::NoResponders => eprintln!("nothing serves rpc.user.get"),
//!     Err(e) if e.kind() == &ErrorKind::Timeout => eprintln!("no reply within 2 s"),
//!     Err(e) => return Err(e.into()),
//! }
//!
//! // A durable consumer with manual acks: what is not acked comes back, also after a
//! // restart. `ack` queues the ack; the broker gets it in a batch with others.
//! let options = SubscribeOptions::new()
//!     .durable("mailer")
//!     .ack(AckMode::Manual)
//!     .from(Start::Oldest);
//! let mut work = client.subscribe_with("user.created", options).await?;
//! while let Some(item) = work.next().await {
//!     match item? {
//!         StreamItem::Event(m) => {
//!             // ... send the welcome mail, then:
//!             m.ack().await?;
//!         }
//!         StreamItem::Gap(g) => eprintln!("missed {}..{} of {}", g.missed_from, g.resume_at, g.namespace),
//!         _ => {}
//!     }
//! }
//! // The broker stopped: make sure it has every ack before leaving.
//! work.flush_acks().await?;
//!
//! // Or pull pages, continuing from each page's cursor.
//! let page = client.pull("user.>", Start::Oldest, 100, Duration::ZERO).await?;
//! let wait = Duration::from_secs(5);
//! let next = client.pull("user.>", Start::Cursor(page.cursor), 100, wait).await?;
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
mod subscription;

/// The Server-Sent Events parser the subscriptions read with: [`bus_proto::sse`].
pub use bus_proto::sse;

pub use ack::{AckItem, AckOp, AckResult, AckStatus};
pub use client::{
    Client, ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, Statistics,
};
pub use consumer::{AckMode, ConsumerInfo, ConsumerKind, ConsumerUpdate, SubscribeOptions};
pub use error::{ApiError, Error, ErrorCode, ErrorKind, PublishError, RequestError};
pub use message::{
    DecodeError, Gap, GapReason, Message, NamespaceInfo, Page, Receipt, Start, StartParseError,
};
pub use publish::{BatchItem, PublishBuilder};
pub use reconnect::ReconnectPolicy;
pub use request::{ERROR_HEADER, Reply, ReplyBuilder, RequestBuilder};
pub use serve::{Answer, HandlerError, ServeOptions, header_safe};
pub use subscription::{StreamItem, Subscribed, Subscription};
