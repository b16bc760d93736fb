//! The event JSON: the one form an event takes on the wire (SSE `data:`, pull pages, CLI
//! output). See `proto-docs/http-api.md`.
//!
//! The payload form follows the Content-Type: JSON (`application/json`, `*+json`) that parses
//! is embedded verbatim (line breaks, which valid JSON only has as whitespace, become spaces
//! so that the event stays on one line); else valid UTF-8 is a string; else standard padded
//! base64 with `"encoding": "base64"`.

use base64::Engine;
use serde_json::value::RawValue;

use crate::storage::Event;
use crate::units::write_rfc3339;

/// Whether a content type says JSON.
pub fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

enum Payload<'a> {
    Json(Box<RawValue>),
    Text(&'a str),
    Base64(String),
}

/// Appends `s` as a JSON string (RFC 8259 escapes; control characters as `\u00XX`).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    if !s.bytes().any(needs) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

fn payload_form<'a>(payload: &'a [u8], content_type: Option<&str>) -> Payload<'a> {
    let json_ct = content_type.is_some_and(is_json_content_type);
    if json_ct && let Ok(text) = std::str::from_utf8(payload) {
        let one_line = if text.contains(['\n', '\r']) {
            text.replace(['\n', '\r'], " ")
        } else {
            text.to_owned()
        };
        if let Ok(raw) = RawValue::from_string(one_line) {
            return Payload::Json(raw);
        }
    }
    match std::str::from_utf8(payload) {
        Ok(t) => Payload::Text(t),
        Err(_) => Payload::Base64(base64::engine::general_purpose::STANDARD.encode(payload)),
    }
}

/// Appends `,"headers":{...}`: each (name, value) pair as a JSON member, in the given order.
pub fn push_headers<'a>(out: &mut String, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push_str(",\"headers\":{");
    for (i, (k, v)) in headers.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_json_str(out, v);
    }
    out.push('}');
}

/// Appends `,"payload":<payload>` in the event JSON's form for `content_type` (embedded
/// JSON, a string, or base64 followed by `,"encoding":"base64"`).
pub fn push_payload(out: &mut String, payload: &[u8], content_type: Option<&str>) {
    out.push_str(",\"payload\":");
    match payload_form(payload, content_type) {
        Payload::Json(raw) => out.push_str(raw.get()),
        Payload::Text(t) => push_json_str(out, t),
        Payload::Base64(b) => {
            out.push('"');
            out.push_str(&b);
            out.push_str("\",\"encoding\":\"base64");
            out.push('"');
        }
    }
}

/// The event JSON of `e` in `namespace`, on one line. `delivery_count` is set for
/// manual-ack deliveries.
///
/// Written field by field into one buffer: this runs once per event sent to a subscriber.
pub fn to_json(e: &Event, namespace: &str, delivery_count: Option<u32>) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(160 + e.id.len() + 2 * e.subject.len() + e.payload.len());
    out.push_str("{\"id\":");
    push_json_str(&mut out, &e.id);
    out.push_str(",\"subject\":");
    push_json_str(&mut out, &e.subject);
    out.push_str(",\"namespace\":");
    push_json_str(&mut out, namespace);
    // Writing into a String cannot fail.
    let _ = write!(out, ",\"sequence\":{},\"time\":\"", e.sequence);
    write_rfc3339(&mut out, e.time_ns);
    out.push('"');
    push_headers(
        &mut out,
        e.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if let Some(r) = &e.reply_to {
        out.push_str(",\"reply_to\":");
        push_json_str(&mut out, r);
    }
    if let Some(m) = &e.msg_id {
        out.push_str(",\"msg_id\":");
        push_json_str(&mut out, m);
    }
    if let Some(ct) = &e.content_type {
        out.push_str(",\"content_type\":");
        push_json_str(&mut out, ct);
    }
    if let Some(n) = delivery_count {
        let _ = write!(out, ",\"delivery_count\":{n}");
    }
    push_payload(&mut out, &e.payload, e.content_type.as_deref());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(ct: Option<&str>, payload: &[u8]) -> Event {
        Event {
            sequence: 3,
            id: "user-3-00000001".into(),
            subject: "user.created".into(),
            time_ns: 1_700_000_000_000_000_000,
            headers: vec![("trace".into(), "a\"b".into())],
            reply_to: None,
            msg_id: None,
            content_type: ct.map(str::to_owned),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn parse(s: &str) -> serde_json::Value {
        assert!(!s.contains('\n'), "event JSON spans lines: {s}");
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn payload_forms_follow_the_content_type() {
        let j = parse(&to_json(
            &ev(Some("application/json"), b"{\"a\":\n [1, 2]}"),
            "user",
            None,
        ));
        assert_eq!(j["payload"], serde_json::json!({"a": [1, 2]}));
        assert!(j.get("encoding").is_none());
        let j = parse(&to_json(
            &ev(Some("application/cloudevents+json; charset=utf-8"), b"7"),
            "user",
            None,
        ));
        assert_eq!(j["payload"], serde_json::json!(7));
        let j = parse(&to_json(
            &ev(Some("application/json"), b"{not json"),
            "user",
            None,
        ));
        assert_eq!(j["payload"], "{not json");
        let j = parse(&to_json(&ev(None, b"{\"a\":1}"), "user", None));
        assert_eq!(j["payload"], "{\"a\":1}");
        let j = parse(&to_json(
            &ev(Some("application/octet-stream"), &[0xff, 0, 1]),
            "user",
            None,
        ));
        assert_eq!(
            (j["payload"].as_str(), j["encoding"].as_str()),
            (Some("/wAB"), Some("base64"))
        );
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let tricky = "q\"b\\s\n\r\t\u{1}\u{1f}é😀";
        let mut out = String::new();
        push_json_str(&mut out, tricky);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, tricky);
        let mut e = ev(Some("text/plain"), tricky.as_bytes());
        e.headers = vec![(tricky.into(), tricky.into())];
        let j = parse(&to_json(&e, "user", None));
        assert_eq!(j["payload"], tricky);
        assert_eq!(j["headers"][tricky], tricky);
    }

    #[test]
    fn every_field_is_present() {
        let mut e = ev(Some("text/plain"), b"hi");
        e.reply_to = Some("_inbox.x".into());
        e.msg_id = Some("order-17".into());
        let j = parse(&to_json(&e, "user", Some(2)));
        assert_eq!(j["id"], "user-3-00000001");
        assert_eq!(j["subject"], "user.created");
        assert_eq!(j["namespace"], "user");
        assert_eq!(j["sequence"], 3);
        assert_eq!(j["time"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(j["headers"], serde_json::json!({"trace": "a\"b"}));
        assert_eq!(j["reply_to"], "_inbox.x");
        assert_eq!(j["msg_id"], "order-17");
        assert_eq!(j["content_type"], "text/plain");
        assert_eq!(j["delivery_count"], 2);
        assert_eq!(j["payload"], "hi");
    }
}
