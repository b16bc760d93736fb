//! [`AuthFile`]: the principals, their credentials and permissions, and the JWT keys, as
//! `bus server --auth FILE` reads them (YAML; `proto-docs/security.md` has the schema).
//!
//! ```yaml
//! audience: bus                      # the `aud` every JWT must name (required with keys)
//! session_ttl: 12h                   # lifetime of a session cookie (default 12h)
//! anonymous:                         # optional: rights of requests with no credential
//!   subscribe: { allow: ["public.>"] }
//! principals:
//!   - name: orders
//!     tokens: ["sha256:…"]           # `bus auth token orders` prints a token and this line
//!     permissions:
//!       publish: { allow: ["orders.>"] }
//!       subscribe: { allow: ["orders.>"], deny: ["orders.audit.>"] }
//!       consumers: [{ names: ["orders-*"], rights: [attach, ack, manage] }]
//!       create_namespace: { names: ["orders"], quota: 1 }
//! keys:
//!   - kid: "2026-12"
//!     alg: HS256
//!     secret: "at least 32 bytes of secret text…"
//!     grants: { subscribe: { allow: ["user.*.inbox"] } }   # the most a token may grant
//!   - kid: ed-1
//!     alg: EdDSA
//!     public_key: "-----BEGIN PUBLIC KEY-----\n…"
//!     grants: { publish: { allow: ["user.>"] } }
//! ```
//!
//! Everything is checked when the file is read: an unknown field, a pattern that does not
//! parse, a principal named twice, a token digest given twice, a key that does not load, an
//! HS256 secret under 32 bytes; the error names the entry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::bearer_token::TokenHash;
use super::permissions::{Permissions, PermissionsSpec};

/// Default lifetime of a session cookie.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Longest principal name.
pub const MAX_NAME_BYTES: usize = 128;
/// Shortest HS256 secret.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    session_ttl: Option<String>,
    #[serde(default)]
    anonymous: Option<PermissionsSpec>,
    #[serde(default)]
    principals: Vec<PrincipalSpec>,
    #[serde(default)]
    keys: Vec<KeySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    name: String,
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    permissions: PermissionsSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    kid: String,
    alg: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    grants: PermissionsSpec,
}

/// A principal: a stable name and what it may do.
#[derive(Debug)]
pub struct Principal {
    /// Its name (in refusals, the audit log, `whoami`, and as its dedup scope).
    pub name: Arc<str>,
    /// Its permissions.
    pub permissions: Arc<Permissions>,
}

/// A JWT verification key.
pub struct JwtKey {
    /// Its `kid`.
    pub kid: String,
    /// The one algorithm tokens under it may use.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
    /// The most a token signed with it may grant.
    pub ceiling: Arc<Permissions>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The auth file, compiled.
#[derive(Debug)]
pub struct AuthFile {
    /// The `aud` JWTs must name.
    pub audience: Option<String>,
    /// Lifetime of a session cookie.
    pub session_ttl: Duration,
    /// Rights of requests without a credential; `None`: such requests are refused.
    pub anonymous: Option<Arc<Permissions>>,
    /// Principals, in file order.
    pub principals: Vec<Principal>,
    /// Token digests and the index of their principal.
    pub tokens: Vec<(TokenHash, usize)>,
    /// JWT keys by `kid`.
    pub keys: HashMap<String, JwtKey>,
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "principal name {name:?}: use 1 to {MAX_NAME_BYTES} ASCII letters, digits, '_', '-', '.' and '@'"
        ))
    }
}

fn algorithm(alg: &str) -> Result<Algorithm, String> {
    match alg {
        "HS256" => Ok(Algorithm::HS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(format!(
            "alg {other:?} is not supported: use HS256, EdDSA, RS256 or ES256"
        )),
    }
}

fn load_key(k: &KeySpec) -> Result<(Algorithm, DecodingKey), String> {
    let alg = algorithm(&k.alg)?;
    let key = match alg {
        Algorithm::HS256 => {
            let secret = k.secret.as_deref().ok_or("an HS256 key needs `secret`")?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, this one has {}",
                    secret.len()
                ));
            }
            DecodingKey::from_secret(secret.as_bytes())
        }
        _ => {
            let pem = k
                .public_key
                .as_deref()
                .ok_or("this key needs `public_key` (PEM)")?;
            let loaded = match alg {
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
                _ => DecodingKey::from_ec_pem(pem.as_bytes()),
            };
            loaded.map_err(|e| format!("public_key does not load: {e}"))?
        }
    };
    if alg == Algorithm::HS256 && k.public_key.is_some() {
        return Err("an HS256 key has a `secret`, not a `public_key`".into());
    }
    if alg != Algorithm::HS256 && k.secret.is_some() {
        return Err("only HS256 keys have a `secret`".into());
    }
    Ok((alg, key))
}

impl AuthFile {
    /// Reads the YAML text of an auth file.
    pub fn parse(text: &str) -> Result<AuthFile, String> {
        let spec: FileSpec = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let session_ttl = match &spec.session_ttl {
            None => DEFAULT_SESSION_TTL,
            Some(t) => crate::units::parse_duration(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("session_ttl: {t:?} is not a duration"))?,
        };
        let anonymous = match spec.anonymous {
            None => None,
            Some(a) => Some(Arc::new(
                Permissions::compile(a).map_err(|e| format!("anonymous: {e}"))?,
            )),
        };
        let mut principals = Vec::new();
        let mut tokens = Vec::new();
        let mut names = HashSet::new();
        let mut digests = HashSet::new();
        for (i, p) in spec.principals.into_iter().enumerate() {
            let at = |e: String| format!("principals[{i}] ({:?}): {e}", p.name);
            check_name(&p.name).map_err(at)?;
            if !names.insert(p.name.clone()) {
                return Err(at("named twice".into()));
            }
            for t in &p.tokens {
                let h = TokenHash::parse(t).map_err(at)?;
                if !digests.insert(h) {
                    return Err(at(format!("token {h:?} is given twice")));
                }
                tokens.push((h, principals.len()));
            }
            let permissions = Permissions::compile(p.permissions.clone()).map_err(at)?;
            principals.push(Principal {
                name: p.name.as_str().into(),
                permissions: Arc::new(permissions),
            });
        }
        let mut keys = HashMap::new();
        for (i, k) in spec.keys.iter().enumerate() {
            let at = |e: String| format!("keys[{i}] (kid {:?}): {e}", k.kid);
            if k.kid.is_empty() {
                return Err(at("empty kid".into()));
            }
            let (alg, key) = load_key(k).map_err(at)?;
            let ceiling = Permissions::compile(k.grants.clone()).map_err(at)?;
            let key = JwtKey {
                kid: k.kid.clone(),
                alg,
                key,
                ceiling: Arc::new(ceiling),
            };
            if keys.insert(k.kid.clone(), key).is_some() {
                return Err(at("kid given twice".into()));
            }
        }
        if !keys.is_empty() && spec.audience.as_deref().is_none_or(str::is_empty) {
            return Err(
                "`audience` is required with `keys`: every JWT's `aud` must name it".into(),
            );
        }
        Ok(AuthFile {
            audience: spec.audience,
            session_ttl,
            anonymous,
            principals,
            tokens,
            keys,
        })
    }

    /// The principal holding the token whose digest is `h`, compared in constant time
    /// against every stored digest.
    pub fn principal_of(&self, h: &TokenHash) -> Option<&Principal> {
        let mut found = None;
        for (stored, i) in &self.tokens {
            if super::bearer_token::ct_eq(stored, h) {
                found = Some(*i);
            }
        }
        found.and_then(|i| self.principals.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn reads_principals_tokens_and_keys() {
        let f = AuthFile::parse(&format!(
            "audience: bus\nprincipals:\n  - name: orders\n    tokens: ['{DIGEST}']\n    permissions: {{publish: {{allow: ['orders.>']}}}}\nkeys:\n  - kid: k1\n    alg: HS256\n    secret: '0123456789abcdef0123456789abcdef'\n"
        ))
        .unwrap();
        let p = f.principal_of(&TokenHash::of("abc")).unwrap();
        assert_eq!(&*p.name, "orders");
        assert!(f.principal_of(&TokenHash::of("abd")).is_none());
        assert_eq!(f.keys["k1"].alg, Algorithm::HS256);
        assert_eq!(f.session_ttl, DEFAULT_SESSION_TTL);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, wanted) in [
            ("principals: [{name: a}, {name: a}]", "named twice"),
            ("principals: [{name: 'a b'}]", "principal name"),
            (
                &format!(
                    "principals: [{{name: a, tokens: ['{DIGEST}']}}, {{name: b, tokens: ['{DIGEST}']}}]"
                ),
                "given twice",
            ),
            ("principals: [{name: a, tokens: ['plain']}]", "sha256:"),
            (
                "principals: [{name: a, permissions: {publish: {allow: ['a.>.b']}}}]",
                "a.>.b",
            ),
            (
                "keys: [{kid: k, alg: HS256, secret: short}]",
                "at least 32 bytes",
            ),
            (
                "audience: bus\nkeys: [{kid: k, alg: HS512, secret: x}]",
                "not supported",
            ),
            (
                "audience: bus\nkeys: [{kid: k, alg: EdDSA, public_key: nope}]",
                "does not load",
            ),
            (
                "keys: [{kid: k, alg: HS256, secret: '0123456789abcdef0123456789abcdef'}]",
                "audience",
            ),
            ("principal: []", "unknown field"),
            ("session_ttl: soon", "session_ttl"),
        ] {
            let e = AuthFile::parse(text).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }
}
