//! [`AuthError`]: why a credential was refused, as the `401` (RFC 6750) says it and as
//! `/metrics` counts it.

use std::time::Duration;

use crate::error::{Error, ErrorCode};

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential, and no anonymous rights.
    Missing,
    /// A bearer token the file does not hold.
    UnknownToken,
    /// A JWT or cookie that does not parse, or lacks a required claim.
    Malformed(String),
    /// A JWT whose `exp` passed (or a session or token that expired).
    Expired,
    /// A JWT whose `nbf` is still ahead.
    NotYetValid,
    /// A JWT whose signature does not verify under its key.
    BadSignature,
    /// A JWT whose `kid` names no configured key (or has none).
    UnknownKey(String),
    /// A JWT whose `aud` does not name this broker's audience.
    WrongAudience,
    /// A credential that held and no longer does (the auth file was reloaded without it,
    /// or the session was closed).
    Revoked(String),
    /// The client address failed too often; retry after this.
    RateLimited(Duration),
}

/// Every refusal reason, in the order of [`AuthError::reason`]'s index (for counters).
pub const REASONS: [&str; 11] = [
    "missing",
    "unknown_token",
    "malformed",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "unknown_key",
    "wrong_audience",
    "revoked",
    "rate_limited",
    "forbidden",
];

/// The index of `forbidden` in [`REASONS`] (a 403 from a handler's check).
pub const FORBIDDEN_REASON: usize = 10;

impl AuthError {
    /// Index into [`REASONS`].
    pub fn reason(&self) -> usize {
        match self {
            AuthError::Missing => 0,
            AuthError::UnknownToken => 1,
            AuthError::Malformed(_) => 2,
            AuthError::Expired => 3,
            AuthError::NotYetValid => 4,
            AuthError::BadSignature => 5,
            AuthError::UnknownKey(_) => 6,
            AuthError::WrongAudience => 7,
            AuthError::Revoked(_) => 8,
            AuthError::RateLimited(_) => 9,
        }
    }

    /// Whether the failure counts against the client address (a guess was made).
    pub fn counts_as_failure(&self) -> bool {
        !matches!(self, AuthError::Missing | AuthError::RateLimited(_))
    }

    /// What went wrong, for people (also the `error_description`).
    pub fn describe(&self) -> String {
        match self {
            AuthError::Missing => "credentials are required: send `Authorization: Bearer <token>`, a session cookie, or `access_token=<jwt>`".into(),
            AuthError::UnknownToken => "the bearer token is not known to this broker".into(),
            AuthError::Malformed(why) => format!("the credential is malformed: {why}"),
            AuthError::Expired => "the token expired".into(),
            AuthError::NotYetValid => "the token is not valid yet (nbf is ahead)".into(),
            AuthError::BadSignature => "the token's signature does not verify".into(),
            AuthError::UnknownKey(kid) => format!("the token's key is unknown: {kid}"),
            AuthError::WrongAudience => "the token's audience (aud) is not this broker's".into(),
            AuthError::Revoked(why) => format!("the credential was revoked: {why}"),
            AuthError::RateLimited(wait) => format!(
                "too many failed authentications from this address; retry in {} s",
                wait.as_secs().max(1)
            ),
        }
    }

    /// The error body's form.
    pub fn to_error(&self) -> Error {
        match self {
            AuthError::RateLimited(_) => {
                Error::new(ErrorCode::TooManyAuthFailures, self.describe())
            }
            _ => Error::new(ErrorCode::Unauthorized, self.describe()),
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3): no `error` when no credential was sent.
    pub fn www_authenticate(&self) -> String {
        match self {
            AuthError::Missing => "Bearer realm=\"bus\"".into(),
            _ => format!(
                "Bearer realm=\"bus\", error=\"invalid_token\", error_description=\"{}\"",
                self.describe().replace(['"', '\\'], "'")
            ),
        }
    }
}
