//! Event ids: `<namespace>-<sequence>-<incarnation as 8 lowercase hex digits>`
//! (`user-42-00000abc`), the form cursors are made of.
//!
//! Ids are opaque to clients. Inside, they carry what resolves them in O(1): the namespace,
//! the sequence, and the namespace's incarnation (so that an id from a deleted and
//! re-created namespace is told apart from a live one). The sequence is written without
//! leading zeros, so every position has exactly one id.

use crate::json_out::JsonOut;

/// The id of event `sequence` in namespace `namespace` of incarnation `incarnation`.
pub fn event_id(namespace: &str, sequence: u64, incarnation: u32) -> String {
    let id = EventIdRef {
        namespace,
        sequence,
        incarnation,
    };
    // Sized up front: growing it would cost more on the appender's path than the writing.
    let mut text = String::with_capacity(namespace.len() + ID_TAIL_MAX);
    id.write_to(&mut text);
    text
}

/// The most bytes an id has after its namespace: `-`, 20 digits, `-`, 8 hex digits.
const ID_TAIL_MAX: usize = 30;

/// An event id not yet formatted: writes itself where it is needed.
#[derive(Debug, Clone, Copy)]
pub struct EventIdRef<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The sequence.
    pub sequence: u64,
    /// The namespace's incarnation.
    pub incarnation: u32,
}

impl EventIdRef<'_> {
    /// Appends the id to `out`, as [`Display`](std::fmt::Display) writes it. Written by hand,
    /// not through `fmt`: every append writes it twice (record and receipt), and the
    /// formatting machinery cost more than the rest of the id's work.
    pub fn write_to(&self, out: &mut impl JsonOut) {
        out.push_str(self.namespace);
        self.write_tail_to(out);
    }

    /// Appends the id as a JSON string: the text [`write_to`](Self::write_to) writes, in
    /// quotes, its namespace escaped as any JSON string is.
    pub fn write_json(&self, out: &mut impl JsonOut) {
        out.push_ascii(b'"');
        crate::event::push_json_escaped(out, self.namespace);
        self.write_tail_to(out);
        out.push_ascii(b'"');
    }

    /// The bytes of its text besides the namespace, at most.
    pub const TAIL_MAX: usize = ID_TAIL_MAX;

    fn write_tail_to(&self, out: &mut impl JsonOut) {
        let mut tail = [0u8; ID_TAIL_MAX];
        let n = self.write_tail(&mut tail);
        out.push_ascii_bytes(&tail[..n]);
    }

    /// `-<sequence>-<incarnation>`, written into `buf`.
    fn tail<'b>(&self, buf: &'b mut [u8; ID_TAIL_MAX]) -> &'b str {
        let n = self.write_tail(buf);
        // ASCII digits and dashes only.
        std::str::from_utf8(&buf[..n]).unwrap_or_default()
    }

    /// Writes `-<sequence>-<incarnation>` at the start of `tail`; returns its length.
    fn write_tail(&self, tail: &mut [u8; ID_TAIL_MAX]) -> usize {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 20];
        let seq = crate::units::decimal(self.sequence, &mut digits);
        tail[0] = b'-';
        tail[1..1 + seq.len()].copy_from_slice(seq);
        let mut n = 1 + seq.len();
        tail[n] = b'-';
        n += 1;
        for shift in (0..8).rev() {
            tail[n] = HEX[(self.incarnation >> (shift * 4)) as usize & 0xf];
            n += 1;
        }
        n
    }
}

/// Serialised as its text, a string.
impl serde::Serialize for EventIdRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for EventIdRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.namespace)?;
        f.write_str(self.tail(&mut [0; ID_TAIL_MAX]))
    }
}

/// Splits an event id into (namespace, sequence, incarnation); `None` when it is not one.
pub fn parse_event_id(id: &str) -> Option<(&str, u64, u32)> {
    let mut parts = id.rsplitn(3, '-');
    let inc = parts.next()?;
    let seq = parts.next()?;
    let ns = parts.next()?;
    let canonical_seq = seq == "0" || (!seq.starts_with('0') && !seq.is_empty());
    let lower_hex = inc
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if inc.len() != 8 || !lower_hex || !canonical_seq || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ns, seq.parse().ok()?, u32::from_str_radix(inc, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_the_format_says() {
        for (ns, seq, inc) in [
            ("user", 0, 0),
            ("a", 7, 0xabc),
            ("user-x", 1_000_000, 0x9f3c_2a1b),
            ("n", u64::MAX, u32::MAX),
            ("\u{e9}t\u{e9}", 10, 1 << 28),
        ] {
            let id = EventIdRef {
                namespace: ns,
                sequence: seq,
                incarnation: inc,
            };
            let want = format!("{ns}-{seq}-{inc:08x}");
            let mut bytes = b"x".to_vec();
            id.write_to(&mut bytes);
            assert_eq!(bytes, format!("x{want}").into_bytes());
            let mut json = String::new();
            id.write_json(&mut json);
            assert_eq!(json, serde_json::to_string(&want).unwrap());
            assert_eq!(serde_json::to_string(&id).unwrap(), json);
            assert_eq!(id.to_string(), want);
            assert_eq!(event_id(ns, seq, inc), want);
            assert_eq!(parse_event_id(&want), Some((ns, seq, inc)));
        }
    }

    #[test]
    fn event_ids_round_trip() {
        let id = event_id("user-x", 42, 0xabc);
        assert_eq!(id, "user-x-42-00000abc");
        assert_eq!(parse_event_id(&id), Some(("user-x", 42, 0xabc)));
        for bad in [
            "",
            "user",
            "user-42",
            "user-x-00000abc",
            "user-4x-00000abc",
            "-1-00000000x",
            "user-042-00000abc",
            "user-42-00000ABC",
        ] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }
}
