//! Who may do what: credentials and per-subject permissions (`bus server --auth FILE`;
//! `proto-docs/security.md` has the file's schema, the JWT claims and every route's right).
//!
//! - [`auth_file`]: the YAML file, compiled: principals, token digests, JWT keys.
//! - [`permissions`]: one grant's rules: publish/subscribe allow and deny patterns,
//!   consumer rights by name, namespace creation with a quota, admin, metrics.
//! - [`bearer_token`]: static tokens (made, hashed, compared in constant time).
//! - [`jwt`]: JWTs by `kid` (HS256, EdDSA, RS256, ES256), capped by their key's grants.
//! - [`sessions`]: the session cookie browsers use.
//! - [`failures`]: failed authentications rate-limited per client address.
//! - [`caller`]: the authenticated caller each handler checks rights on.
//! - [`authority`]: [`Auth`], the running whole, reloaded on SIGHUP.
//!
//! The HTTP side (reading credentials, `401`s, `/v1/session`, `/v1/whoami`) is
//! `crate::http::authenticate`.

pub mod auth_error;
pub mod auth_file;
pub mod authority;
pub mod bearer_token;
pub mod caller;
pub mod failures;
pub mod jwt;
pub mod permissions;
pub mod sessions;

pub use auth_error::AuthError;
pub use authority::{Auth, Presented};
pub use caller::Caller;
pub use permissions::ConsumerRight;
