//! The event JSON: the one form an event takes on the wire (SSE `data:`, pull pages, CLI
//! output). See `proto-docs/http-api.md`.
//!
//! The payload form follows the Content-Type: JSON (`application/json`, `*+json`) that parses
//! is embedded verbatim (line breaks, which valid JSON only has as whitespace, become spaces
//! so that the event stays on one line); else valid UTF-8 is a string; else standard padded
//! base64 with `"encoding": "base64"`.

use base64::Engine;
use serde::ser::{SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::storage::Event;
use crate::units::format_rfc3339;

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

/// Serialises headers as an object.
struct Headers<'a>(&'a [(String, String)]);

impl serde::Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct EventJson<'a> {
    id: &'a str,
    subject: &'a str,
    namespace: &'a str,
    sequence: u64,
    time: String,
    headers: Headers<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_count: Option<u32>,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

fn payload_form(e: &Event) -> Payload<'_> {
    let json_ct = e.content_type.as_deref().is_some_and(is_json_content_type);
    if json_ct && let Ok(text) = std::str::from_utf8(&e.payload) {
        let one_line = if text.contains(['\n', '\r']) {
            text.replace(['\n', '\r'], " ")
        } else {
            text.to_owned()
        };
        if let Ok(raw) = RawValue::from_string(one_line) {
            return Payload::Json(raw);
        }
    }
    match std::str::from_utf8(&e.payload) {
        Ok(t) => Payload::Text(t),
        Err(_) => Payload::Base64(base64::engine::general_purpose::STANDARD.encode(&e.payload)),
    }
}

/// The event JSON of `e` in `namespace`, on one line. `delivery_count` is set for
/// manual-ack deliveries.
pub fn to_json(e: &Event, namespace: &str, delivery_count: Option<u32>) -> String {
    let (payload, encoding) = match payload_form(e) {
        Payload::Json(raw) => (raw, None),
        Payload::Text(t) => (to_raw(&serde_json::to_string(t).unwrap_or_default()), None),
        Payload::Base64(b) => (to_raw(&format!("\"{b}\"")), Some("base64")),
    };
    let j = EventJson {
        id: &e.id,
        subject: &e.subject,
        namespace,
        sequence: e.sequence,
        time: format_rfc3339(e.time_ns),
        headers: Headers(&e.headers),
        reply_to: e.reply_to.as_deref(),
        content_type: e.content_type.as_deref(),
        delivery_count,
        payload: &payload,
        encoding,
    };
    // Serialising these types cannot fail: every field is a plain string, number or map.
    serde_json::to_string(&j).unwrap_or_default()
}

fn to_raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
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
    fn every_field_is_present() {
        let mut e = ev(Some("text/plain"), b"hi");
        e.reply_to = Some("_inbox.x".into());
        let j = parse(&to_json(&e, "user", Some(2)));
        assert_eq!(j["id"], "user-3-00000001");
        assert_eq!(j["subject"], "user.created");
        assert_eq!(j["namespace"], "user");
        assert_eq!(j["sequence"], 3);
        assert_eq!(j["time"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(j["headers"], serde_json::json!({"trace": "a\"b"}));
        assert_eq!(j["reply_to"], "_inbox.x");
        assert_eq!(j["content_type"], "text/plain");
        assert_eq!(j["delivery_count"], 2);
        assert_eq!(j["payload"], "hi");
    }
}
