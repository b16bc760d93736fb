//! [`Auth`]: the running authentication of a broker started with `--auth FILE`: the current
//! [`AuthFile`] (replaced whole on [`Auth::reload`], which `bus server` calls on SIGHUP),
//! sessions, the JWT cache, the failure table and the refusal counters.
//!
//! Flow: the HTTP middleware hands [`Auth::authenticate`] what the request presented; a
//! failure is counted by reason and, when a guess was made, against the client address.
//! Open streams hold their [`Caller`] and, on every reload ([`Auth::changes`]) and at their
//! credential's expiry, ask [`Auth::revalidate`] whether it still holds; if not they end
//! with `event: error` `unauthorized`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::auth_error::{AuthError, REASONS};
use super::auth_file::AuthFile;
use super::bearer_token::TokenHash;
use super::caller::{Caller, Credential};
use super::failures::AuthFailures;
use super::jwt::{self, JwtCache};
use super::sessions::{self, Sessions};

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// Nothing.
    Nothing,
    /// `Authorization: Bearer …` or the `access_token` query parameter: a token or a JWT.
    Bearer(&'a str),
    /// The session cookie's value.
    Session(&'a str),
}

/// The running authentication.
pub struct Auth {
    path: Option<PathBuf>,
    file: RwLock<Arc<AuthFile>>,
    generation: watch::Sender<u64>,
    sessions: Sessions,
    cache: Mutex<JwtCache>,
    failures: AuthFailures,
    refusals: [AtomicU64; REASONS.len()],
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Reads the auth file at `path`; the error names the file.
    pub fn load(path: &Path) -> Result<Auth, String> {
        let file = read(path)?;
        Ok(Auth::with_file(Some(path.to_owned()), file))
    }

    /// An auth from YAML text (tests, embedding); [`Auth::reload`] has no file to read.
    pub fn from_yaml(text: &str) -> Result<Auth, String> {
        Ok(Auth::with_file(None, AuthFile::parse(text)?))
    }

    fn with_file(path: Option<PathBuf>, file: AuthFile) -> Auth {
        Auth {
            path,
            file: RwLock::new(Arc::new(file)),
            generation: watch::Sender::new(0),
            sessions: Sessions::default(),
            cache: Mutex::new(JwtCache::default()),
            failures: AuthFailures::default(),
            refusals: Default::default(),
        }
    }

    /// Reads the file again; on error the old one stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let path = self
            .path
            .as_deref()
            .ok_or("this auth was not read from a file")?;
        self.replace(read(path)?);
        Ok(())
    }

    /// Replaces the file (what a reload does once the file is read).
    pub fn replace(&self, file: AuthFile) {
        *self.file.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(file);
        crate::sync::lock(&self.cache).clear();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Replaces the file from YAML text.
    pub fn replace_yaml(&self, text: &str) -> Result<(), String> {
        self.replace(AuthFile::parse(text)?);
        Ok(())
    }

    /// The file's path, when read from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Bumped on every reload.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn current(&self) -> Arc<AuthFile> {
        self.file.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Who presented `presented` from `client`, or why not.
    pub fn authenticate(
        &self,
        presented: Presented<'_>,
        client: IpAddr,
    ) -> Result<Caller, AuthError> {
        let now = Instant::now();
        if presented != Presented::Nothing
            && let Some(wait) = self.failures.blocked(client, now)
        {
            return Err(self.refuse(AuthError::RateLimited(wait)));
        }
        let result = self.verify(presented, SystemTime::now());
        if let Err(e) = &result {
            if e.counts_as_failure() {
                self.failures.record(client, now);
            }
            self.count(e.reason());
        }
        result
    }

    fn refuse(&self, e: AuthError) -> AuthError {
        self.count(e.reason());
        e
    }

    /// Counts a refusal by its index in [`REASONS`].
    pub fn count(&self, reason: usize) {
        if let Some(c) = self.refusals.get(reason) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn verify(&self, presented: Presented<'_>, now: SystemTime) -> Result<Caller, AuthError> {
        let file = self.current();
        match presented {
            Presented::Nothing => match &file.anonymous {
                Some(p) => Ok(Caller::new(
                    super::caller::ANONYMOUS.into(),
                    Credential::Anonymous,
                    vec![p.clone()],
                    None,
                )),
                None => Err(AuthError::Missing),
            },
            Presented::Bearer(token) if jwt::looks_like_jwt(token) => {
                let h = TokenHash::of(token);
                if let Some(c) = crate::sync::lock(&self.cache).get(&h, now) {
                    return Ok(c);
                }
                let c = jwt::verify(&file, token)?;
                crate::sync::lock(&self.cache).insert(h, c.clone(), now);
                Ok(c)
            }
            Presented::Bearer(token) => {
                let h = TokenHash::of(token);
                let p = file.principal_of(&h).ok_or(AuthError::UnknownToken)?;
                Ok(Caller::new(
                    p.name.clone(),
                    Credential::Token(h),
                    vec![p.permissions.clone()],
                    None,
                ))
            }
            Presented::Session(value) => {
                let id = sessions::decode_id(value)
                    .ok_or_else(|| AuthError::Malformed("the session cookie is not one".into()))?;
                self.sessions
                    .get(&id, now)
                    .ok_or_else(|| AuthError::Revoked("the session ended".into()))
            }
        }
    }

    /// Whether `caller`'s credential still holds now, after reloads; the caller with its
    /// current rights when it does.
    pub fn revalidate(&self, caller: &Caller) -> Result<Caller, AuthError> {
        let now = SystemTime::now();
        if caller.expires().is_some_and(|e| now >= e) {
            return Err(AuthError::Expired);
        }
        let file = self.current();
        let fresh = refreshed(&file, caller, caller.credential())?;
        if let Credential::Session { id, .. } = caller.credential() {
            if self.sessions.get(id, now).is_none() {
                return Err(AuthError::Revoked("the session ended".into()));
            }
            self.sessions.update(id, fresh.clone());
        }
        Ok(fresh)
    }

    /// Opens a session for `caller`; the cookie value and the caller as a session.
    pub fn open_session(&self, caller: &Caller) -> Result<(String, Caller), String> {
        let id = super::bearer_token::random_bytes::<32>()?;
        let now = SystemTime::now();
        let ttl = self.current().session_ttl;
        let session = caller.as_session(id, now + ttl);
        self.sessions.open(id, session.clone(), now);
        Ok((sessions::encode_id(&id), session))
    }

    /// Closes the session of a cookie value; whether one was open.
    pub fn close_session(&self, value: &str) -> bool {
        sessions::decode_id(value).is_some_and(|id| self.sessions.close(&id))
    }

    /// Refusals so far, by reason, in the order of [`REASONS`].
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .zip(&self.refusals)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Open sessions.
    pub fn sessions_open(&self) -> usize {
        self.sessions.len()
    }
}

/// The caller re-derived from the current file, or why its credential no longer holds.
fn refreshed(file: &AuthFile, caller: &Caller, cred: &Credential) -> Result<Caller, AuthError> {
    match cred {
        Credential::Open => Ok(caller.clone()),
        Credential::Anonymous => match &file.anonymous {
            Some(p) => Ok(Caller::new(
                caller.name().clone(),
                caller.credential().clone(),
                vec![p.clone()],
                caller.expires(),
            )),
            None => Err(AuthError::Revoked("anonymous access was withdrawn".into())),
        },
        Credential::Token(h) => match file.principal_of(h) {
            Some(p) if p.name == *caller.name() => Ok(Caller::new(
                p.name.clone(),
                caller.credential().clone(),
                vec![p.permissions.clone()],
                caller.expires(),
            )),
            _ => Err(AuthError::Revoked(
                "the token was removed from the auth file".into(),
            )),
        },
        Credential::Jwt { kid } => match file.keys.get(kid) {
            Some(key) => {
                let mut grants = caller.grants().to_vec();
                if let Some(last) = grants.last_mut() {
                    *last = key.ceiling.clone();
                }
                Ok(Caller::new(
                    caller.name().clone(),
                    caller.credential().clone(),
                    grants,
                    caller.expires(),
                ))
            }
            None => Err(AuthError::Revoked(format!(
                "key {kid:?} was removed from the auth file"
            ))),
        },
        Credential::Session { under, .. } => refreshed(file, caller, under),
    }
}

fn read(path: &Path) -> Result<AuthFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the auth file {}: {e}", path.display()))?;
    AuthFile::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
}
