//! [`Caller`]: who made a request and what they may do, as the handlers check it.
//!
//! Every request carries one (the authentication middleware puts it in the request's
//! extensions). With no `--auth` the caller is [`Caller::open`], which may do everything
//! and whose dedup scope is the legacy one, so a broker without auth behaves as before.
//! Otherwise its rights are one or more grants that must all allow: a principal's own
//! permissions, or a JWT's claims together with its key's ceiling.
//!
//! Each check answers `403 forbidden` naming the principal, the operation, the subject,
//! pattern or consumer, and the missing right.

use std::sync::Arc;
use std::time::SystemTime;

use super::bearer_token::TokenHash;
use super::permissions::{ConsumerRight, Permissions, Refusal};
use crate::error::{Error, ErrorCode};
use crate::subject::{Pattern, Subject};

/// How the caller proved who it is; kept so that a reload can tell whether it still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Auth is off.
    Open,
    /// No credential; the auth file's `anonymous` rights.
    Anonymous,
    /// A static bearer token.
    Token(TokenHash),
    /// A JWT under this key.
    Jwt {
        /// The key's `kid`.
        kid: String,
    },
    /// A session cookie, opened with the inner credential.
    Session {
        /// The session's id.
        id: [u8; 32],
        /// What the session was opened with.
        under: Box<Credential>,
    },
}

impl Credential {
    /// Its kind, as `whoami` shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Open => "none",
            Credential::Anonymous => "anonymous",
            Credential::Token(_) => "token",
            Credential::Jwt { .. } => "jwt",
            Credential::Session { .. } => "session",
        }
    }
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    credential: Credential,
    /// Every grant must allow; empty with `Credential::Open` allows everything.
    grants: Vec<Arc<Permissions>>,
    expires: Option<SystemTime>,
}

/// The authenticated caller of one request (cheap to clone).
#[derive(Debug, Clone)]
pub struct Caller {
    inner: Arc<Inner>,
}

/// The principal name of requests without credentials.
pub const ANONYMOUS: &str = "anonymous";

impl Caller {
    /// The caller when auth is off: every right.
    pub fn open() -> Caller {
        // One for the process: without --auth every request carries it, so it costs a
        // reference count, not an allocation.
        static OPEN: std::sync::OnceLock<Caller> = std::sync::OnceLock::new();
        OPEN.get_or_init(|| Caller::new(ANONYMOUS.into(), Credential::Open, Vec::new(), None))
            .clone()
    }

    /// A caller with these grants (all must allow).
    pub fn new(
        name: Arc<str>,
        credential: Credential,
        grants: Vec<Arc<Permissions>>,
        expires: Option<SystemTime>,
    ) -> Caller {
        Caller {
            inner: Arc::new(Inner {
                name,
                credential,
                grants,
                expires,
            }),
        }
    }

    /// The principal's name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// How it authenticated.
    pub fn credential(&self) -> &Credential {
        &self.inner.credential
    }

    /// When its credential stops being valid, if it does.
    pub fn expires(&self) -> Option<SystemTime> {
        self.inner.expires
    }

    /// The grants (for `whoami`).
    pub fn grants(&self) -> &[Arc<Permissions>] {
        &self.inner.grants
    }

    /// Whether auth is off for this caller.
    pub fn is_open(&self) -> bool {
        self.inner.credential == Credential::Open
    }

    /// The caller as a session (same rights and expiry, another credential).
    pub fn as_session(&self, id: [u8; 32], expires: SystemTime) -> Caller {
        let expires = Some(self.inner.expires.map_or(expires, |e| e.min(expires)));
        Caller::new(
            self.inner.name.clone(),
            Credential::Session {
                id,
                under: Box::new(self.inner.credential.clone()),
            },
            self.inner.grants.clone(),
            expires,
        )
    }

    /// The scope of its dedup ids: `None` (the legacy scope, shared) when auth is off,
    /// otherwise the principal's name.
    pub fn dedup_scope(&self) -> Option<Arc<str>> {
        (!self.is_open()).then(|| self.inner.name.clone())
    }

    fn all(&self, f: impl Fn(&Permissions) -> bool) -> bool {
        self.is_open() || self.inner.grants.iter().all(|g| f(g))
    }

    fn forbidden(&self, message: String) -> Error {
        Error::new(
            ErrorCode::Forbidden,
            format!("principal {:?} {message}", &*self.inner.name),
        )
    }

    /// Every right (`admin`).
    pub fn is_admin(&self) -> bool {
        self.all(Permissions::is_admin)
    }

    /// `403` unless the caller is an admin; `what` names the operation.
    pub fn check_admin(&self, what: &str) -> Result<(), Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(self.forbidden(format!("may not {what}: it needs the admin right")))
        }
    }

    /// `403` unless the caller may read `/metrics`.
    pub fn check_metrics(&self) -> Result<(), Error> {
        if self.all(Permissions::may_read_metrics) {
            Ok(())
        } else {
            Err(self.forbidden("may not read /metrics: it needs the metrics right".into()))
        }
    }

    /// `403` unless `subject` may be published (`what`: "publish to", "send a request to").
    pub fn check_publish(&self, subject: &Subject, what: &str) -> Result<(), Error> {
        self.check_rules(
            |g| g.check_publish(subject),
            || format!("may not {what} {:?}", subject.as_str()),
            "no publish allow pattern matches it",
            "it matches the publish deny pattern",
            "",
        )
    }

    /// `403` unless `pattern` may be subscribed to (`what`: "subscribe to", "attach to …").
    pub fn check_subscribe(&self, pattern: &Pattern, what: &str) -> Result<(), Error> {
        self.check_rules(
            |g| g.check_subscribe(pattern),
            || format!("may not {what} {:?}", pattern.as_str()),
            "no subscribe allow pattern covers it (a pattern must lie within an allowed one)",
            "it overlaps the subscribe deny pattern",
            " (subscribe to narrower patterns)",
        )
    }

    /// Every grant's `check`, the first refusal worded as `<operation>: <why>`.
    fn check_rules(
        &self,
        check: impl Fn(&Permissions) -> Result<(), Refusal>,
        operation: impl Fn() -> String,
        not_allowed: &str,
        denied: &str,
        denied_hint: &str,
    ) -> Result<(), Error> {
        if self.is_open() {
            return Ok(());
        }
        for g in &self.inner.grants {
            match check(g) {
                Ok(()) => {}
                Err(Refusal::NotAllowed) => {
                    return Err(self.forbidden(format!("{}: {not_allowed}", operation())));
                }
                Err(Refusal::Denied(d)) => {
                    return Err(
                        self.forbidden(format!("{}: {denied} {d:?}{denied_hint}", operation()))
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether a subject may be received (answering a request needs this).
    pub fn may_receive(&self, subject: &Subject) -> bool {
        match Pattern::parse(subject.as_str()) {
            Ok(p) => self.all(|g| g.check_subscribe(&p).is_ok()),
            Err(_) => self.is_open(),
        }
    }

    /// `403` unless the caller holds `right` on the consumer `name`.
    pub fn check_consumer(&self, name: &str, right: ConsumerRight) -> Result<(), Error> {
        if self.all(|g| g.has_consumer_right(name, right)) {
            Ok(())
        } else {
            Err(self.forbidden(format!(
                "lacks the {} right on consumer {name:?}",
                right.as_str()
            )))
        }
    }

    /// Whether the caller may see the consumer `name` in listings.
    pub fn sees_consumer(&self, name: &str) -> bool {
        self.all(|g| g.sees_consumer(name))
    }

    /// Whether the caller may see `namespace` in listings.
    pub fn sees_namespace(&self, namespace: &str) -> bool {
        self.all(|g| g.sees_namespace(namespace))
    }

    /// Whether the caller may see a subscription on `pattern` in listings: one it could make.
    pub fn sees_pattern(&self, pattern: &str) -> bool {
        match Pattern::parse(pattern) {
            Ok(p) => self.all(|g| g.check_subscribe(&p).is_ok()),
            Err(_) => self.is_admin(),
        }
    }

    /// The quota under which the caller may create `namespace`: `Ok(None)` when unlimited
    /// (auth off), `403` when it may not create it at all.
    pub fn create_quota(&self, namespace: &str) -> Result<Option<usize>, Error> {
        if self.is_open() || self.is_admin() {
            return Ok(None);
        }
        let mut quota = usize::MAX;
        for g in &self.inner.grants {
            match g.create_quota(namespace) {
                Some(q) => quota = quota.min(q),
                None => {
                    return Err(self.forbidden(format!(
                        "may not create namespace {namespace:?}: it needs the create_namespace right on it"
                    )));
                }
            }
        }
        Ok(Some(quota))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::permissions::PermissionsSpec;

    fn grant(yaml: &str) -> Arc<Permissions> {
        let spec: PermissionsSpec = serde_yaml_ng::from_str(yaml).unwrap();
        Arc::new(Permissions::compile(spec).unwrap())
    }

    fn caller(grants: Vec<Arc<Permissions>>) -> Caller {
        Caller::new("bob".into(), Credential::Anonymous, grants, None)
    }

    #[test]
    fn open_callers_may_do_everything_in_the_legacy_scope() {
        let c = Caller::open();
        assert!(
            c.check_publish(&Subject::parse("a.b").unwrap(), "publish to")
                .is_ok()
        );
        assert!(c.check_consumer("x", ConsumerRight::Manage).is_ok());
        assert!(c.check_admin("x").is_ok() && c.check_metrics().is_ok());
        assert_eq!(c.dedup_scope(), None);
        assert_eq!(c.create_quota("x").unwrap(), None);
    }

    #[test]
    fn every_grant_must_allow_and_refusals_name_what_is_missing() {
        let token = grant("publish: {allow: ['user.>']}");
        let ceiling = grant("publish: {allow: ['user.42.>']}");
        let c = caller(vec![token, ceiling]);
        let ok = Subject::parse("user.42.x").unwrap();
        let wider = Subject::parse("user.7.x").unwrap();
        assert!(c.check_publish(&ok, "publish to").is_ok());
        let e = c.check_publish(&wider, "publish to").unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message.contains("\"bob\"")
                && e.message.contains("publish to \"user.7.x\"")
                && e.message.contains("no publish allow pattern"),
            "{}",
            e.message
        );
        assert_eq!(c.dedup_scope().as_deref(), Some("bob"));
    }

    #[test]
    fn consumer_and_namespace_refusals_name_the_right() {
        let c = caller(vec![grant(
            "consumers: [{names: ['jobs'], rights: [ack]}]\ncreate_namespace: {names: ['t-*'], quota: 2}",
        )]);
        let e = c.check_consumer("jobs", ConsumerRight::Manage).unwrap_err();
        assert!(
            e.message.contains("manage right on consumer \"jobs\""),
            "{}",
            e.message
        );
        assert!(c.check_consumer("jobs", ConsumerRight::Ack).is_ok());
        assert_eq!(c.create_quota("t-1").unwrap(), Some(2));
        let e = c.create_quota("other").unwrap_err();
        assert!(e.message.contains("create_namespace"), "{}", e.message);
    }
}
