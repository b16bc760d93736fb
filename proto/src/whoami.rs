//! [`Whoami`]: the answer of `GET /v1/whoami`: who the broker takes the caller for, how it
//! authenticated, and its grants (each in the permission schema of `proto-docs/security.md`;
//! all of them must allow an operation).

/// The caller as the broker sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Whoami {
    /// The principal's name (`anonymous` without credentials).
    pub principal: String,
    /// `token`, `jwt`, `session`, `anonymous`, or `none` when the broker runs without auth.
    pub credential: String,
    /// Whether the broker checks credentials (`--auth`).
    pub auth: bool,
    /// When the credential stops being valid (RFC 3339), if it does.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whether the caller holds every right.
    #[serde(default)]
    pub admin: bool,
    /// The grants, each as written in the auth file or the JWT's `bus` claim.
    #[serde(default)]
    pub grants: Vec<serde_json::Value>,
}
