//! JWT verification: the key is chosen by the header's `kid`, the algorithm is the key's
//! own (a token naming another is refused), `exp`, `aud` and `sub` are required, `nbf` is
//! checked when present, with [`LEEWAY_SECS`] of clock skew allowed.
//!
//! The caller's rights are the token's `bus` claim (the permission schema of the auth file)
//! capped by the key's `grants`: both must allow. A token without a `bus` claim gets the
//! key's grants.
//!
//! Verified tokens are cached by their SHA-256 ([`JwtCache`]), so a client sending the
//! same token on every request pays for the signature once; the cache is cleared when the
//! auth file is reloaded. Bound: [`MAX_CACHED`] tokens; when full, expired entries are
//! dropped, and if none has expired the cache starts afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use super::auth_error::AuthError;
use super::auth_file::AuthFile;
use super::bearer_token::TokenHash;
use super::caller::{Caller, Credential};
use super::permissions::{Permissions, PermissionsSpec};

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// Verified tokens cached at most.
pub const MAX_CACHED: usize = 10_000;

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    bus: Option<PermissionsSpec>,
}

/// Whether `token` has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Verifies `token` against the keys of `file`.
pub fn verify(file: &AuthFile, token: &str) -> Result<Caller, AuthError> {
    let header = decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let kid = header
        .kid
        .ok_or_else(|| AuthError::UnknownKey("the token has no kid".into()))?;
    let key = file
        .keys
        .get(&kid)
        .ok_or_else(|| AuthError::UnknownKey(format!("no key has kid {kid:?}")))?;
    if header.alg != key.alg {
        return Err(AuthError::Malformed(format!(
            "the token is signed with {:?}, key {kid:?} takes {:?}",
            header.alg, key.alg
        )));
    }
    let mut v = Validation::new(key.alg);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    if let Some(aud) = &file.audience {
        v.set_audience(&[aud]);
    }
    let data = decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => {
            AuthError::Malformed(format!("the claim {c:?} is required"))
        }
        _ => AuthError::Malformed(e.to_string()),
    })?;
    let claims = data.claims;
    if claims.sub.is_empty() || claims.sub.len() > super::auth_file::MAX_NAME_BYTES {
        return Err(AuthError::Malformed("sub must be 1 to 128 bytes".into()));
    }
    let granted = match claims.bus {
        None => key.ceiling.clone(),
        Some(spec) => Arc::new(
            Permissions::compile(spec).map_err(|e| AuthError::Malformed(format!("bus: {e}")))?,
        ),
    };
    let expires = UNIX_EPOCH + Duration::from_secs(claims.exp.saturating_add(LEEWAY_SECS));
    Ok(Caller::new(
        claims.sub.as_str().into(),
        Credential::Jwt { kid },
        vec![granted, key.ceiling.clone()],
        Some(expires),
    ))
}

/// Verified tokens by digest.
#[derive(Debug, Default)]
pub struct JwtCache {
    map: HashMap<TokenHash, Caller>,
}

impl JwtCache {
    /// The cached caller of `token`, unless it expired by `now`.
    pub fn get(&self, h: &TokenHash, now: SystemTime) -> Option<Caller> {
        self.map
            .get(h)
            .filter(|c| c.expires().is_none_or(|e| now < e))
            .cloned()
    }

    /// Remembers a verified token.
    pub fn insert(&mut self, h: TokenHash, caller: Caller, now: SystemTime) {
        if self.map.len() >= MAX_CACHED {
            self.map.retain(|_, c| c.expires().is_none_or(|e| now < e));
            if self.map.len() >= MAX_CACHED {
                self.map.clear();
            }
        }
        self.map.insert(h, caller);
    }

    /// Forgets everything (on reload).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
