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
//! the total bound the oldest of all is closed. Expired sessions are closed when next met.
//! Opening costs O(log n) at any fill, so that a caller opening sessions in a loop holds the
//! lock that every cookie request takes only briefly.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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
    /// Its key in [`Open::by_age`].
    age: (SystemTime, u64),
}

/// The open sessions, indexed so that opening one costs O(log n) even at the bounds: by id,
/// by principal (oldest first) and by age.
#[derive(Debug, Default)]
struct Open {
    by_id: HashMap<[u8; 32], Session>,
    by_principal: HashMap<Arc<str>, VecDeque<[u8; 32]>>,
    /// When each opened, with a sequence number that tells apart two in one instant.
    by_age: BTreeMap<(SystemTime, u64), [u8; 32]>,
    next_seq: u64,
}

impl Open {
    fn remove(&mut self, id: &[u8; 32]) -> Option<Session> {
        let s = self.by_id.remove(id)?;
        self.by_age.remove(&s.age);
        let name = s.caller.name();
        if let Some(mine) = self.by_principal.get_mut(name) {
            mine.retain(|k| k != id);
            if mine.is_empty() {
                self.by_principal.remove(name);
            }
        }
        Some(s)
    }

    fn insert(&mut self, id: [u8; 32], caller: Caller, opened: SystemTime) {
        self.remove(&id);
        let age = (opened, self.next_seq);
        self.next_seq += 1;
        self.by_age.insert(age, id);
        self.by_principal
            .entry(caller.name().clone())
            .or_default()
            .push_back(id);
        self.by_id.insert(id, Session { caller, age });
    }
}

/// The open sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<Open>,
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
        let mut open = crate::sync::lock(&self.open);
        let oldest_mine = open
            .by_principal
            .get(caller.name())
            .filter(|mine| mine.len() >= MAX_PER_PRINCIPAL)
            .and_then(|mine| mine.front().copied());
        if let Some(oldest) = oldest_mine {
            open.remove(&oldest);
        }
        if open.by_id.len() >= MAX_SESSIONS
            && let Some((_, oldest)) = open.by_age.first_key_value().map(|(k, v)| (*k, *v))
        {
            open.remove(&oldest);
        }
        open.insert(id, caller, now);
    }

    /// The session's caller, unless it expired by `now` (an expired one is closed).
    pub fn get(&self, id: &[u8; 32], now: SystemTime) -> Option<Caller> {
        let mut open = crate::sync::lock(&self.open);
        let s = open.by_id.get(id)?;
        if s.caller.expires().is_some_and(|e| now >= e) {
            open.remove(id);
            return None;
        }
        Some(s.caller.clone())
    }

    /// Replaces the caller of a session (fresh rights after a reload).
    pub fn update(&self, id: &[u8; 32], caller: Caller) {
        let mut open = crate::sync::lock(&self.open);
        let Some(s) = open.by_id.get_mut(id) else {
            return;
        };
        if s.caller.name() == caller.name() {
            s.caller = caller;
        } else {
            // Another principal: index it under its own name, keeping its age.
            let opened = s.age.0;
            open.insert(*id, caller, opened);
        }
    }

    /// Closes a session.
    pub fn close(&self, id: &[u8; 32]) -> bool {
        crate::sync::lock(&self.open).remove(id).is_some()
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.open).by_id.len()
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
        // Closing keeps the indexes whole: a closed slot is free for the next.
        assert!(s.close(&[255; 32]));
        s.open([254; 32], caller("b", None), t0);
        assert_eq!(s.len(), MAX_PER_PRINCIPAL + 1);
    }

    #[test]
    fn past_the_total_bound_the_oldest_of_all_closes() {
        let s = Sessions::default();
        let t0 = SystemTime::now();
        let id = |n: usize| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(n as u64).to_le_bytes());
            id
        };
        for n in 0..MAX_SESSIONS {
            let who = format!("p{}", n / MAX_PER_PRINCIPAL);
            s.open(
                id(n),
                caller(&who, None),
                t0 + Duration::from_millis(n as u64),
            );
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        s.open(id(MAX_SESSIONS), caller("late", None), t0);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&id(0), t0).is_none(), "the oldest of all closed");
        assert!(s.get(&id(1), t0).is_some());
        assert!(s.get(&id(MAX_SESSIONS), t0).is_some());
    }

    #[test]
    fn an_update_to_another_principal_moves_the_session_to_its_bound() {
        let s = Sessions::default();
        let t0 = SystemTime::now();
        s.open([1; 32], caller("a", None), t0);
        s.update(&[1; 32], caller("b", None));
        assert_eq!(s.get(&[1; 32], t0).unwrap().name().as_ref(), "b");
        for i in 0..MAX_PER_PRINCIPAL as u8 {
            s.open([i + 2; 32], caller("b", None), t0 + Duration::from_secs(1));
        }
        assert!(
            s.get(&[1; 32], t0).is_none(),
            "b's oldest, the moved one, closed first"
        );
    }
}
