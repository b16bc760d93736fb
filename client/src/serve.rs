//! [`Client::serve`](crate::Client::serve): run a handler for every message of a pattern, in
//! the spirit of go-msg's Receiver — the loop every worker and responder would otherwise
//! write by hand.
//!
//! Each message runs the handler on its own task, at most
//! [`concurrency`](ServeOptions::concurrency) at once (also the consumer's `max_in_flight`, so
//! the broker hands out no more). When the handler returns:
//!
//! | handler | message has `reply_to` (a request) | no `reply_to` (work) |
//! |---|---|---|
//! | `Ok(answer)` | reply with the [`Answer`], ack | ack |
//! | `Err(e)` | error reply with `e`'s message, ack | nack, after `e`'s `retry_after` if set |
//!
//! A request is acked even when it failed: it was answered, and a redelivery would reach a
//! caller no longer waiting. Work that fails is nacked and comes back at once (or after
//! [`HandlerError::retry_after`]); a message that always fails would come back forever, so
//! bound it: give the subscription a `max_deliver` (it then goes to the dead-letter subject)
//! and a `backoff` ([`ServeOptions::subscribe`]), or return a `retry_after`. When the shutdown future resolves, no new message is taken;
//! those in flight finish and are answered, the queued acks are sent, and `serve` returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::consumer::{AckMode, SubscribeOptions};
use crate::error::Error;
use crate::message::{Message, Start};
use crate::subscription::StreamItem;

/// Most bytes of an error reply's message (it travels as a header value).
const MAX_ERROR_MESSAGE: usize = 512;

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Settings of [`Client::serve`].
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
/// use bus_client::{HandlerError, ServeOptions, SubscribeOptions};
/// let options = ServeOptions::new()
///     .subscribe(SubscribeOptions::new().durable("thumbnails"))
///     .concurrency(4);
/// client
///     .serve("image.uploaded", options, |m| async move {
///         println!("resizing {}", m.id);
///         Ok::<_, HandlerError>(())
///     })
///     .await
/// # }
/// ```
pub struct ServeOptions {
    subscribe: Option<SubscribeOptions>,
    concurrency: usize,
    shutdown: Option<Shutdown>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("subscribe", &self.subscribe)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions::new()
    }
}

impl ServeOptions {
    /// The defaults: a queue group named after the pattern, manual acks, from the newest
    /// event, 16 handlers at once, no shutdown signal (serve until the broker stops).
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::{HandlerError, ServeOptions};
    /// // Every instance of this program answers pings; each ping reaches one of them.
    /// client
    ///     .serve("rpc.ping", ServeOptions::new(), |_m| async {
    ///         Ok::<_, HandlerError>("pong")
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn new() -> ServeOptions {
        ServeOptions {
            subscribe: None,
            concurrency: 16,
            shutdown: None,
        }
    }

    /// The subscription to serve (a durable consumer, say, to work through a backlog across
    /// restarts). Manual acks are forced; its `max_in_flight` becomes the concurrency.
    /// Default: a group named after the pattern, from the newest event.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::{HandlerError, ServeOptions, Start, SubscribeOptions};
    /// // Work through the backlog too, and go on where the last run stopped.
    /// let subscription = SubscribeOptions::new().durable("indexer").from(Start::Oldest);
    /// let options = ServeOptions::new().subscribe(subscription);
    /// client
    ///     .serve("doc.>", options, |m| async move {
    ///         println!("indexing {}", m.id);
    ///         Ok::<_, HandlerError>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe(mut self, options: SubscribeOptions) -> ServeOptions {
        self.subscribe = Some(options);
        self
    }

    /// Handlers running at once (1 to 100,000). Default: 16.
    ///
    /// ```no_run
    /// let options = bus_client::ServeOptions::new().concurrency(64);
    /// ```
    pub fn concurrency(mut self, n: usize) -> ServeOptions {
        self.concurrency = n.clamp(1, 100_000);
        self
    }

    /// Stops serving when `signal` resolves (for example `tokio::signal::ctrl_c()`), after
    /// the messages in flight are handled.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use std::time::Duration;
    /// use bus_client::{HandlerError, ServeOptions};
    /// // Serve for an hour, then finish what is in flight and return.
    /// let options = ServeOptions::new().shutdown(tokio::time::sleep(Duration::from_secs(3600)));
    /// client
    ///     .serve("job.>", options, |_m| async { Ok::<_, HandlerError>(()) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> ServeOptions {
        self.shutdown = Some(Box::pin(signal));
        self
    }
}

/// What a handler answers a message with: the reply's payload, and optionally its content
/// type and event headers (used only when the message is a request). Built from bytes or
/// text with `into()`.
///
/// ```no_run
/// use bus_client::Answer;
/// let plain: Answer = "pong".into();
/// let json = Answer::new(r#"{"ok":true}"#).content_type("application/json");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    payload: Bytes,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
}

impl Answer {
    /// An answer with this payload.
    ///
    /// ```no_run
    /// let answer = bus_client::Answer::new(vec![0x89, b'P', b'N', b'G']);
    /// ```
    pub fn new(payload: impl Into<Bytes>) -> Answer {
        Answer {
            payload: payload.into(),
            ..Answer::default()
        }
    }

    /// Sets the reply's content type.
    ///
    /// ```no_run
    /// let answer = bus_client::Answer::new("<p>42</p>").content_type("text/html");
    /// ```
    pub fn content_type(mut self, content_type: impl Into<String>) -> Answer {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds an event header to the reply.
    ///
    /// ```no_run
    /// let answer = bus_client::Answer::new("42").header("cache", "hit");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<Bytes> for Answer {
    fn from(payload: Bytes) -> Answer {
        Answer::new(payload)
    }
}

impl From<Vec<u8>> for Answer {
    fn from(payload: Vec<u8>) -> Answer {
        Answer::new(payload)
    }
}

impl From<String> for Answer {
    fn from(payload: String) -> Answer {
        Answer::new(payload)
    }
}

impl From<&'static str> for Answer {
    fn from(payload: &'static str) -> Answer {
        Answer::new(payload)
    }
}

impl From<()> for Answer {
    fn from(_: ()) -> Answer {
        Answer::default()
    }
}

/// A handler's failure: the error reply's message for a request, the nack (and its delay)
/// for work.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
/// use bus_client::{HandlerError, ServeOptions};
/// client
///     .serve("mail.send", ServeOptions::new(), |m| async move {
///         let Some(to) = m.headers.get("to") else {
///             return Err(HandlerError::new("no recipient"));
///         };
///         println!("mailing {to}");
///         Ok(())
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    retry_after: Option<Duration>,
}

impl HandlerError {
    /// A failure saying `message`.
    ///
    /// ```no_run
    /// let e = bus_client::HandlerError::new(format!("no user with id {}", 7));
    /// ```
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Redeliver the message after `delay` (work only): back off from what cannot be handled
    /// yet. Default: at once.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let e = bus_client::HandlerError::new("the mail server is down")
    ///     .retry_after(Duration::from_secs(60));
    /// ```
    pub fn retry_after(mut self, delay: Duration) -> HandlerError {
        self.retry_after = Some(delay);
        self
    }

    /// The message.
    ///
    /// ```no_run
    /// let e = bus_client::HandlerError::new("boom");
    /// assert_eq!(e.message(), "boom");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> HandlerError {
        HandlerError::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> HandlerError {
        HandlerError::new(message)
    }
}

/// `s` as a header value: visible ASCII and spaces (others become `?`), at most
/// 512 bytes, the bound [`Client::serve`](crate::Client::serve) puts on an error reply's message.
///
/// ```no_run
/// assert_eq!(bus_client::header_safe("bad\nline: é"), "bad?line: ?");
/// ```
pub fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_ERROR_MESSAGE)
        .collect()
}

/// Handles one message and answers it as the module's table says.
async fn answer<F, Fut, A>(client: Client, m: Message, handler: Arc<F>)
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<A, HandlerError>> + Send + 'static,
    A: Into<Answer>,
{
    let outcome = handler(m.clone()).await.map(Into::into);
    // Failures to answer are not the handler's: a reply whose caller left is refused, and an
    // ack that is lost means a redelivery.
    match (&m.reply_to, outcome) {
        (Some(inbox), Ok(a)) => {
            let mut reply = client.reply(inbox, a.payload);
            if let Some(ct) = a.content_type {
                reply = reply.content_type(ct);
            }
            for (k, v) in a.headers {
                reply = reply.header(k, v);
            }
            let _ = reply.await;
            let _ = m.ack().await;
        }
        (Some(inbox), Err(e)) => {
            let _ = client.reply(inbox, "").error(header_safe(&e.message)).await;
            let _ = m.ack().await;
        }
        (None, Ok(_)) => {
            let _ = m.ack().await;
        }
        (None, Err(e)) => {
            let _ = match e.retry_after {
                Some(d) => m.nack_with_delay(d).await,
                None => m.nack().await,
            };
        }
    }
}

impl Client {
    /// Runs `handler` for every message of `pattern` until the broker stops or the
    /// [`shutdown`](ServeOptions::shutdown) signal resolves, answering each as the table in
    /// the module documentation says (reply and ack; or nack work that failed). Returns
    /// `Ok(())` after a clean stop, with every message taken handled and its acks sent.
    ///
    /// Fails when the subscription cannot start, or when its stream fails for good (the
    /// messages in flight are still handled first).
    ///
    /// ```no_run
    /// use bus_client::{Answer, Client, HandlerError, ServeOptions};
    ///
    /// # async fn demo(client: Client) -> Result<(), bus_client::Error> {
    /// let options = ServeOptions::new()
    ///     .concurrency(8)
    ///     .shutdown(async { let _ = tokio::signal::ctrl_c().await; });
    /// client
    ///     .serve("rpc.user.get", options, |m| async move {
    ///         let id: u64 = m.payload_json().map_err(|e| HandlerError::new(e.to_string()))?;
    ///         Ok(Answer::new(format!(r#"{{"id":{id},"name":"ada"}}"#)).content_type("application/json"))
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn serve<F, Fut, A>(
        &self,
        pattern: &str,
        options: ServeOptions,
        handler: F,
    ) -> Result<(), Error>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A, HandlerError>> + Send + 'static,
        A: Into<Answer> + 'static,
    {
        let limit = options.concurrency;
        let subscribe = options
            .subscribe
            .unwrap_or_else(|| SubscribeOptions::new().group(pattern).from(Start::Newest))
            .ack(AckMode::Manual)
            .max_in_flight(limit);
        let mut sub = self.subscribe_with(pattern, subscribe).await?;
        let mut shutdown: Shutdown = options
            .shutdown
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let handler = Arc::new(handler);
        let mut tasks = JoinSet::new();
        let mut open = true;
        let mut failure = None;
        while open || !tasks.is_empty() {
            tokio::select! {
                // In this order: once the shutdown signal has resolved, no message is taken,
                // even one that arrived in the same wake-up (a random pick could take it and
                // start a handler after shutdown).
                biased;
                _ = &mut shutdown, if open => open = false,
                Some(_) = tasks.join_next() => {}
                item = sub.next(), if open && tasks.len() < limit => match item {
                    Some(Ok(StreamItem::Event(m))) => {
                        tasks.spawn(answer(self.clone(), m, handler.clone()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        failure = Some(e);
                        open = false;
                    }
                    None => open = false,
                },
            }
        }
        sub.flush_acks().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
