//! [`Subscription`]: the `Stream` over one `GET /v1/stream` response, decoding its
//! Server-Sent Events into [`StreamItem`]s.
//!
//! The stream ends (`None`) after the broker's `event: shutdown`, or after an error item: a
//! stream error sent by the broker ([`ErrorKind::Stream`]), something unparsable
//! ([`ErrorKind::Protocol`]), or a broken connection ([`ErrorKind::Io`]) that reconnecting
//! could not mend.
//!
//! **Reconnecting.** When the connection drops (reset, closed without the shutdown notice),
//! the subscription reconnects by itself, as the client's
//! [`ReconnectPolicy`](crate::ReconnectPolicy) allows, and resumes exactly after the last
//! event it yielded: a plain subscription from its cursor ([`Subscription::cursor`], the SSE
//! id of that event), so nothing is missed and nothing repeated; a member of a durable
//! consumer or a group by attaching again, the consumer's state saying where it is (what was
//! delivered and not acked comes again, as at-least-once promises); an unnamed manual-ack
//! subscription (whose consumer ended with the connection) after its last event. The
//! broker's confirmation of the new connection is not yielded again.
//!
//! A member of a consumer ([`SubscribeOptions`](crate::SubscribeOptions) with manual acks, a
//! durable or a group name) learns its consumer from the `subscribed` event
//! ([`Subscription::consumer`]); in manual mode each event it yields carries its delivery
//! count and can be acknowledged itself ([`Message::ack`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http_body_util::BodyDataStream;
use hyper::body::Incoming;

use crate::ack::Acker;
use crate::client::Client;
use crate::consumer::{AckMode, ConsumerKind, SubscribeOptions};
use crate::error::{Error, ErrorKind};
use crate::message::Start;
use crate::message::{Gap, Message};
use crate::reconnect::is_disconnect;
use crate::sse::{SseEvent, SseParser};

/// One item of a [`Subscription`].
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
/// use futures::StreamExt as _;
/// use bus_client::{Start, StreamItem};
/// let mut sub = client.subscribe("user.>", Start::Oldest).await?;
/// while let Some(item) = sub.next().await {
///     match item? {
///         StreamItem::Subscribed(s) => println!("subscribed as {}", s.subscription),
///         StreamItem::Event(m) => println!("{}", m.subject),
///         StreamItem::Gap(g) => eprintln!("missed {}..{} of {}", g.missed_from, g.resume_at, g.namespace),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamItem {
    /// The broker confirmed the subscription (always the first item).
    Subscribed(Subscribed),
    /// An event.
    Event(Message),
    /// Events this subscription had not read are gone ([`Gap::reason`]: retention, or
    /// damage a repair salvaged around); it resumed after them.
    Gap(Gap),
}

pub use bus_proto::Subscribed;

type DataStream = BodyDataStream<Incoming>;

/// A reconnection in progress: the wait, then the new stream's body.
type Reconnecting = Pin<Box<dyn std::future::Future<Output = Result<Incoming, Error>> + Send>>;

/// What it takes to open the stream again.
struct Resume {
    pattern: String,
    options: SubscribeOptions,
    /// Failed attempts since the last connection that worked.
    attempts: u32,
    /// Set while reconnecting. In a mutex only so that the subscription stays `Sync` (the
    /// future is reached through `&mut self`, with `get_mut`, never locked).
    pending: Option<std::sync::Mutex<Reconnecting>>,
    /// Whether to swallow the next `subscribed` (the confirmation of a reconnection).
    reconnected: bool,
    /// Events yielded (a member's `limit` counts down across connections).
    yielded: u64,
}

/// A live subscription: a `Stream` of [`StreamItem`]s. Dropping it closes the connection,
/// which ends the subscription on the broker.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
/// use futures::StreamExt as _;
/// use bus_client::{Start, StreamItem};
/// let sub = client.subscribe("user.>", Start::Newest).await?;
/// // The next ten events, then unsubscribe (`take` drops the subscription).
/// let events: Vec<_> = sub
///     .filter_map(|item| async move {
///         match item {
///             Ok(StreamItem::Event(m)) => Some(m),
///             _ => None,
///         }
///     })
///     .take(10)
///     .collect()
///     .await;
/// # Ok(()) }
/// ```
pub struct Subscription {
    /// The response body, `None` once it ended.
    body: Option<DataStream>,
    /// Decodes the body.
    parser: SseParser,
    /// Items decoded and not yet yielded.
    ready: VecDeque<Result<StreamItem, Error>>,
    /// Set once the stream has ended or failed: nothing more is yielded after `ready`.
    done: bool,
    /// The SSE id of the last event yielded: the cursor after it.
    cursor: Option<String>,
    /// The client, to acknowledge through; `None` only in unit tests.
    client: Option<Client>,
    /// The broker's confirmation, once received.
    subscribed: Option<Subscribed>,
    /// Where this member's deliveries are acknowledged, for a manual-ack consumer.
    acker: Option<Acker>,
    /// How to reconnect; `None` only in unit tests.
    resume: Option<Resume>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("done", &self.done)
            .field("cursor", &self.cursor)
            .field("consumer", &self.consumer())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        body: Incoming,
        max_event_bytes: usize,
        client: Client,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Subscription {
        Subscription {
            body: Some(BodyDataStream::new(body)),
            parser: SseParser::new(max_event_bytes),
            ready: VecDeque::new(),
            done: false,
            cursor: None,
            client: Some(client),
            subscribed: None,
            acker: None,
            resume: Some(Resume {
                pattern: pattern.to_owned(),
                options,
                attempts: 0,
                pending: None,
                reconnected: false,
                yielded: 0,
            }),
        }
    }

    /// After the connection broke with `e`: starts reconnecting and returns `None`, or
    /// returns the error to end the stream with when the policy says stop.
    fn reconnect_or(&mut self, e: Error) -> Option<Error> {
        self.body = None;
        let (Some(client), Some(resume)) = (self.client.clone(), self.resume.as_mut()) else {
            return Some(e);
        };
        if !is_disconnect(&e) && !matches!(e.kind(), ErrorKind::Timeout) {
            return Some(e);
        }
        resume.attempts += 1;
        let Some(delay) = client.options().reconnect_policy().delay(resume.attempts) else {
            return Some(e.context(format!(
                "the event stream broke and {} reconnection attempts failed",
                resume.attempts - 1
            )));
        };
        let mut options = resume.options.clone();
        let named = matches!(
            self.subscribed.as_ref().and_then(|s| s.kind),
            Some(ConsumerKind::Durable | ConsumerKind::Group)
        );
        // A plain stream (or an unnamed consumer, which ended with the connection) resumes
        // after the last event it yielded, or where it started if none came; a named
        // consumer from its own state.
        let start = self
            .cursor
            .as_ref()
            .or(self.subscribed.as_ref().and_then(|s| s.cursor.as_ref()));
        if !named && let Some(c) = start {
            options = options.from(Start::Cursor(c.clone()));
        }
        // A durable consumer exists by now: attach by name, keeping whatever settings it has.
        if matches!(
            self.subscribed.as_ref().and_then(|s| s.kind),
            Some(ConsumerKind::Durable)
        ) {
            options = options.without_consumer_settings();
        }
        if let Some(limit) = options.limit_value() {
            let left = limit.saturating_sub(resume.yielded);
            if left == 0 {
                return Some(e);
            }
            options = options.limit(left);
        }
        let pattern = resume.pattern.clone();
        resume.reconnected = true;
        resume.pending = Some(std::sync::Mutex::new(Box::pin(async move {
            tokio::time::sleep(delay).await;
            client.open_stream(&pattern, &options).await
        })));
        None
    }

    /// Reads until the first item is decoded (normally the `subscribed` confirmation, which
    /// stays queued as the first item). An error before any item is returned.
    pub(crate) async fn await_first_item(&mut self) -> Result<(), Error> {
        while self.ready.is_empty() && !self.done {
            let Some(body) = self.body.as_mut() else {
                break;
            };
            match body.next().await {
                Some(Ok(chunk)) => self.take_bytes(&chunk),
                Some(Err(e)) => {
                    self.finish();
                    return Err(Error::with_source(
                        ErrorKind::Io,
                        "the event stream broke before it started",
                        e,
                    ));
                }
                None => {
                    self.finish();
                    return Err(Error::new(
                        ErrorKind::Io,
                        "the broker closed the event stream before confirming it",
                    ));
                }
            }
        }
        match self.ready.front() {
            Some(Err(_)) => match self.ready.pop_front() {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The cursor after the last event yielded: pass it as `Start::Cursor` to resume exactly
    /// after that event. `None` before the first event. (A consumer's stream resumes from the
    /// consumer's state instead; there this is the last event's id.)
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use futures::StreamExt as _;
    /// use bus_client::Start;
    /// let mut sub = client.subscribe("user.>", Start::Oldest).await?;
    /// let _ = sub.next().await; // ... read for a while
    /// let saved = sub.cursor().map(str::to_owned);
    /// drop(sub);
    /// // Later: go on exactly after the last event read.
    /// let from = saved.map_or(Start::Oldest, Start::Cursor);
    /// let sub = client.subscribe("user.>", from).await?;
    /// # Ok(()) }
    /// ```
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The broker's confirmation of the subscription. [`Client::subscribe_with`] returns once
    /// it arrived, so this is `Some` unless the broker sent something else first.
    ///
    /// ```no_run
    /// # fn demo(sub: &bus_client::Subscription) {
    /// if let Some(s) = sub.subscribed() {
    ///     println!("subscription {} of {} from {}", s.subscription, s.pattern, s.from);
    /// }
    /// # }
    /// ```
    pub fn subscribed(&self) -> Option<&Subscribed> {
        self.subscribed.as_ref()
    }

    /// The name of the consumer this subscription is a member of (`None` for a plain
    /// subscription): what acknowledgements name, for example with [`Client::ack_batch`].
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::{AckMode, SubscribeOptions};
    /// let options = SubscribeOptions::new().ack(AckMode::Manual);
    /// let sub = client.subscribe_with("order.>", options).await?;
    /// println!("member of {}", sub.consumer().unwrap_or("no consumer"));
    /// # Ok(()) }
    /// ```
    pub fn consumer(&self) -> Option<&str> {
        self.subscribed.as_ref()?.consumer.as_deref()
    }

    /// Resolves once every ack queued by this subscription's messages ([`Message::ack`])
    /// was sent and answered. Nothing to do (at once `Ok`) for a subscription that is not a
    /// manual-ack consumer's member.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use futures::StreamExt as _;
    /// use bus_client::{AckMode, StreamItem, SubscribeOptions};
    /// let options = SubscribeOptions::new().durable("mailer").ack(AckMode::Manual);
    /// let mut sub = client.subscribe_with("user.created", options).await?;
    /// let mut handled = 0;
    /// while let Some(item) = sub.next().await {
    ///     if let StreamItem::Event(m) = item? {
    ///         m.ack().await?;
    ///         handled += 1;
    ///         if handled == 100 {
    ///             break;
    ///         }
    ///     }
    /// }
    /// // Before leaving: make sure the broker has every ack.
    /// sub.flush_acks().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush_acks(&self) -> Result<(), Error> {
        match &self.acker {
            Some(a) => a.batcher().flush().await,
            None => Ok(()),
        }
    }

    /// Unsubscribes after every ack queued with [`Message::ack`] was sent and answered: the
    /// explicit end of a manual-ack member, for a program about to stop its runtime (which
    /// would otherwise cancel the acks still queued, counted then in
    /// [`Statistics::acks_lost`](crate::Statistics::acks_lost)). The acks are sent while
    /// this member is still connected, then the connection closes. For a subscription that
    /// is not a manual-ack consumer's member, the same as dropping it.
    ///
    /// Fails if the acknowledger stopped; acks the broker refused are counted in
    /// [`failed_acks`](Self::failed_acks), read before closing.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use futures::StreamExt as _;
    /// use bus_client::{AckMode, StreamItem, SubscribeOptions};
    /// let options = SubscribeOptions::new().durable("mailer").ack(AckMode::Manual);
    /// let mut sub = client.subscribe_with("user.created", options).await?;
    /// if let Some(Ok(StreamItem::Event(m))) = sub.next().await {
    ///     m.ack().await?;
    /// }
    /// sub.close().await?; // the ack is on the broker now
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<(), Error> {
        self.flush_acks().await
    }

    /// Acks queued with [`Message::ack`] that the broker did not record (their events come
    /// back as redeliveries).
    ///
    /// ```no_run
    /// # fn demo(sub: &bus_client::Subscription) {
    /// if sub.failed_acks() > 0 {
    ///     eprintln!("{} acks were lost; their events will come again", sub.failed_acks());
    /// }
    /// # }
    /// ```
    pub fn failed_acks(&self) -> u64 {
        self.acker.as_ref().map_or(0, |a| a.batcher().failed())
    }

    /// Requests the background acknowledger has made so far (each carries up to 1,000 acks).
    ///
    /// ```no_run
    /// # fn demo(sub: &bus_client::Subscription, acked: u64) {
    /// println!("{acked} acks in {} requests", sub.ack_requests());
    /// # }
    /// ```
    pub fn ack_requests(&self) -> u64 {
        self.acker.as_ref().map_or(0, |a| a.batcher().requests())
    }

    /// A future that resolves once the background acknowledger has sent every queued ack and
    /// stopped, which it does when this subscription and every message it delivered are
    /// dropped: a program that must not leave acks behind drops them, then awaits this.
    /// Resolves at once for a subscription that is not a manual-ack consumer's member.
    ///
    /// ```no_run
    /// # async fn demo(sub: bus_client::Subscription) {
    /// let flushed = sub.ack_flushed();
    /// drop(sub);
    /// flushed.await;
    /// # }
    /// ```
    pub fn ack_flushed(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        match &self.acker {
            Some(a) => Box::pin(a.batcher().ended()),
            None => Box::pin(std::future::ready(())),
        }
    }

    /// The reconnection delay the broker asked for (`retry:`), if it sent one.
    ///
    /// ```no_run
    /// # fn demo(sub: &bus_client::Subscription) {
    /// if let Some(delay) = sub.retry() {
    ///     println!("the broker asks for {delay:?} between reconnections");
    /// }
    /// # }
    /// ```
    pub fn retry(&self) -> Option<Duration> {
        self.parser.retry()
    }

    /// Feeds bytes and queues what they complete.
    fn take_bytes(&mut self, chunk: &Bytes) {
        self.parser.feed(chunk);
        loop {
            match self.parser.next_event() {
                Ok(Some(ev)) => {
                    if let Some(item) = self.decode(ev) {
                        let failed = item.is_err();
                        self.ready.push_back(item);
                        if failed {
                            self.finish();
                            return;
                        }
                    }
                    if self.done {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.ready.push_back(Err(Error::with_source(
                        ErrorKind::Protocol,
                        "the broker's event stream is unreadable",
                        e,
                    )));
                    self.finish();
                    return;
                }
            }
        }
    }

    /// One SSE event to an item; `None` for events that yield nothing.
    fn decode(&mut self, ev: SseEvent) -> Option<Result<StreamItem, Error>> {
        let bad = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| {
            Err(Error::with_source(
                ErrorKind::Protocol,
                format!("the broker sent a bad {what}"),
                e,
            ))
        };
        match ev.event.as_str() {
            // A plain stream that took its `limit` ended (see below): later events in the
            // same chunk are not yielded.
            "message" if self.done => None,
            "message" => match Message::from_json(&ev.data) {
                Ok(m) => {
                    if let Some(id) = ev.id {
                        self.cursor = Some(id);
                    }
                    let m = match &self.acker {
                        Some(a) => m.with_acker(a.clone()),
                        None => m,
                    };
                    let mut took_limit = false;
                    if let Some(r) = self.resume.as_mut() {
                        r.yielded += 1;
                        // The broker keeps a member's `limit`; a plain stream is not sent
                        // one (it is undocumented there), so the subscription keeps it.
                        took_limit = !r.options.attaches_consumer()
                            && r.options.limit_value().is_some_and(|l| r.yielded >= l);
                    }
                    if took_limit {
                        self.finish();
                    }
                    Some(Ok(StreamItem::Event(m)))
                }
                Err(e) => Some(bad("event", Box::new(e))),
            },
            "subscribed" => match serde_json::from_str::<Subscribed>(&ev.data) {
                Ok(s) => {
                    if let (Some(AckMode::Manual), Some(name), Some(client)) =
                        (s.ack, &s.consumer, &self.client)
                    {
                        let same = self.acker.as_ref().is_some_and(|a| a.consumer() == name);
                        if !same {
                            self.acker = Some(Acker::new(client.clone(), Arc::from(name.as_str())));
                        }
                    }
                    self.subscribed = Some(s.clone());
                    let again = self
                        .resume
                        .as_mut()
                        .is_some_and(|r| std::mem::take(&mut r.reconnected));
                    if again {
                        None
                    } else {
                        Some(Ok(StreamItem::Subscribed(s)))
                    }
                }
                Err(e) => Some(bad("subscription confirmation", Box::new(e))),
            },
            "gap" => match serde_json::from_str::<Gap>(&ev.data) {
                Ok(g) => Some(Ok(StreamItem::Gap(g))),
                Err(e) => Some(bad("gap notice", Box::new(e))),
            },
            "error" => {
                let e = match serde_json::from_str::<bus_proto::error::ErrorDetail>(&ev.data) {
                    Ok(e) => Error::stream(e.code, e.message),
                    Err(_) => Error::stream("unknown".to_owned(), ev.data),
                };
                Some(Err(e))
            }
            "shutdown" => {
                self.finish();
                None
            }
            _ => None, // event types of later protocol versions
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.body = None; // closes the connection
    }
}

impl Stream for Subscription {
    type Item = Result<StreamItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(pending) = this.resume.as_mut().and_then(|r| r.pending.as_mut()) {
                let pending = pending.get_mut().unwrap_or_else(|e| e.into_inner());
                let result = match pending.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                if let Some(r) = this.resume.as_mut() {
                    r.pending = None;
                }
                match result {
                    Ok(body) => {
                        if let Some(r) = this.resume.as_mut() {
                            r.attempts = 0;
                        }
                        this.body = Some(BodyDataStream::new(body));
                        this.parser = SseParser::new(this.parser.max_event_bytes());
                    }
                    Err(e) => {
                        if let Some(e) = this.reconnect_or(e) {
                            this.finish();
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                continue;
            }
            let Some(body) = this.body.as_mut() else {
                return Poll::Ready(None);
            };
            let broken = match Pin::new(body).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.take_bytes(&chunk);
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    Error::with_source(ErrorKind::Io, "the event stream broke", e)
                }
                Poll::Ready(None) => Error::new(
                    ErrorKind::Io,
                    "the broker closed the event stream without a shutdown notice",
                ),
            };
            if let Some(e) = this.reconnect_or(broken) {
                this.finish();
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detached() -> Subscription {
        Subscription {
            body: None,
            parser: SseParser::default(),
            ready: VecDeque::new(),
            done: false,
            cursor: None,
            client: None,
            subscribed: None,
            acker: None,
            resume: None,
        }
    }

    const EVENT: &str = r#"{"id":"user-1-9f3c2a1b","subject":"user.created","namespace":"user","sequence":1,"time":"2026-11-23T13:22:11.123456789Z","headers":{},"payload":"hi"}"#;

    #[test]
    fn decodes_a_stream_and_ends_at_shutdown() {
        let mut s = detached();
        let text = format!(
            "event: subscribed\ndata: {{\"subscription\":\"s-3\",\"pattern\":\"user.>\",\"from\":\"oldest\"}}\n\n\
             : keep-alive\n\n\
             retry: 1000\nid: user-1-9f3c2a1b\ndata: {EVENT}\n\n\
             event: gap\ndata: {{\"namespace\":\"user\",\"missed_from\":2,\"resume_at\":5,\"reason\":\"damaged\"}}\n\n\
             event: future\ndata: {{}}\n\n\
             event: shutdown\ndata: {{}}\n\n\
             data: {EVENT}\n\n"
        );
        s.take_bytes(&Bytes::from(text));
        let items: Vec<_> = s.ready.drain(..).map(Result::unwrap).collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], StreamItem::Subscribed(x) if x.subscription == "s-3"));
        assert!(
            matches!(&items[1], StreamItem::Event(m) if &m.payload[..] == b"hi" && m.json() == EVENT)
        );
        assert!(
            matches!(&items[2], StreamItem::Gap(g) if g.missed_from == 2 && g.resume_at == 5
                && g.reason == crate::GapReason::Damaged)
        );
        assert!(s.done);
        assert_eq!(s.cursor(), Some("user-1-9f3c2a1b"));
        assert_eq!(s.retry(), Some(Duration::from_millis(1000)));
        assert_eq!(s.consumer(), None);
        assert_eq!(s.subscribed().unwrap().ack, None);
    }

    #[test]
    fn a_consumer_stream_names_its_consumer_and_settings() {
        let mut s = detached();
        let event = EVENT.replace(r#""payload""#, r#""delivery_count":2,"payload""#);
        let text = format!(
            "event: subscribed\ndata: {{\"ack\":\"manual\",\"ack_wait\":\"30000ms\",\"backoff\":[\"1000ms\"],\"consumer\":\"orders\",\"from\":\"oldest\",\"kind\":\"durable\",\"max_deliver\":null,\"max_in_flight\":2,\"pattern\":\"user.>\",\"subscription\":\"s-1\"}}\n\n\
             id: user-1-9f3c2a1b\ndata: {event}\n\n"
        );
        s.take_bytes(&Bytes::from(text));
        assert_eq!(s.consumer(), Some("orders"));
        let sub = s.subscribed().unwrap();
        assert_eq!(sub.kind, Some(ConsumerKind::Durable));
        assert_eq!(sub.ack, Some(AckMode::Manual));
        assert_eq!(sub.ack_wait, Some(Duration::from_secs(30)));
        assert_eq!(sub.backoff, [Duration::from_secs(1)]);
        assert_eq!((sub.max_deliver, sub.max_in_flight), (None, Some(2)));
        let items: Vec<_> = s.ready.drain(..).map(Result::unwrap).collect();
        let StreamItem::Event(m) = &items[1] else {
            panic!("not an event: {:?}", items[1])
        };
        assert_eq!(m.delivery_count, Some(2));
    }

    #[test]
    fn an_error_event_is_the_last_item() {
        let mut s = detached();
        s.take_bytes(&Bytes::from_static(
            b"event: error\ndata: {\"code\":\"corrupt\",\"message\":\"bad crc at 00000000000000000001.log offset 40\"}\n\ndata: x\n\n",
        ));
        assert_eq!(s.ready.len(), 1);
        let e = s.ready.pop_front().unwrap().unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Stream {
                code: "corrupt".into()
            }
        );
        assert!(e.to_string().contains("bad crc"));
        assert!(s.done);
    }

    #[test]
    fn a_bad_event_fails_the_stream() {
        let mut s = detached();
        s.take_bytes(&Bytes::from_static(b"data: {\"id\":1}\n\n"));
        let e = s.ready.pop_front().unwrap().unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Protocol);
        assert!(s.done);
    }
}
