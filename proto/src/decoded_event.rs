//! [`DecodedEvent`]: the event JSON read back, the inverse of the writer in
//! [`crate::event`]. The client decodes every delivered event with it; a round-trip test
//! keeps writer and reader in step.
//!
//! The payload comes back as the bytes that were published: an embedded JSON payload is its
//! JSON text exactly as sent, a string payload its UTF-8 bytes, a base64 payload the decoded
//! bytes. Unknown fields are ignored (a later broker may add some).

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::units::parse_rfc3339;

/// One event, decoded from its JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    /// The event id.
    pub id: String,
    /// The subject it was published to.
    pub subject: String,
    /// Its namespace.
    pub namespace: String,
    /// Its sequence in the namespace.
    pub sequence: u64,
    /// When it was stored, as the broker wrote it (RFC 3339).
    pub time: String,
    /// The same time, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Its headers.
    pub headers: BTreeMap<String, String>,
    /// Where replies go, for a request.
    pub reply_to: Option<String>,
    /// Its dedup id.
    pub msg_id: Option<String>,
    /// Its content type.
    pub content_type: Option<String>,
    /// The payload bytes as published.
    pub payload: Bytes,
    /// Deliveries to this consumer, this one included (manual-ack consumers only).
    pub delivery_count: Option<u32>,
}

/// Why an event JSON could not be decoded.
///
/// ```
/// use bus_proto::decoded_event::{DecodeError, DecodedEvent};
/// assert!(matches!(DecodedEvent::decode("{}"), Err(DecodeError::Json(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or a field missing or of the wrong type.
    #[error("invalid event JSON")]
    Json(#[source] serde_json::Error),
    /// The time is not RFC 3339.
    #[error("invalid event time {0:?}")]
    Time(String),
    /// The payload does not match its encoding.
    #[error("{0}")]
    Payload(&'static str),
    /// An encoding this crate does not know.
    #[error("unknown payload encoding {0:?}")]
    Encoding(String),
}

/// The event JSON's fields, as they arrive.
#[derive(Deserialize)]
struct WireEvent {
    /// `id`.
    id: String,
    /// `subject`.
    subject: String,
    /// `namespace`.
    namespace: String,
    /// `sequence`.
    sequence: u64,
    /// `time`, RFC 3339.
    time: String,
    /// `headers`, absent when there are none.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `reply_to`, for requests.
    #[serde(default)]
    reply_to: Option<String>,
    /// `msg_id`, the dedup id.
    #[serde(default)]
    msg_id: Option<String>,
    /// `content_type`.
    #[serde(default)]
    content_type: Option<String>,
    /// `Some` also for a JSON `null` payload, which is the four bytes `null`.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Box<RawValue>>,
    /// `encoding`: `base64` for a binary payload.
    #[serde(default)]
    encoding: Option<String>,
    /// `delivery_count`, from manual-ack consumers.
    #[serde(default)]
    delivery_count: Option<u32>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl DecodedEvent {
    /// Decodes one event JSON.
    ///
    /// ```
    /// use bus_proto::DecodedEvent;
    /// let e = DecodedEvent::decode(
    ///     r#"{"id":"user-1-9f3c2a1b","subject":"user.created","namespace":"user","sequence":1,"time":"2026-11-23T13:22:11.123456789Z","payload":"ada"}"#,
    /// )
    /// .unwrap();
    /// assert_eq!(&e.payload[..], b"ada");
    /// ```
    pub fn decode(json: &str) -> Result<DecodedEvent, DecodeError> {
        let w: WireEvent = serde_json::from_str(json).map_err(DecodeError::Json)?;
        let time_ns = parse_rfc3339(&w.time).ok_or_else(|| DecodeError::Time(w.time.clone()))?;
        let payload = match (&w.payload, w.encoding.as_deref()) {
            (None, _) => Bytes::new(),
            (Some(p), Some("base64")) => {
                let s: String = serde_json::from_str(p.get())
                    .map_err(|_| DecodeError::Payload("a base64 payload must be a string"))?;
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|_| DecodeError::Payload("invalid base64 payload"))?,
                )
            }
            (Some(_), Some(other)) => return Err(DecodeError::Encoding(other.to_owned())),
            (Some(p), None) if p.get().starts_with('"') => {
                let s: String = serde_json::from_str(p.get()).map_err(DecodeError::Json)?;
                Bytes::from(s)
            }
            (Some(p), None) => Bytes::copy_from_slice(p.get().as_bytes()),
        };
        Ok(DecodedEvent {
            id: w.id,
            subject: w.subject,
            namespace: w.namespace,
            sequence: w.sequence,
            time: w.time,
            time_ns,
            headers: w.headers,
            reply_to: w.reply_to,
            msg_id: w.msg_id,
            content_type: w.content_type,
            payload,
            delivery_count: w.delivery_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventView;

    /// What the writer writes, the reader reads back: every payload form, every field.
    #[test]
    fn what_the_writer_writes_decodes_to_the_same_event() {
        let headers = vec![
            ("trace".to_owned(), "abc".to_owned()),
            ("quote".to_owned(), "say \"hi\"\n".to_owned()),
        ];
        let payloads: [(&[u8], Option<&str>); 5] = [
            (
                br#"{"name": "ada",
                 "n": [1, 2]}"#,
                Some("application/json"),
            ),
            (b"plain text \xc3\xa9", Some("text/plain")),
            (b"\x00\xff\xfebinary", None),
            (b"", None),
            (b"not json {", Some("application/json")),
        ];
        for (payload, content_type) in payloads {
            let view = EventView {
                id: "user-7-0000abcd",
                subject: "user.created",
                namespace: "user",
                sequence: 7,
                time_ns: 1_764_000_000_123_456_789,
                headers: &headers,
                reply_to: Some("_inbox.0123456789abcdef0123456789abcdef"),
                msg_id: Some("m-1"),
                content_type,
                payload,
                delivery_count: Some(2),
            };
            let e = DecodedEvent::decode(&view.to_json()).expect("decodes");
            assert_eq!(
                (
                    e.id.as_str(),
                    e.subject.as_str(),
                    e.namespace.as_str(),
                    e.sequence
                ),
                ("user-7-0000abcd", "user.created", "user", 7)
            );
            assert_eq!(e.time_ns, 1_764_000_000_123_456_789);
            assert_eq!(e.headers.len(), 2);
            assert_eq!(e.headers["quote"], "say \"hi\"\n");
            assert_eq!(e.reply_to.as_deref(), view.reply_to);
            assert_eq!(e.msg_id.as_deref(), Some("m-1"));
            assert_eq!(e.content_type.as_deref(), content_type);
            assert_eq!(e.delivery_count, Some(2));
            if content_type == Some("application/json") && payload.starts_with(b"{\"") {
                // Embedded JSON comes back as JSON text, its line breaks turned into spaces.
                let back: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
                assert_eq!(back, serde_json::json!({"name": "ada", "n": [1, 2]}));
            } else {
                assert_eq!(&e.payload[..], payload, "{content_type:?}");
            }
        }
    }

    #[test]
    fn bad_payload_encodings_are_named() {
        let base = r#"{"id":"a-1-00000000","subject":"a.b","namespace":"a","sequence":1,"time":"2026-11-23T13:22:11Z""#;
        let with = |rest: &str| DecodedEvent::decode(&format!("{base}{rest}}}"));
        assert!(matches!(
            with(r#","payload":"@@","encoding":"base64""#),
            Err(DecodeError::Payload(_))
        ));
        assert!(matches!(
            with(r#","payload":1,"encoding":"base64""#),
            Err(DecodeError::Payload(_))
        ));
        assert!(
            matches!(with(r#","payload":"x","encoding":"zstd""#), Err(DecodeError::Encoding(e)) if e == "zstd")
        );
        let late = format!("{}}}", base.replace("2026-11-23T13:22:11Z", "yesterday"));
        assert!(
            matches!(DecodedEvent::decode(&late), Err(DecodeError::Time(t)) if t == "yesterday")
        );
        let null = with(r#","payload":null"#).unwrap();
        assert_eq!(&null.payload[..], b"null");
    }
}
