//! [`Receipt`]: the broker's answer to a publish, where the event was stored (`201`, or
//! `200` for a duplicate; a batch answers `{"receipts": [...]}`).

use serde::{Deserialize, Serialize};

use crate::event::push_json_str;
use crate::event_id::EventIdRef;
use crate::json_out::JsonOut;

/// Where a published event was stored.
///
/// Written with the fields that apply only when they do: `duplicate` only when true,
/// `confirmed` and `required` only for a publish that asked for confirmations. Read with
/// the same defaults. [`Receipt::from_json`] keeps the text it read, for callers that pass
/// it on unchanged ([`Receipt::json`]).
///
/// ```
/// use bus_proto::Receipt;
/// let r = Receipt::from_json(
///     r#"{"id":"user-1-00000000","namespace":"user","sequence":1,"subject":"user.created","time":"2026-11-23T13:22:11.123456789Z"}"#,
/// ).unwrap();
/// assert!(!r.duplicate && !r.is_confirmed());
/// assert!(r.json().starts_with(r#"{"id":"user-1-00000000""#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The event id.
    pub id: String,
    /// The namespace it went to.
    pub namespace: String,
    /// Its sequence in the namespace.
    pub sequence: u64,
    /// The subject.
    pub subject: String,
    /// Its creation time, RFC 3339.
    pub time: String,
    /// True when the dedup id had been seen within the window: nothing was stored and this is
    /// the original event's receipt.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate: bool,
    /// For a publish that waited for confirmations: the distinct consumers that acked the
    /// event before the answer. `None` when no confirmation was asked for, or for a
    /// duplicate (nothing is awaited then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<u64>,
    /// For a publish that waited for confirmations: the confirmations asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<u64>,
    /// The receipt JSON exactly as read by [`Receipt::from_json`] (empty otherwise).
    #[serde(skip)]
    json: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A [`Receipt`] without confirmation figures that borrows its strings, keeps its id
/// unwritten and its time as nanoseconds, for the broker to write many at once (a batch's
/// answer) without copying them. It serialises exactly as the [`Receipt`] with the same
/// values.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptRef<'a> {
    /// The event id, which also names the namespace and the sequence.
    pub id: EventIdRef<'a>,
    /// The subject.
    pub subject: &'a str,
    /// Its creation time in nanoseconds since the Unix epoch, written as RFC 3339.
    pub time_ns: u64,
    /// As [`Receipt::duplicate`].
    pub duplicate: bool,
}

impl ReceiptRef<'_> {
    /// Appends the receipt's JSON to `out`: the same members in the same order as its
    /// `Serialize`, written directly (a batch answer writes thousands; through serde, every
    /// key went through the string escaper and every time through a temporary string).
    pub fn write_json(&self, out: &mut impl JsonOut) {
        out.push_str("{\"id\":");
        self.id.write_json(out);
        out.push_str(",\"namespace\":");
        push_json_str(out, self.id.namespace);
        out.push_str(",\"sequence\":");
        crate::units::push_decimal(out, self.id.sequence);
        out.push_str(",\"subject\":");
        push_json_str(out, self.subject);
        out.push_str(",\"time\":\"");
        crate::units::write_rfc3339(out, self.time_ns);
        out.push_ascii(b'"');
        if self.duplicate {
            out.push_str(",\"duplicate\":true");
        }
        out.push_ascii(b'}');
    }

    /// The receipt's JSON ([`ReceiptRef::write_json`]).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.json_capacity());
        self.write_json(&mut out);
        out
    }

    /// [`ReceiptRef::to_json`] as bytes, ready to be an HTTP body (written without the
    /// UTF-8 checks a `String` makes of its digits).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_capacity());
        self.write_json(&mut out);
        out
    }

    /// Room for the whole JSON: the fixed part and the strings.
    fn json_capacity(&self) -> usize {
        RECEIPT_FIXED_BYTES + self.text_len()
    }

    /// The bytes of its strings (the namespace twice, in the id and on its own), for sizing
    /// an answer before writing it.
    pub fn text_len(&self) -> usize {
        2 * self.id.namespace.len() + EventIdRef::TAIL_MAX + self.subject.len()
    }
}

impl Serialize for ReceiptRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let time = crate::units::format_rfc3339(self.time_ns);
        let mut r = s.serialize_struct("Receipt", 5 + usize::from(self.duplicate))?;
        r.serialize_field("id", &self.id)?;
        r.serialize_field("namespace", self.id.namespace)?;
        r.serialize_field("sequence", &self.id.sequence)?;
        r.serialize_field("subject", self.subject)?;
        r.serialize_field("time", &time)?;
        if self.duplicate {
            r.serialize_field("duplicate", &true)?;
        }
        r.end()
    }
}

/// The bytes a receipt's JSON has besides what [`ReceiptRef::text_len`] counts: keys,
/// punctuation, a 20-digit sequence, the time and `duplicate`.
pub const RECEIPT_FIXED_BYTES: usize = 128;

impl Receipt {
    /// A receipt of a stored event, without the optional parts.
    pub fn new(
        id: String,
        namespace: String,
        sequence: u64,
        subject: String,
        time: String,
    ) -> Self {
        Receipt {
            id,
            namespace,
            sequence,
            subject,
            time,
            duplicate: false,
            confirmed: None,
            required: None,
            json: String::new(),
        }
    }

    /// Decodes a receipt, keeping its JSON text.
    pub fn from_json(json: &str) -> Result<Receipt, serde_json::Error> {
        let mut r: Receipt = serde_json::from_str(json)?;
        json.clone_into(&mut r.json);
        Ok(r)
    }

    /// The receipt JSON exactly as [`Receipt::from_json`] read it (empty for a receipt made
    /// otherwise).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Whether confirmation was asked for and all of it arrived in time (`confirmed` reached
    /// `required`). False for a receipt without confirmation figures.
    pub fn is_confirmed(&self) -> bool {
        matches!((self.confirmed, self.required), (Some(k), Some(n)) if k >= n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_receipts() {
        let json = r#"{"id":"user-1-9f3c2a1b","namespace":"user","sequence":1,"subject":"user.created","time":"2026-11-23T13:22:11.123456789Z"}"#;
        let r = Receipt::from_json(json).unwrap();
        assert!(!r.duplicate);
        assert_eq!(r.json(), json);
        let r = Receipt::from_json(&json.replace('}', r#","duplicate":true}"#)).unwrap();
        assert!(r.duplicate);
        assert!(!r.is_confirmed());
        let r = Receipt::from_json(&json.replace('}', r#","confirmed":1,"required":2}"#)).unwrap();
        assert_eq!((r.confirmed, r.required), (Some(1), Some(2)));
        assert!(!r.is_confirmed());
        let r = Receipt::from_json(&json.replace('}', r#","confirmed":2,"required":2}"#)).unwrap();
        assert!(r.is_confirmed());
    }

    #[test]
    fn a_borrowed_receipt_writes_what_the_owned_one_does() {
        for (ns, duplicate) in [(1_795_000_000_123_456_789, false), (0, true)] {
            let owned = Receipt {
                duplicate,
                ..Receipt::new(
                    "user-7-000000ab".into(),
                    "user".into(),
                    7,
                    "user.\"odd\"".into(),
                    crate::units::format_rfc3339(ns),
                )
            };
            let borrowed = ReceiptRef {
                id: EventIdRef {
                    namespace: "user",
                    sequence: 7,
                    incarnation: 0xab,
                },
                subject: "user.\"odd\"",
                time_ns: ns,
                duplicate,
            };
            assert_eq!(
                serde_json::to_string(&borrowed).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
            assert_eq!(borrowed.to_json(), serde_json::to_string(&owned).unwrap());
            assert_eq!(
                borrowed.to_json_bytes(),
                serde_json::to_vec(&owned).unwrap()
            );
        }
    }

    #[test]
    fn a_receipt_written_by_hand_reads_back_as_itself() {
        let subjects = [
            "user.created",
            "a.\\b",
            "t\u{e9}l\u{e9}.\u{1f600}",
            "c.\u{1}\n\t",
        ];
        for (i, subject) in subjects.into_iter().enumerate() {
            for duplicate in [false, true] {
                let r = ReceiptRef {
                    id: EventIdRef {
                        namespace: "user",
                        sequence: u64::MAX - i as u64,
                        incarnation: u32::MAX,
                    },
                    subject,
                    time_ns: 1_795_000_000_123_456_789 + i as u64,
                    duplicate,
                };
                let json = r.to_json();
                let mut bytes = Vec::new();
                r.write_json(&mut bytes);
                assert_eq!(bytes, json.as_bytes(), "a body is written as the text is");
                assert!(
                    json.len() <= RECEIPT_FIXED_BYTES + r.text_len() + 8,
                    "{json}"
                );
                let back = Receipt::from_json(&json).unwrap();
                assert_eq!(
                    (
                        back.id.as_str(),
                        back.namespace.as_str(),
                        back.subject.as_str()
                    ),
                    (r.id.to_string().as_str(), r.id.namespace, r.subject)
                );
                assert_eq!((back.sequence, back.duplicate), (r.id.sequence, duplicate));
                assert_eq!(
                    crate::units::parse_rfc3339(&back.time),
                    Some(r.time_ns),
                    "{json}"
                );
                // Byte for byte what serde writes, where neither needs a `\u` escape.
                if !subject.contains('\u{1}') {
                    assert_eq!(json, serde_json::to_string(&r).unwrap());
                }
            }
        }
    }

    #[test]
    fn writes_only_the_parts_that_apply() {
        let mut r = Receipt::new(
            "user-1-00000000".into(),
            "user".into(),
            1,
            "user.created".into(),
            "2026-11-23T13:22:11.000000000Z".into(),
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"id":"user-1-00000000","namespace":"user","sequence":1,"subject":"user.created","time":"2026-11-23T13:22:11.000000000Z"}"#
        );
        r.duplicate = true;
        r.confirmed = Some(1);
        r.required = Some(2);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (v["duplicate"].as_bool(), v["confirmed"].as_u64()),
            (Some(true), Some(1))
        );
        assert_eq!(
            Receipt::from_json(&v.to_string()).unwrap().required,
            Some(2)
        );
    }
}
