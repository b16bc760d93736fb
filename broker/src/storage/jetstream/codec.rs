//! How an event is a NATS message: bus's fields as headers, the payload as the payload.
//!
//! | bus field      | NATS message                                                      |
//! |----------------|-------------------------------------------------------------------|
//! | subject        | the subject (its first token is the namespace)                    |
//! | sequence       | the stream sequence                                               |
//! | time_ns        | `Bus-Time` (decimal ns since the epoch, set by bus at publish)     |
//! | headers        | one NATS header per bus header, under its own (lowercase) name;   |
//! |                | `Bus-Headers` lists the names in order, repeats included          |
//! | reply_to       | `Bus-Reply-To`                                                    |
//! | msg_id         | `Bus-Msg-Id`; also `Nats-Msg-Id` on single publishes (dedup)       |
//! | content_type   | `Bus-Content-Type`                                                |
//! | payload        | the payload                                                       |
//!
//! Messages other NATS clients publish on a namespace's subjects are stored too, and read
//! as events: see [`decode`].
//!
//! NATS keeps headers in a map, so the order of different names is lost there:
//! `Bus-Headers` restores it. bus's header names are lowercase and the server's own are
//! capitalised (`Nats-*`), so the two never meet. A value with a CR or LF cannot be a
//! NATS header and is refused.

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use bytes::Bytes;

use crate::storage::{Event, NewEvent, StorageError};

/// The event's time.
pub const TIME: &str = "Bus-Time";
/// The bus header names, in order.
pub const HEADERS: &str = "Bus-Headers";
/// The reply subject.
pub const REPLY_TO: &str = "Bus-Reply-To";
/// The publisher's dedup id.
pub const MSG_ID: &str = "Bus-Msg-Id";
/// The payload's media type.
pub const CONTENT_TYPE: &str = "Bus-Content-Type";
/// JetStream's dedup header.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// Set by the server on a direct get: the stream sequence.
pub const NATS_SEQUENCE: &str = "Nats-Sequence";
/// Set by the server on a direct get: when the message was stored (RFC 3339).
pub const NATS_TIME_STAMP: &str = "Nats-Time-Stamp";
/// Set by the server on a direct get: the original subject.
pub const NATS_SUBJECT: &str = "Nats-Subject";

fn name(s: &str) -> Result<HeaderName, StorageError> {
    s.parse()
        .map_err(|_| StorageError::InvalidEvent(format!("header name {s:?} is not a NATS header")))
}

fn value(s: &str) -> Result<HeaderValue, StorageError> {
    s.parse().map_err(|_| {
        StorageError::InvalidEvent(format!(
            "header value {s:?} holds a CR or LF, which a NATS header cannot"
        ))
    })
}

/// The headers that carry `event` (without the dedup header, which the caller adds).
pub fn encode(event: &NewEvent, time_ns: u64) -> Result<HeaderMap, StorageError> {
    let mut h = HeaderMap::new();
    h.insert(name(TIME)?, value(&time_ns.to_string())?);
    if !event.headers.is_empty() {
        let mut order = String::new();
        for (i, (k, v)) in event.headers.iter().enumerate() {
            if i > 0 {
                order.push(',');
            }
            if k.contains(',') {
                return Err(StorageError::InvalidEvent(format!(
                    "header name {k:?} holds a comma"
                )));
            }
            order.push_str(k);
            h.append(name(k)?, value(v)?);
        }
        h.insert(name(HEADERS)?, value(&order)?);
    }
    if let Some(r) = &event.reply_to {
        h.insert(name(REPLY_TO)?, value(r)?);
    }
    if let Some(m) = &event.msg_id {
        h.insert(name(MSG_ID)?, value(m)?);
    }
    if let Some(c) = &event.content_type {
        h.insert(name(CONTENT_TYPE)?, value(c)?);
    }
    Ok(h)
}

/// Bytes the headers take on the wire (what NATS's payload limit counts besides the
/// payload): `NATS/1.0\r\n`, each `name: value\r\n`, the closing `\r\n`.
pub fn wire_len(h: &HeaderMap) -> usize {
    let mut n = 12;
    for (k, vs) in h.iter() {
        for v in vs {
            n += AsRef::<str>::as_ref(k).len() + 2 + v.as_str().len() + 2;
        }
    }
    n
}

/// The first value of `key` (a constant or a name read back: parsed, never trusted).
fn get<'a>(h: &'a HeaderMap, key: &str) -> Option<&'a str> {
    let key: HeaderName = key.parse().ok()?;
    h.get(key).map(|v| v.as_str())
}

/// The event a message fetched by direct get carries, with its id. A message bus did not
/// write (no `Bus-Time`: another NATS client published on the namespace's subjects) is an
/// event too, timed by the server, its headers in name order (lowercased); one without a
/// sequence, subject or readable time is an error.
pub fn decode(
    headers: &HeaderMap,
    payload: Bytes,
    id: impl FnOnce(u64) -> String,
) -> Result<Event, String> {
    let sequence = get(headers, NATS_SEQUENCE)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or("no Nats-Sequence header")?;
    let subject = get(headers, NATS_SUBJECT)
        .ok_or("no Nats-Subject header")?
        .to_owned();
    let stored_ns =
        get(headers, NATS_TIME_STAMP).and_then(|t| bus_proto::units::parse_rfc3339(t.trim()));
    decode_delivered(headers, sequence, subject, stored_ns, payload, id)
}

/// The event a message carries whose sequence, subject and storage time the caller read
/// elsewhere (a consumer's delivery: from its subject and ack reply subject).
pub fn decode_delivered(
    headers: &HeaderMap,
    sequence: u64,
    subject: String,
    stored_ns: Option<u64>,
    payload: Bytes,
    id: impl FnOnce(u64) -> String,
) -> Result<Event, String> {
    let written_by_bus = get(headers, TIME).is_some();
    // A message another NATS client stored on the namespace's subjects: its time is the
    // server's, its headers (but the server's own) in name order.
    let time_ns = match get(headers, TIME) {
        Some(t) => t.trim().parse::<u64>().ok(),
        None => stored_ns,
    }
    .ok_or_else(|| format!("message {sequence} has no readable time"))?;
    let mut out = Vec::new();
    if !written_by_bus {
        let mut foreign: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| {
                let k: &str = (*k).as_ref();
                !k.starts_with("Nats-") && !k.starts_with("Bus-")
            })
            .flat_map(|(k, vs)| {
                let k: &str = k.as_ref();
                vs.iter()
                    .map(move |v| (k.to_ascii_lowercase(), v.as_str().to_owned()))
            })
            .collect();
        foreign.sort();
        out = foreign;
    }
    if let Some(order) = get(headers, HEADERS) {
        let mut taken: std::collections::HashMap<&str, usize> = Default::default();
        for k in order.split(',').filter(|k| !k.is_empty()) {
            let i = taken.entry(k).or_default();
            let v = k
                .parse::<HeaderName>()
                .ok()
                .and_then(|n| headers.get_all(n).nth(*i).map(|v| v.as_str().to_owned()))
                .unwrap_or_default();
            *i += 1;
            out.push((k.to_owned(), v));
        }
    }
    Ok(Event {
        sequence,
        id: id(sequence),
        subject,
        time_ns,
        headers: out,
        reply_to: get(headers, REPLY_TO).map(str::to_owned),
        msg_id: get(headers, MSG_ID).map(str::to_owned),
        content_type: get(headers, CONTENT_TYPE).map(str::to_owned),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_headers_in_order() {
        let e = NewEvent {
            subject: "user.created".into(),
            headers: vec![
                ("b".into(), "1".into()),
                ("a".into(), "2".into()),
                ("b".into(), "3".into()),
                ("empty".into(), "".into()),
            ],
            reply_to: Some("rpc.reply".into()),
            msg_id: Some("m-1".into()),
            content_type: Some("text/plain".into()),
            payload: Bytes::from_static(b"hi"),
        };
        let mut h = encode(&e, 42).unwrap();
        h.insert(NATS_SEQUENCE, "7");
        h.insert(NATS_SUBJECT, "user.created");
        let back = decode(&h, e.payload.clone(), |s| format!("id-{s}")).unwrap();
        assert_eq!(back.sequence, 7);
        assert_eq!(back.id, "id-7");
        assert_eq!(back.time_ns, 42);
        assert_eq!(back.headers, e.headers);
        assert_eq!(back.reply_to, e.reply_to);
        assert_eq!(back.msg_id, e.msg_id);
        assert_eq!(back.content_type, e.content_type);
        assert!(wire_len(&h) > 40);
    }

    #[test]
    fn refuses_what_a_nats_header_cannot_hold() {
        let mut e = NewEvent::new("a.b", "x");
        e.headers = vec![("k".into(), "line\nbreak".into())];
        assert!(matches!(encode(&e, 1), Err(StorageError::InvalidEvent(_))));
        e.headers = vec![("bad name".into(), "v".into())];
        assert!(encode(&e, 1).is_err());
    }
}
