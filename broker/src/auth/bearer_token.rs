//! Static bearer tokens: how they are made, stored and checked.
//!
//! A token is `bus_` followed by 32 random bytes (256 bits from the operating system's
//! generator) in unpadded base64url. The auth file stores only its SHA-256 digest, written
//! `sha256:<64 hex digits>`, so a leaked file does not leak credentials. A presented token
//! is hashed and compared with each stored digest in constant time ([`ct_eq`]), so timing
//! says nothing about how much of a digest matched.

use base64::Engine as _;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of every token `bus auth token` makes (tokens made elsewhere need not have it).
pub const TOKEN_PREFIX: &str = "bus_";
/// Random bytes in a generated token.
pub const TOKEN_RANDOM_BYTES: usize = 32;
/// The shortest token accepted in the auth file's sense: 128 bits as base64url.
pub const MIN_TOKEN_CHARS: usize = 22;

/// A stored token: the SHA-256 digest of its text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only a prefix: enough to tell entries apart in a log line.
        write!(f, "sha256:{}…", &self.to_hex()[..8])
    }
}

impl TokenHash {
    /// The digest of a presented token.
    pub fn of(token: &str) -> TokenHash {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        TokenHash(out)
    }

    /// Parses `sha256:<64 hex digits>` as the auth file writes it.
    pub fn parse(text: &str) -> Result<TokenHash, String> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            format!("a token is stored as \"sha256:<64 hex digits>\" (see `bus auth token`), got {text:?}")
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a token digest is 64 hex digits after \"sha256:\", got {} characters",
                hex.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| "a token digest is hex digits".to_owned())?;
        }
        Ok(TokenHash(out))
    }

    /// `sha256:<hex>`.
    pub fn to_stored(self) -> String {
        format!("sha256:{}", self.to_hex())
    }

    fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Equality of two digests in time independent of where they differ.
pub fn ct_eq(a: &TokenHash, b: &TokenHash) -> bool {
    let diff = a.0.iter().zip(&b.0).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A new random token, `bus_` + 256 bits in base64url.
pub fn generate() -> Result<String, String> {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system's random generator failed".to_owned())?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Random bytes for session ids.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system's random generator failed".to_owned())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_random_and_round_trip_through_their_digest() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 4 + 43, "{a}");
        let stored = TokenHash::of(&a).to_stored();
        let parsed = TokenHash::parse(&stored).unwrap();
        assert!(ct_eq(&parsed, &TokenHash::of(&a)));
        assert!(!ct_eq(&parsed, &TokenHash::of(&b)));
    }

    #[test]
    fn digests_are_sha256() {
        // SHA-256("abc"), from FIPS 180-2.
        assert_eq!(
            TokenHash::of("abc").to_stored(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_digests_are_refused_with_the_form() {
        for bad in [
            "abc",
            "sha256:xyz",
            "sha256:",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let e = TokenHash::parse(bad).unwrap_err();
            assert!(e.contains("sha256:"), "{e}");
        }
    }
}
