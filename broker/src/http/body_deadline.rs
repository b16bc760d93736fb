//! The request body timeout (`--body-timeout`): the guard ([`super::guard`]) gives every
//! request body a deadline, counted from the request head. A body still incomplete at the
//! deadline fails with [`BodyTimedOut`], which [`super::body::read`] answers
//! `408 request_timeout`; the connection is then closed (its body was not read to the end),
//! which frees its slot. A client that sends half a body and stops holds the connection for
//! this long at most.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::connection::activity::deadline_after;

/// The error of a body that did not arrive in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// A body failing with [`BodyTimedOut`] once its deadline passes.
struct DeadlineBody {
    /// The request's body.
    inner: Body,
    /// The deadline.
    deadline: Instant,
    /// Fires at the deadline; made the first time the body is not ready (most bodies
    /// arrive with their head and never need a timer).
    sleep: Option<Pin<Box<Sleep>>>,
    /// The timeout, for the error.
    timeout: Duration,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Gives `req`'s body a deadline `timeout` from now (an empty body needs none).
pub fn limit_body_time(req: Request, timeout: Duration) -> Request {
    req.map(|inner| {
        if hyper::body::Body::is_end_stream(&inner) {
            return inner;
        }
        Body::new(DeadlineBody {
            inner,
            deadline: deadline_after(Instant::now(), timeout),
            sleep: None,
            timeout,
        })
    })
}

/// Whether `e` (or an error it was caused by) is [`BodyTimedOut`].
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimedOut> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<BodyTimedOut>() {
            return Some(*t);
        }
        cur = err.source();
    }
    None
}
