//! The values the broker sends: events ([`Message`]) and pull pages ([`Page`]). Publish
//! receipts ([`Receipt`]), namespace figures ([`NamespaceInfo`]), retention gaps ([`Gap`])
//! and where reading starts ([`Start`]) are the wire types of `bus-proto`, re-exported.
//!
//! An event delivered by a manual-ack consumer carries its delivery count and knows its
//! consumer, so it can be acknowledged itself ([`Message::ack`], [`Message::nack`], ...).
//!
//! Events are decoded from the one event JSON form of the protocol (`proto-docs/http-api.md`,
//! "The event JSON"). The payload comes back as the bytes that were published: a JSON payload
//! is the JSON text exactly as the broker sent it, a string payload its UTF-8 bytes, a base64
//! payload the decoded bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;

use bus_proto::DecodedEvent;

pub use bus_proto::{Gap, GapReason, NamespaceInfo, Receipt, Start, StartParseError};

use crate::ack::{AckOp, AckStatus, Acker};
use crate::error::{Error, ErrorKind};

/// An event as delivered by the broker.
///
/// ```no_run
/// # fn demo(m: &bus_client::Message) {
/// println!("#{} {} at {} ({} bytes)", m.sequence, m.subject, m.time, m.payload.len());
/// if let Some(n) = m.delivery_count.filter(|&n| n > 1) {
///     println!("delivered {n} times");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event's unique id (`user-42-9f3c2a1b`); also a start position for reading.
    pub id: String,
    /// The subject it was published on.
    pub subject: String,
    /// The subject's first token.
    pub namespace: String,
    /// Its sequence number in the namespace: from 1, strictly increasing, no gaps.
    pub sequence: u64,
    /// Creation time as the broker wrote it (RFC 3339 UTC with nanoseconds).
    pub time: String,
    /// Creation time in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Event headers, names in lowercase.
    pub headers: BTreeMap<String, String>,
    /// The reply subject, when the publisher gave one.
    pub reply_to: Option<String>,
    /// The publisher's dedup id, when it gave one (the client gives every publish one).
    pub msg_id: Option<String>,
    /// The Content-Type the publisher gave, if any.
    pub content_type: Option<String>,
    /// The payload bytes.
    pub payload: Bytes,
    /// Deliveries of this event to this consumer, 1 on the first: present only for
    /// deliveries of a manual-ack consumer.
    pub delivery_count: Option<u32>,
    /// The event JSON exactly as received, so it can be passed on without re-encoding.
    json: Box<str>,
    /// Where acknowledgements go: set for deliveries of a manual-ack consumer.
    acker: Option<Acker>,
}

impl Message {
    /// Decodes one event from its JSON form.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), bus_client::DecodeError> {
    /// let m = bus_client::Message::from_json(
    ///     r#"{"id":"user-1-9f3c2a1b","subject":"user.created","namespace":"user","sequence":1,"time":"2026-11-23T13:22:11.123456789Z","payload":"ada"}"#,
    /// )?;
    /// assert_eq!(m.text(), Some("ada"));
    /// # Ok(()) }
    /// ```
    pub fn from_json(json: &str) -> Result<Message, DecodeError> {
        let raw: Box<RawValue> = serde_json::from_str(json).map_err(DecodeError::Json)?;
        Message::from_raw(raw)
    }

    /// Decodes one event from an already delimited JSON value, keeping it as the raw form.
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Result<Message, DecodeError> {
        let e = DecodedEvent::decode(raw.get())?;
        Ok(Message {
            id: e.id,
            subject: e.subject,
            namespace: e.namespace,
            sequence: e.sequence,
            time: e.time,
            time_ns: e.time_ns,
            headers: e.headers,
            reply_to: e.reply_to,
            msg_id: e.msg_id,
            content_type: e.content_type,
            payload: e.payload,
            delivery_count: e.delivery_count,
            json: raw.into(),
            acker: None,
        })
    }

    /// Attaches the consumer the event was delivered by.
    pub(crate) fn with_acker(mut self, acker: Acker) -> Message {
        self.acker = Some(acker);
        self
    }

    /// The event JSON exactly as the broker sent it (one line; with `delivery_count` when a
    /// manual-ack consumer delivered it). For the payload decoded from JSON, see
    /// [`Message::payload_json`].
    ///
    /// ```no_run
    /// # fn demo(m: &bus_client::Message) {
    /// // Pass the event on untouched, one JSON line per event.
    /// println!("{}", m.json());
    /// # }
    /// ```
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The payload as text, when it is UTF-8.
    ///
    /// ```no_run
    /// # fn demo(m: &bus_client::Message) {
    /// match m.text() {
    ///     Some(text) => println!("{text}"),
    ///     None => println!("({} bytes of binary)", m.payload.len()),
    /// }
    /// # }
    /// ```
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The payload decoded from JSON into `T`.
    ///
    /// ```no_run
    /// # fn demo(m: bus_client::Message) -> Result<(), serde_json::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Signup { name: String }
    /// let signup: Signup = m.payload_json()?;
    /// println!("welcome, {}", signup.name);
    /// # Ok(()) }
    /// ```
    pub fn payload_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }

    /// The consumer that delivered the event, when it is a manual-ack consumer's delivery
    /// (one that can be acknowledged).
    ///
    /// ```no_run
    /// # fn demo(m: &bus_client::Message) {
    /// if let Some(consumer) = m.consumer() {
    ///     println!("delivered by consumer {consumer}");
    /// }
    /// # }
    /// ```
    pub fn consumer(&self) -> Option<&str> {
        self.acker.as_ref().map(Acker::consumer)
    }

    /// Acks the delivery: done, never redelivered. The ack is queued and sent in the
    /// background with others of the same subscription, many per request, so a consumer
    /// loop does not wait one round trip per event: this resolves once the ack is queued
    /// (waiting only while 10,000 acks are queued already). Dropping the subscription and
    /// its messages sends what is queued while the runtime runs (a spawned task does the
    /// sending); [`Subscription::flush_acks`](crate::Subscription::flush_acks) waits for it, and
    /// a program should await it before returning from `main`. An ack lost with a broken connection means a redelivery, never a loss:
    /// use [`Message::double_ack`] to know the broker recorded it.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] (nothing sent) when the event was not delivered
    /// by a manual-ack consumer.
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// println!("{}", String::from_utf8_lossy(&m.payload));
    /// m.ack().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack(&self) -> Result<(), Error> {
        self.acker("ack")?.batcher().ack(&self.id).await
    }

    /// Acks the delivery and resolves once the broker recorded it (for a durable consumer:
    /// durably), with its answer. The ack still travels in a batch with others queued at
    /// the same time. Acking again, or acking an event that was terminated or dead-lettered,
    /// succeeds with [`AckStatus::AlreadyAcked`].
    ///
    /// Fails with [`ErrorKind::InvalidInput`] (nothing sent) when the event was not delivered
    /// by a manual-ack consumer, and with [`ErrorKind::Api`] when the broker refuses
    /// (`unknown_consumer` when the consumer was deleted, for example).
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// let status = m.double_ack().await?;
    /// println!("{}", status.as_str());
    /// # Ok(()) }
    /// ```
    pub async fn double_ack(&self) -> Result<AckStatus, Error> {
        self.acker("ack")?.batcher().ack_and_wait(&self.id).await
    }

    /// The acker, or the error of an event not delivered by a manual-ack consumer.
    fn acker(&self, op: &str) -> Result<&Acker, Error> {
        self.acker.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "cannot {op} event {}: it was not delivered by a manual-ack consumer",
                    self.id
                ),
            )
        })
    }

    /// Nacks the delivery: it is redelivered now (to this or another member), its delivery
    /// count going up.
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// // Not for this member: let another one have it.
    /// m.nack().await?;
    /// # Ok(()) }
    /// ```
    pub async fn nack(&self) -> Result<AckStatus, Error> {
        self.acknowledge(AckOp::Nack(None)).await
    }

    /// Nacks the delivery, to be redelivered after `delay` (at most 24 h, in whole
    /// milliseconds rounded up): the way to back off from an event that cannot be handled
    /// yet.
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// use std::time::Duration;
    /// m.nack_with_delay(Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn nack_with_delay(&self, delay: Duration) -> Result<AckStatus, Error> {
        self.acknowledge(AckOp::Nack(Some(delay))).await
    }

    /// Says the work goes on: the ack wait restarts. Fails with `409 not_held` when the ack
    /// wait had already run out (the event awaits redelivery).
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// // A long job: keep the delivery while working on it.
    /// m.in_progress().await?;
    /// # Ok(()) }
    /// ```
    pub async fn in_progress(&self) -> Result<AckStatus, Error> {
        self.acknowledge(AckOp::InProgress).await
    }

    /// Terminates the delivery: never redelivered, published to the dead-letter subject
    /// (`_bus_.dead.<subject>`).
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// if m.delivery_count.unwrap_or(1) >= 5 {
    ///     m.term().await?; // give up on it
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn term(&self) -> Result<AckStatus, Error> {
        self.acknowledge(AckOp::Term).await
    }

    /// Does `op` to this delivery, in a request of its own, and resolves with the broker's
    /// answer.
    ///
    /// ```no_run
    /// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
    /// use bus_client::{AckOp, AckStatus};
    /// if m.acknowledge(AckOp::Ack).await? == AckStatus::AlreadyAcked {
    ///     println!("a redelivery of an event acked before");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acknowledge(&self, op: AckOp) -> Result<AckStatus, Error> {
        self.acker(op.as_str())?.send(&self.id, op).await
    }
}

/// Why an event JSON could not be decoded (the wire decoder's error, from `bus-proto`).
pub use bus_proto::DecodeError;

/// One page of `pull`.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
/// use std::time::Duration;
/// use bus_client::Start;
/// let page = client.pull("user.>", Start::Oldest, 100, Duration::ZERO).await?;
/// for g in &page.gaps {
///     eprintln!("missed {}..{} of {}", g.missed_from, g.resume_at, g.namespace);
/// }
/// println!("{} events; go on from {}", page.events.len(), page.cursor);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Page {
    /// The events, in order within each namespace.
    pub events: Vec<Message>,
    /// Pass as the next pull's `from` ([`Start::Cursor`]) to continue exactly after this page.
    pub cursor: String,
    /// Gaps met while reading the page: events deleted by retention, or lost to damage
    /// ([`Gap::reason`]).
    pub gaps: Vec<Gap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""id":"user-42-9f3c2a1b","subject":"user.created","namespace":"user","sequence":42,"time":"2026-11-23T13:22:11.123456789Z""#;

    fn event(rest: &str) -> String {
        format!("{{{BASE}{rest}}}")
    }

    #[test]
    fn decodes_a_json_payload_verbatim() {
        let json = event(
            r#","headers":{"trace":"abc"},"content_type":"application/json","payload":{"name":"ada","n":[1,2.50]}"#,
        );
        let m = Message::from_json(&json).unwrap();
        assert_eq!(m.id, "user-42-9f3c2a1b");
        assert_eq!(m.subject, "user.created");
        assert_eq!(m.namespace, "user");
        assert_eq!(m.sequence, 42);
        assert_eq!(m.time, "2026-11-23T13:22:11.123456789Z");
        assert_eq!(
            m.time_ns,
            bus_proto::units::parse_rfc3339("2026-11-23T13:22:11.123456789Z").unwrap()
        );
        assert_eq!(m.headers["trace"], "abc");
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.reply_to, None);
        assert_eq!(&m.payload[..], br#"{"name":"ada","n":[1,2.50]}"#);
        assert_eq!(m.json(), json);
    }

    #[test]
    fn decodes_scalar_json_payloads() {
        for p in ["42", "true", "null", "[]", "-1.5e3"] {
            let m = Message::from_json(&event(&format!(r#","payload":{p}"#))).unwrap();
            assert_eq!(&m.payload[..], p.as_bytes());
        }
    }

    #[test]
    fn decodes_a_string_payload_to_its_utf8_bytes() {
        let json = event(r#","headers":{},"reply_to":"_inbox.x","payload":"h\u00e9llo \"q\"\n""#);
        let m = Message::from_json(&json).unwrap();
        assert_eq!(&m.payload[..], "héllo \"q\"\n".as_bytes());
        assert_eq!(m.reply_to.as_deref(), Some("_inbox.x"));
        assert!(m.headers.is_empty());
        assert_eq!(m.content_type, None);
    }

    #[test]
    fn decodes_a_base64_payload() {
        let json = event(r#","payload":"AP8Q","encoding":"base64""#);
        let m = Message::from_json(&json).unwrap();
        assert_eq!(&m.payload[..], &[0x00, 0xFF, 0x10]);
        let bad = event(r#","payload":"@@@","encoding":"base64""#);
        assert!(matches!(
            Message::from_json(&bad),
            Err(DecodeError::Payload(_))
        ));
        let bad = event(r#","payload":{"a":1},"encoding":"base64""#);
        assert!(matches!(
            Message::from_json(&bad),
            Err(DecodeError::Payload(_))
        ));
        let bad = event(r#","payload":"x","encoding":"rot13""#);
        assert!(matches!(
            Message::from_json(&bad),
            Err(DecodeError::Encoding(_))
        ));
    }

    #[test]
    fn empty_and_missing_payloads_are_empty() {
        let m = Message::from_json(&event(r#","payload":"""#)).unwrap();
        assert!(m.payload.is_empty());
        let m = Message::from_json(&event("")).unwrap();
        assert!(m.payload.is_empty());
    }

    #[test]
    fn refuses_broken_events() {
        assert!(Message::from_json("{").is_err());
        assert!(Message::from_json(r#"{"id":"x"}"#).is_err());
        let bad_time =
            r#"{"id":"a-1-0","subject":"a","namespace":"a","sequence":1,"time":"yesterday"}"#;
        assert!(matches!(
            Message::from_json(bad_time),
            Err(DecodeError::Time(_))
        ));
        // Unknown fields are tolerated, for later protocol additions.
        assert!(Message::from_json(&event(r#","attempt":2"#)).is_ok());
    }

    #[test]
    fn reads_the_delivery_count() {
        let m = Message::from_json(&event(r#","delivery_count":3,"payload":"x""#)).unwrap();
        assert_eq!(m.delivery_count, Some(3));
        assert_eq!(m.consumer(), None);
        let m = Message::from_json(&event("")).unwrap();
        assert_eq!(m.delivery_count, None);
    }

    #[tokio::test]
    async fn a_message_without_a_consumer_cannot_be_acked() {
        let m = Message::from_json(&event("")).unwrap();
        let e = m.ack().await.unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "cannot ack event user-42-9f3c2a1b: it was not delivered by a manual-ack consumer"
        );
        let e = m.nack_with_delay(Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().starts_with("cannot nack "));
    }
}
