//! Request/reply on top of publish: [`Broker::request`] stores a request event whose
//! `reply_to` is a fresh inbox and waits for the first reply; [`Broker::reply`] hands a reply
//! to the request waiting on its inbox.
//!
//! A request whose subject no live subscription matches is refused at once
//! (`no_responders`) and not stored. Requests are stored like any event (under their
//! namespace's fsync policy, replayable); replies never are.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::{Broker, CheckedPublish, Publish};
use crate::error::{Error, ErrorCode};
use crate::inboxes::{Reply, Undeliverable};
use crate::storage::Receipt;
use crate::subject::Subject;

/// How long a request waits for its reply unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a request may wait.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Counts a request whose caller left before an outcome, when dropped armed.
struct Abandoned<'a> {
    /// `bus_requests_total{outcome="abandoned"}`.
    counter: &'a std::sync::atomic::AtomicU64,
    /// Whether dropping counts: until an outcome is counted, or the publish failed.
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Broker {
    /// Publishes `p` as a request and waits up to `timeout` for the first reply: the stored
    /// request's receipt and the reply (which may be an error reply, see [`Reply::error`]).
    ///
    /// Errors: `no_responders` at once when no live subscription matches the subject
    /// (nothing is stored), `timeout` when no reply came in time, `too_many_requests` when
    /// [`crate::inboxes::MAX_WAITING`] requests wait already, and any publish error.
    pub async fn request(&self, p: Publish, timeout: Duration) -> Result<(Receipt, Reply), Error> {
        self.request_as(p, timeout, &crate::auth::Caller::open())
            .await
    }

    /// [`Broker::request`] by `caller`: a request into a namespace that does not exist yet
    /// creates it only with the caller's `create_namespace` right (checked after the
    /// no-responders answer, so a refused request creates nothing).
    pub async fn request_as(
        &self,
        mut p: Publish,
        timeout: Duration,
        caller: &crate::auth::Caller,
    ) -> Result<(Receipt, Reply), Error> {
        let subject = Broker::check_subject(&p.subject)?;
        self.check_allowed(subject.namespace())?;
        self.check_damaged(subject.namespace())?;
        if p.reply_to.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidHeader,
                "a request's reply subject is chosen by the broker: do not set one",
            ));
        }
        if p.msg_id.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidHeader,
                "a request cannot carry a dedup id: a repeated request would never be answered",
            ));
        }
        let metrics = self.metrics();
        if !self.has_subscribers(&subject) {
            metrics
                .requests_no_responders
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorCode::NoResponders,
                format!("no responders: no live subscription matches {subject}"),
            ));
        }
        self.admit_namespace(&subject, caller).await?;
        let mut waiter = self
            .inboxes()
            .open_for(Some(subject.clone()))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::TooManyRequests,
                    format!(
                        "{} requests are waiting for replies already; try again later",
                        crate::inboxes::MAX_WAITING
                    ),
                )
            })?;
        p.reply_to = Some(waiter.subject.as_str().to_owned());
        let p = CheckedPublish::with_subject(subject.clone(), p)?;
        // Counts the request as abandoned if this future is dropped (the caller hung up)
        // before an outcome was counted. Armed before the publish: the caller may hang up
        // while the append is answered (the responder can see the request before this task
        // runs again), and the request is stored all the same.
        let mut abandoned = Abandoned {
            counter: &metrics.requests_abandoned,
            armed: true,
        };
        let receipt = match self.publish_checked(p).await {
            Ok(r) => r,
            Err(e) => {
                abandoned.armed = false;
                return Err(e);
            }
        };
        let token = self.shutdown_token();
        tokio::select! {
            reply = &mut waiter.reply => {
                abandoned.armed = false;
                match reply {
                    Ok(reply) => {
                        let counter = if reply.error().is_some() {
                            &metrics.requests_failed
                        } else {
                            &metrics.requests_replied
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok((receipt, reply))
                    }
                    // The sender went without answering: only when the inbox map is torn down.
                    Err(_) => {
                        Err(Error::new(ErrorCode::ShuttingDown, "the broker is shutting down"))
                    }
                }
            }
            _ = tokio::time::sleep(timeout) => {
                abandoned.armed = false;
                metrics.requests_timed_out.fetch_add(1, Ordering::Relaxed);
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "no reply within {timeout:?} to request {} on {subject}",
                        receipt.id()
                    ),
                ))
            }
            _ = token.cancelled() => {
                abandoned.armed = false;
                Err(Error::new(ErrorCode::ShuttingDown, "the broker is shutting down"))
            }
        }
    }

    /// Hands `p` (published to an inbox) to the request waiting there. A reply to an inbox no
    /// request waits on (late, repeated, or never opened) is dropped and refused with
    /// `unknown_inbox`. The dedup id and reply subject of a reply are ignored.
    pub fn reply(&self, p: Publish) -> Result<(), Error> {
        self.reply_as(p, &crate::auth::Caller::open())
    }

    /// [`Broker::reply`] by `caller`, who may answer only a request it could have received
    /// (subscribe permission on the request's subject): `403 forbidden` otherwise, and the
    /// inbox stays open for the responder that may.
    pub fn reply_as(&self, p: Publish, caller: &crate::auth::Caller) -> Result<(), Error> {
        let inbox = Subject::parse(&p.subject).map_err(Error::subject)?;
        if !inbox.is_inbox() {
            return Err(Error::new(
                ErrorCode::InvalidSubject,
                format!("{inbox} is not an inbox (_inbox.<32 hex digits>)"),
            ));
        }
        let reply = Reply {
            headers: p.headers,
            content_type: p.content_type,
            payload: p.payload,
        };
        self.inboxes()
            .deliver_checked(&inbox, reply, |s| caller.may_receive(s))
            .map_err(|u| {
                if let Undeliverable::NotAllowed(subject) = u {
                    return Error::new(
                        ErrorCode::Forbidden,
                        format!(
                            "principal {:?} may not answer a request on {:?}: a responder answers only requests it could receive (subscribe permission on the subject)",
                            &**caller.name(),
                            subject.as_str()
                        ),
                    );
                }
                self.metrics()
                    .replies_dropped
                    .fetch_add(1, Ordering::Relaxed);
                Error::new(
                    ErrorCode::UnknownInbox,
                    format!(
                        "no request is waiting on {inbox}: it timed out, was answered already, or never existed; the reply was dropped"
                    ),
                )
            })
    }
}
