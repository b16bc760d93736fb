//! Standard padded base64 (RFC 4648, section 4), encoding only: the form of a binary payload
//! in the event JSON. Written here to keep the crate's dependencies to serde and thiserror;
//! decoding is the reader's business (the client uses the `base64` crate).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the standard padded base64 of `bytes` to `out`.
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    let sextet = |v: u32, shift: u32| char::from(ALPHABET[((v >> shift) & 0x3f) as usize]);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let v = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend([sextet(v, 18), sextet(v, 12), sextet(v, 6), sextet(v, 0)]);
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out.extend([sextet(v, 18), sextet(v, 12), '=', '=']);
        }
        [a, b] => {
            let v = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([sextet(v, 18), sextet(v, 12), sextet(v, 6), '=']);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    fn encode(bytes: &[u8]) -> String {
        let mut s = String::new();
        super::encode_into(&mut s, bytes);
        s
    }

    /// The test vectors of RFC 4648, section 10.
    #[test]
    fn encodes_the_rfc_vectors() {
        for (plain, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), want, "{plain:?}");
        }
    }

    /// Agrees with the `base64` crate on every length up to 300 and every byte value.
    #[test]
    fn agrees_with_the_base64_crate() {
        let bytes: Vec<u8> = (0..300u32).map(|i| (i * 151 + 7) as u8).collect();
        for n in 0..bytes.len() {
            let want = base64::engine::general_purpose::STANDARD.encode(&bytes[..n]);
            assert_eq!(encode(&bytes[..n]), want, "length {n}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(
            encode(&all),
            base64::engine::general_purpose::STANDARD.encode(&all)
        );
    }
}
