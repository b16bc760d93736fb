//! [`Inboxes`]: the requests waiting for a reply, keyed by their inbox
//! (`_inbox.<128-bit random as 32 hex digits>`).
//!
//! A request opens an inbox ([`Inboxes::open`]) before it publishes, and holds the returned
//! [`Waiter`] while it waits; the first reply published to the inbox is handed to it
//! ([`Inboxes::deliver`]) and the inbox closes. Dropping the waiter (timeout, caller gone)
//! closes it too, so a late reply finds nothing and is refused. Nothing here is stored:
//! replies live only as long as the HTTP call that waits for them.
//!
//! Bounded: at most [`MAX_WAITING`] requests wait at once; one more is refused
//! (`429 too_many_requests`) rather than queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::subject::{INBOX_NAMESPACE, Subject};

/// Most requests waiting for a reply at once.
pub const MAX_WAITING: usize = 100_000;

/// The event header that marks a reply as an error; its value is the responder's message.
pub const ERROR_HEADER: &str = "bus-error";

/// A reply as it reaches the requester.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Event headers of the reply.
    pub headers: Vec<(String, String)>,
    /// Its content type.
    pub content_type: Option<String>,
    /// Its payload.
    pub payload: Bytes,
}

impl Reply {
    /// The responder's message when the reply signals an error (header `bus-error`).
    pub fn error(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == ERROR_HEADER)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a reply found no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undeliverable {
    /// No request waits on that inbox: it timed out, was answered, or never existed.
    NotWaiting,
    /// The replier may not answer it: it could not have received the request, on this
    /// subject. The inbox stays open for the responder that may.
    NotAllowed(Subject),
}

/// A waiting request: where its reply goes, and the subject it was published on.
type Slots = Arc<Mutex<HashMap<u128, (oneshot::Sender<Reply>, Option<Subject>)>>>;

/// The waiting requests.
#[derive(Debug, Default)]
pub struct Inboxes {
    slots: Slots,
}

/// Held by a waiting request: receives the reply; closes the inbox when dropped.
#[derive(Debug)]
pub struct Waiter {
    id: u128,
    slots: Slots,
    /// The inbox subject to put in the request's `reply_to`.
    pub subject: Subject,
    /// Resolves with the first reply.
    pub reply: oneshot::Receiver<Reply>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        crate::sync::lock(&self.slots).remove(&self.id);
    }
}

/// The inbox id of `subject` when it is a well-formed inbox subject.
fn inbox_id(subject: &Subject) -> Option<u128> {
    let rest = subject
        .as_str()
        .strip_prefix(INBOX_NAMESPACE)?
        .strip_prefix('.')?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if rest.len() != 32 || !rest.bytes().all(lower_hex) {
        return None;
    }
    u128::from_str_radix(rest, 16).ok()
}

impl Inboxes {
    /// Opens a fresh inbox; `None` when [`MAX_WAITING`] requests already wait.
    pub fn open(&self) -> Option<Waiter> {
        self.open_for(None)
    }

    /// Opens a fresh inbox for a request on `subject`, which a replier must be allowed to
    /// receive ([`Inboxes::deliver_checked`]).
    pub fn open_for(&self, subject: Option<Subject>) -> Option<Waiter> {
        let (tx, rx) = oneshot::channel();
        let mut slots = crate::sync::lock(&self.slots);
        if slots.len() >= MAX_WAITING {
            return None;
        }
        // 122 random bits from the OS generator: guessing a live inbox is hopeless, which is
        // what makes knowing it the right to answer it.
        let mut id = uuid::Uuid::new_v4().as_u128();
        while slots.contains_key(&id) {
            id = uuid::Uuid::new_v4().as_u128();
        }
        slots.insert(id, (tx, subject));
        drop(slots);
        Some(Waiter {
            id,
            slots: self.slots.clone(),
            subject: Subject::inbox(id),
            reply: rx,
        })
    }

    /// Hands `reply` to the request waiting on `inbox`, closing the inbox.
    pub fn deliver(&self, inbox: &Subject, reply: Reply) -> Result<(), Undeliverable> {
        self.deliver_checked(inbox, reply, |_| true)
    }

    /// Hands `reply` to the request waiting on `inbox` if `may_answer` allows the request's
    /// subject (a one-shot right: whoever could receive the request may answer it, once).
    pub fn deliver_checked(
        &self,
        inbox: &Subject,
        reply: Reply,
        may_answer: impl FnOnce(&Subject) -> bool,
    ) -> Result<(), Undeliverable> {
        let id = inbox_id(inbox).ok_or(Undeliverable::NotWaiting)?;
        let (tx, _) = {
            let mut slots = crate::sync::lock(&self.slots);
            let (_, subject) = slots.get(&id).ok_or(Undeliverable::NotWaiting)?;
            if let Some(s) = subject
                && !may_answer(s)
            {
                return Err(Undeliverable::NotAllowed(s.clone()));
            }
            slots.remove(&id).ok_or(Undeliverable::NotWaiting)?
        };
        // The waiter may have given up between the removal and here: then it is late too.
        tx.send(reply).map_err(|_| Undeliverable::NotWaiting)
    }

    /// Whether a request waits on `inbox`.
    pub fn is_waiting(&self, inbox: &Subject) -> bool {
        inbox_id(inbox).is_some_and(|id| crate::sync::lock(&self.slots).contains_key(&id))
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        crate::sync::lock(&self.slots).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_reaches_its_waiter_once() {
        let inboxes = Inboxes::default();
        let w = inboxes.open().unwrap();
        assert!(w.subject.is_inbox());
        assert!(inboxes.is_waiting(&w.subject));
        let reply = Reply {
            payload: Bytes::from_static(b"pong"),
            ..Reply::default()
        };
        inboxes.deliver(&w.subject, reply.clone()).unwrap();
        assert_eq!(
            inboxes.deliver(&w.subject, reply),
            Err(Undeliverable::NotWaiting),
            "a second reply finds the inbox closed"
        );
        let mut w = w;
        assert_eq!((&mut w.reply).await.unwrap().payload, "pong");
        assert_eq!(inboxes.waiting(), 0);
    }

    #[test]
    fn only_a_replier_that_could_receive_the_request_answers_it() {
        let inboxes = Inboxes::default();
        let subject = Subject::parse("rpc.users.get").unwrap();
        let w = inboxes.open_for(Some(subject.clone())).unwrap();
        assert_eq!(
            inboxes.deliver_checked(&w.subject, Reply::default(), |_| false),
            Err(Undeliverable::NotAllowed(subject.clone()))
        );
        assert!(
            inboxes.is_waiting(&w.subject),
            "a refused reply leaves it open"
        );
        let mut seen = None;
        inboxes
            .deliver_checked(&w.subject, Reply::default(), |s| {
                seen = Some(s.clone());
                true
            })
            .unwrap();
        assert_eq!(seen, Some(subject));
    }

    #[test]
    fn a_dropped_waiter_closes_its_inbox() {
        let inboxes = Inboxes::default();
        let w = inboxes.open().unwrap();
        let subject = w.subject.clone();
        drop(w);
        assert!(!inboxes.is_waiting(&subject));
        assert_eq!(
            inboxes.deliver(&subject, Reply::default()),
            Err(Undeliverable::NotWaiting)
        );
    }

    #[test]
    fn foreign_and_malformed_inboxes_are_not_waiting() {
        let inboxes = Inboxes::default();
        let _w = inboxes.open().unwrap();
        for s in [
            "_inbox.00000000000000000000000000000abc",
            "_inbox.ABC",
            "_inbox.0000000000000000000000000000000G",
            "_inbox.00000000000000000000000000000abc.x",
            "user.created",
        ] {
            let s = Subject::parse(s).unwrap();
            assert!(!inboxes.is_waiting(&s), "{s}");
            assert_eq!(
                inboxes.deliver(&s, Reply::default()),
                Err(Undeliverable::NotWaiting)
            );
        }
    }

    #[test]
    fn error_replies_carry_the_responders_message() {
        let r = Reply {
            headers: vec![(ERROR_HEADER.into(), "user 7 not found".into())],
            ..Reply::default()
        };
        assert_eq!(r.error(), Some("user 7 not found"));
        assert_eq!(Reply::default().error(), None);
    }
}
