//! [`Sessions`]: the session cookies `POST /v1/session` opened, for browsers, whose
//! `EventSource` cannot send an `Authorization` header.
//!
//! A session id is 256 random bits, sent as the cookie [`COOKIE_NAME`] (unpadded base64url).
//! Sessions live in memory only: a broker restart ends them (the page opens a new one). A
//! session ends at the auth file's `session_ttl` or when the credential it was opened with
//! expires, whichever is first, and with that credential's revocation.
//!
//! Bound: at most [`MAX_SESSIONS`] sessions, and [`MAX_PER_PRINCIPAL`] per principal;
//! opening one more for a principal at its bound closes that principal's oldest, and past
//! the total bound expired sessions are dropped, then the oldest of all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;

use super::caller::Caller;

/// The cookie's name.
pub const COOKIE_NAME: &str = "bus_session";
/// Sessions at most.
pub const MAX_SESSIONS: usize = 100_000;
/// Sessions per principal at most.
pub const MAX_PER_PRINCIPAL: usize = 64;

#[derive(Debug)]
struct Session {
    caller: Caller,
    opened: SystemTime,
}

/// The open sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// The cookie value of a session id.
pub fn encode_id(id: &[u8; 32]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// The session id of a cookie value, when it has the shape of one.
pub fn decode_id(value: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.as_bytes())
        .ok()?;
    bytes.try_into().ok()
}

impl Sessions {
    /// Opens a session for `caller` (already a session caller) at `now`.
    pub fn open(&self, id: [u8; 32], caller: Caller, now: SystemTime) {
        let mut map = crate::sync::lock(&self.map);
        let name = caller.name().clone();
        let mine: Vec<([u8; 32], SystemTime)> = map
            .iter()
            .filter(|(_, s)| *s.caller.name() == name)
            .map(|(k, s)| (*k, s.opened))
            .collect();
        if mine.len() >= MAX_PER_PRINCIPAL
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, t)| *t)
        {
            map.remove(oldest);
        }
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.caller.expires().is_none_or(|e| now < e));
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.opened).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id,
            Session {
                caller,
                opened: now,
            },
        );
    }

    /// The session's caller, unless it expired by `now` (an expired one is closed).
    pub fn get(&self, id: &[u8; 32], now: SystemTime) -> Option<Caller> {
        let mut map = crate::sync::lock(&self.map);
        let s = map.get(id)?;
        if s.caller.expires().is_some_and(|e| now >= e) {
            map.remove(id);
            return None;
        }
        Some(s.caller.clone())
    }

    /// Replaces the caller of a session (fresh rights after a reload).
    pub fn update(&self, id: &[u8; 32], caller: Caller) {
        if let Some(s) = crate::sync::lock(&self.map).get_mut(id) {
            s.caller = caller;
        }
    }

    /// Closes a session.
    pub fn close(&self, id: &[u8; 32]) -> bool {
        crate::sync::lock(&self.map).remove(id).is_some()
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.map).len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::caller::Credential;
    use std::time::Duration;

    fn caller(name: &str, expires: Option<SystemTime>) -> Caller {
        Caller::new(name.into(), Credential::Anonymous, Vec::new(), expires)
    }

    #[test]
    fn ids_round_trip_and_garbage_is_no_id() {
        let id = [7u8; 32];
        assert_eq!(decode_id(&encode_id(&id)), Some(id));
        assert_eq!(decode_id("short"), None);
        assert_eq!(decode_id("!!!"), None);
    }

    #[test]
    fn a_session_ends_at_its_expiry_and_when_closed() {
        let s = Sessions::default();
        let now = SystemTime::now();
        s.open(
            [1; 32],
            caller("a", Some(now + Duration::from_secs(10))),
            now,
        );
        assert!(s.get(&[1; 32], now).is_some());
        assert!(s.get(&[1; 32], now + Duration::from_secs(10)).is_none());
        assert!(s.is_empty(), "an expired session is closed when met");
        s.open([2; 32], caller("a", None), now);
        assert!(s.close(&[2; 32]));
        assert!(s.get(&[2; 32], now).is_none());
    }

    #[test]
    fn a_principal_holds_a_bounded_number_of_sessions() {
        let s = Sessions::default();
        let t0 = SystemTime::now();
        for i in 0..(MAX_PER_PRINCIPAL as u8 + 3) {
            let mut id = [0u8; 32];
            id[0] = i;
            s.open(id, caller("a", None), t0 + Duration::from_secs(i.into()));
        }
        assert_eq!(s.len(), MAX_PER_PRINCIPAL);
        assert!(s.get(&[0; 32], t0).is_none(), "the oldest went first");
        s.open([255; 32], caller("b", None), t0);
        assert_eq!(s.len(), MAX_PER_PRINCIPAL + 1);
    }
}
