//! The event JSON: the one form an event takes on the wire (SSE `data:`, pull pages, CLI
//! output), written from an [`EventView`] of its fields. See `proto-docs/http-api.md`, "The
//! event JSON".
//!
//! The payload form follows the Content-Type: JSON (`application/json`, `*+json`) that parses
//! is embedded verbatim (line breaks, which valid JSON only has as whitespace, become spaces
//! so that the event stays on one line); else valid UTF-8 is a string; else standard padded
//! base64 with `"encoding": "base64"`.
//!
//! Fields in order: `id`, `subject`, `namespace`, `sequence`, `time`, `headers`, then
//! `reply_to`, `msg_id`, `content_type`, `delivery_count` when set, then `payload` (and
//! `encoding`).

use base64::Engine as _;
use serde_json::value::RawValue;

use crate::json_out::JsonOut;
use crate::units::write_rfc3339;

/// Whether a content type says JSON: `application/json` or `*+json`, parameters and case
/// ignored.
///
/// ```
/// use bus_proto::event::is_json_content_type;
/// assert!(is_json_content_type("application/cloudevents+json; charset=utf-8"));
/// assert!(!is_json_content_type("text/plain"));
/// ```
pub fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// The fields of one event as the event JSON shows them, borrowed from wherever the event
/// is kept (the broker's storage event, a file being dumped).
///
/// ```
/// use bus_proto::event::EventView;
/// let headers = vec![("trace".to_owned(), "abc".to_owned())];
/// let json = EventView {
///     id: "user-1-00000000",
///     subject: "user.created",
///     namespace: "user",
///     sequence: 1,
///     time_ns: 0,
///     headers: &headers,
///     reply_to: None,
///     msg_id: None,
///     content_type: Some("application/json"),
///     payload: br#"{"name":"ada"}"#,
///     delivery_count: None,
/// }
/// .to_json();
/// assert!(json.ends_with(r#""payload":{"name":"ada"}}"#));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The event id.
    pub id: &'a str,
    /// The subject it was published on.
    pub subject: &'a str,
    /// The namespace (the subject's first token).
    pub namespace: &'a str,
    /// Its sequence in the namespace.
    pub sequence: u64,
    /// Creation time, nanoseconds since the Unix epoch (written as RFC 3339).
    pub time_ns: u64,
    /// Event headers, written in this order.
    pub headers: &'a [(String, String)],
    /// The reply subject, when the publisher gave one.
    pub reply_to: Option<&'a str>,
    /// The publisher's dedup id, when it gave one.
    pub msg_id: Option<&'a str>,
    /// The Content-Type the publisher gave; it chooses the payload's form.
    pub content_type: Option<&'a str>,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// Deliveries of this event to this consumer: set for manual-ack deliveries only.
    pub delivery_count: Option<u32>,
}

impl EventView<'_> {
    /// The event JSON, on one line.
    ///
    /// Written field by field into one buffer: this runs once per event sent to a
    /// subscriber.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(
            160 + self.id.len() + 2 * self.subject.len() + self.payload.len(),
        );
        self.write_json(&mut out);
        out
    }

    /// Appends the event JSON to `out`.
    pub fn write_json(&self, out: &mut String) {
        let _ = self.write_json_marked(out);
    }

    /// Appends the event JSON to `out` and returns the offset in `out` at which
    /// `,"delivery_count":N` belongs, so that one encoding of an event can be shared by
    /// deliveries whose counts differ (see [`delivery_count_field`]). When
    /// `delivery_count` is set it is written, and the offset is where it begins.
    pub fn write_json_marked(&self, out: &mut String) -> usize {
        out.push_str("{\"id\":");
        push_json_str(out, self.id);
        out.push_str(",\"subject\":");
        push_json_str(out, self.subject);
        out.push_str(",\"namespace\":");
        push_json_str(out, self.namespace);
        out.push_str(",\"sequence\":");
        crate::units::push_decimal(out, self.sequence);
        out.push_str(",\"time\":\"");
        write_rfc3339(out, self.time_ns);
        out.push('"');
        push_headers(
            out,
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if let Some(r) = self.reply_to {
            out.push_str(",\"reply_to\":");
            push_json_str(out, r);
        }
        if let Some(m) = self.msg_id {
            out.push_str(",\"msg_id\":");
            push_json_str(out, m);
        }
        if let Some(ct) = self.content_type {
            out.push_str(",\"content_type\":");
            push_json_str(out, ct);
        }
        let count_at = out.len();
        if let Some(n) = self.delivery_count {
            out.push_str(&delivery_count_field(n));
        }
        push_payload(out, self.payload, self.content_type);
        out.push('}');
        count_at
    }
}

/// The `delivery_count` member as it is spliced into an event JSON written without one, at
/// the offset [`EventView::write_json_marked`] returned.
pub fn delivery_count_field(n: u32) -> String {
    format!(",\"delivery_count\":{n}")
}

/// Appends `s` as a JSON string (RFC 8259 escapes; control characters as `\u00XX`).
///
/// ```
/// let mut out = String::new();
/// bus_proto::event::push_json_str(&mut out, "a\"b\n");
/// assert_eq!(out, r#""a\"b\n""#);
/// ```
pub fn push_json_str(out: &mut impl JsonOut, s: &str) {
    out.push_ascii(b'"');
    push_json_escaped(out, s);
    out.push_ascii(b'"');
}

/// Appends `s` escaped as inside a JSON string, without the quotes ([`push_json_str`]).
pub fn push_json_escaped(out: &mut impl JsonOut, s: &str) {
    if !needs_escape(s.as_bytes()) {
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
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let b = c as u8;
                    out.push_ascii_bytes(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ]);
                }
                c => out.push_str(c.encode_utf8(&mut [0; 4])),
            }
        }
    }
}

/// Whether a byte of `s` must be escaped in a JSON string: a control character, `"` or `\`.
/// Eight bytes are tested at once, as one `u64` (a string is written per id, subject,
/// namespace and header of every event sent and every receipt).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    // Whether a byte of `v` is below `n` (for `n` <= 0x80): exact, as a whole.
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH != 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        if below(v, 0x20)
            || below(v ^ (ONES * u64::from(b'"')), 1)
            || below(v ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The form a payload takes.
enum Payload<'a> {
    /// JSON text to embed, on one line.
    Json(Box<RawValue>),
    /// UTF-8 text, written as a JSON string.
    Text(&'a str),
    /// Anything else, written as base64.
    Binary(&'a [u8]),
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
        Err(_) => Payload::Binary(payload),
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
        Payload::Binary(b) => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push_str("\",\"encoding\":\"base64\"");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned event to view, with the fields the tests change.
    struct Ev {
        headers: Vec<(String, String)>,
        reply_to: Option<String>,
        msg_id: Option<String>,
        content_type: Option<String>,
        payload: Vec<u8>,
    }

    fn ev(ct: Option<&str>, payload: &[u8]) -> Ev {
        Ev {
            headers: vec![("trace".into(), "a\"b".into())],
            reply_to: None,
            msg_id: None,
            content_type: ct.map(str::to_owned),
            payload: payload.to_vec(),
        }
    }

    fn to_json(e: &Ev, namespace: &str, delivery_count: Option<u32>) -> String {
        view(e, namespace, delivery_count).to_json()
    }

    fn view<'a>(e: &'a Ev, namespace: &'a str, delivery_count: Option<u32>) -> EventView<'a> {
        EventView {
            id: "user-3-00000001",
            subject: "user.created",
            namespace,
            sequence: 3,
            time_ns: 1_700_000_000_000_000_000,
            headers: &e.headers,
            reply_to: e.reply_to.as_deref(),
            msg_id: e.msg_id.as_deref(),
            content_type: e.content_type.as_deref(),
            payload: &e.payload,
            delivery_count,
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
    fn every_ascii_byte_at_every_place_is_tested_by_the_rule() {
        for b in 0..0x80u8 {
            let rule = b < 0x20 || b == b'"' || b == b'\\';
            for at in 0..17 {
                let mut s = vec![b'a'; 17];
                s[at] = b;
                assert_eq!(needs_escape(&s), rule, "byte {b:#x} at {at}");
            }
        }
    }

    proptest::proptest! {
        /// The word-at-a-time test agrees with the byte rule wherever the one byte to escape
        /// is, or when there is none; and what is written reads back as the string, the
        /// same into either buffer.
        #[test]
        fn the_escape_test_is_the_byte_rule(
            plain in "[a-z0-9. \u{7f}é😀]{0,40}",
            special in "[\"\\\\\u{0}-\u{1f}]",
            at in 0usize..=40,
            insert: bool,
        ) {
            let mut s = plain;
            if insert {
                let at = s.char_indices().map(|(i, _)| i).nth(at).unwrap_or(s.len());
                s.insert_str(at, &special);
            }
            proptest::prop_assert_eq!(needs_escape(s.as_bytes()), insert);
            let mut text = String::new();
            let mut bytes = Vec::new();
            push_json_str(&mut text, &s);
            push_json_str(&mut bytes, &s);
            proptest::prop_assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s);
            proptest::prop_assert_eq!(text.into_bytes(), bytes);
        }
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

    /// The exact bytes, field order included: what subscribers and files see.
    #[test]
    fn writes_the_fields_in_protocol_order() {
        let mut e = ev(None, &[0xff]);
        e.msg_id = Some("m".into());
        assert_eq!(
            to_json(&e, "user", Some(1)),
            r#"{"id":"user-3-00000001","subject":"user.created","namespace":"user","sequence":3,"time":"2023-11-14T22:13:20.000000000Z","headers":{"trace":"a\"b"},"msg_id":"m","delivery_count":1,"payload":"/w==","encoding":"base64"}"#
        );
    }

    #[test]
    fn a_count_spliced_at_the_mark_equals_the_count_written() {
        let e = ev(Some("text/plain"), b"hi");
        let mut plain = String::new();
        let at = view(&e, "user", None).write_json_marked(&mut plain);
        let spliced = format!(
            "{}{}{}",
            &plain[..at],
            delivery_count_field(7),
            &plain[at..]
        );
        assert_eq!(spliced, to_json(&e, "user", Some(7)));
        assert_ne!(plain, spliced);
    }
}
