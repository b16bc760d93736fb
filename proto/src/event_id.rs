//! Event ids: `<namespace>-<sequence>-<incarnation as 8 lowercase hex digits>`
//! (`user-42-00000abc`), the form cursors are made of.
//!
//! Ids are opaque to clients. Inside, they carry what resolves them in O(1): the namespace,
//! the sequence, and the namespace's incarnation (so that an id from a deleted and
//! re-created namespace is told apart from a live one). The sequence is written without
//! leading zeros, so every position has exactly one id.

/// The id of event `sequence` in namespace `namespace` of incarnation `incarnation`.
pub fn event_id(namespace: &str, sequence: u64, incarnation: u32) -> String {
    use std::fmt::Write as _;
    // Sized up front: `to_string` would grow the string three times on the appender's path.
    let mut id = String::with_capacity(namespace.len() + 30);
    let _ = write!(
        id,
        "{}",
        EventIdRef {
            namespace,
            sequence,
            incarnation,
        }
    );
    id
}

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

impl std::fmt::Display for EventIdRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}-{:08x}",
            self.namespace, self.sequence, self.incarnation
        )
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
