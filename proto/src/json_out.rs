//! [`JsonOut`]: where the hand-written JSON writers ([`push_json_str`](crate::event::push_json_str),
//! [`push_decimal`](crate::units::push_decimal), [`write_rfc3339`](crate::units::write_rfc3339),
//! [`ReceiptRef::write_json`](crate::receipt::ReceiptRef::write_json)) append their text: a
//! `String`, or a `Vec<u8>` that becomes an HTTP body as it is.
//!
//! Digits, dates and punctuation are ASCII written byte by byte. A `String` checks them as
//! UTF-8 on the way in; a `Vec<u8>` takes them as they are, which is why a batch answer of
//! thousands of receipts is written into one: under callgrind those checks were about a
//! fifth of writing a receipt.

/// A text buffer the JSON writers append to. The methods are `#[inline]`: each appends a
/// few bytes, and a call into this crate per quote or digit cost more than the append.
pub trait JsonOut {
    /// Appends `s`.
    fn push_str(&mut self, s: &str);
    /// Appends one ASCII byte (a quote, a comma, a digit).
    fn push_ascii(&mut self, b: u8);
    /// Appends bytes the caller wrote as ASCII (digits, a date). A `String` checks them and
    /// appends nothing if they are not UTF-8, which the writers never hand it.
    fn push_ascii_bytes(&mut self, b: &[u8]);
    /// The bytes written so far.
    fn len(&self) -> usize;
    /// Whether nothing is written yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl JsonOut for String {
    #[inline]
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }

    #[inline]
    fn push_ascii(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.push(char::from(b));
    }

    #[inline]
    fn push_ascii_bytes(&mut self, b: &[u8]) {
        debug_assert!(b.is_ascii());
        String::push_str(self, std::str::from_utf8(b).unwrap_or_default());
    }

    #[inline]
    fn len(&self) -> usize {
        String::len(self)
    }
}

/// Holds UTF-8 as long as only these methods write to it.
impl JsonOut for Vec<u8> {
    #[inline]
    fn push_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn push_ascii(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.push(b);
    }

    #[inline]
    fn push_ascii_bytes(&mut self, b: &[u8]) {
        debug_assert!(b.is_ascii());
        self.extend_from_slice(b);
    }

    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(out: &mut impl JsonOut) {
        out.push_ascii(b'[');
        out.push_str("é\"");
        out.push_ascii_bytes(b"42");
        out.push_ascii(b']');
    }

    #[test]
    fn both_buffers_hold_the_same_text() {
        let mut s = String::new();
        let mut v = Vec::new();
        write(&mut s);
        write(&mut v);
        assert_eq!(s, "[é\"42]");
        assert_eq!(String::from_utf8(v).unwrap(), s);
        assert_eq!(JsonOut::len(&s), s.len());
    }
}
