//! [`Publisher`]: the publish path — check subjects, find or create the namespace's log,
//! append, count.
//!
//! It needs the namespace registry and the metrics, nothing else; the broker façade (for
//! publishes and the requests of `request.rs`) and the dead-letter sink publish through it.
//! Only the crate may publish internal events (into reserved namespaces, past the client
//! limits). An append resolves once the
//! events are durable under the namespace's fsync policy, so every receipt it returns names
//! a durable event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorCode};
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::storage::{NewEvent, Receipt};
use crate::subject::Subject;

/// One event of a publish request.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// The subject, as given.
    pub subject: String,
    /// Event headers (names lowercased by the caller).
    pub headers: Vec<(String, String)>,
    /// Dedup id.
    pub msg_id: Option<String>,
    /// Reply subject.
    pub reply_to: Option<String>,
    /// Content type.
    pub content_type: Option<String>,
    /// Payload.
    pub payload: Bytes,
    /// Whose dedup ids `msg_id` is among: the publishing principal's name under `--auth`,
    /// `None` for the legacy scope (no auth, and everything written before scopes).
    pub dedup_scope: Option<Arc<str>>,
}

/// A [`Publish`] whose subject has been checked: by [`Publisher::check_subject`] for a
/// client's event, by the internal grammar for one the broker makes. The publisher takes it
/// without parsing the subject again (a batch of 100 used to parse each subject twice: once
/// for the caller's rights, once in the publisher).
#[derive(Debug, Clone)]
pub struct CheckedPublish {
    /// `publish.subject`, parsed.
    subject: Subject,
    /// The event.
    publish: Publish,
}

impl CheckedPublish {
    /// Checks `p`'s subject as a client's ([`Publisher::check_subject`]).
    pub fn new(p: Publish) -> Result<CheckedPublish, Error> {
        let subject = Publisher::check_subject(&p.subject)?;
        Ok(CheckedPublish {
            subject,
            publish: p,
        })
    }

    /// `p` with `subject`, which [`Publisher::check_subject`] returned for the same text;
    /// when the texts differ, `p`'s own subject is checked instead.
    pub fn with_subject(subject: Subject, p: Publish) -> Result<CheckedPublish, Error> {
        if subject.as_str() != p.subject {
            return CheckedPublish::new(p);
        }
        Ok(CheckedPublish {
            subject,
            publish: p,
        })
    }

    /// An event the broker makes itself, which may go to a reserved namespace.
    fn internal(p: Publish) -> Result<CheckedPublish, Error> {
        let subject = Subject::parse_internal(&p.subject).map_err(Error::subject)?;
        Ok(CheckedPublish {
            subject,
            publish: p,
        })
    }

    /// The checked subject.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }
}

/// Separates the scope from the id in a stored dedup id (`<scope>NUL<id>`); ids themselves
/// may not hold it.
const SCOPE_SEPARATOR: char = '\0';

/// The dedup id as the log stores and matches it: the id alone in the legacy scope,
/// `<scope>NUL<id>` otherwise, so that one principal's ids never meet another's.
pub fn scoped_msg_id(scope: Option<&str>, id: String) -> String {
    match scope {
        None => id,
        Some(s) => format!("{s}{SCOPE_SEPARATOR}{id}"),
    }
}

/// The dedup id as the publisher gave it, from its stored form.
pub fn visible_msg_id(stored: &str) -> &str {
    stored
        .split_once(SCOPE_SEPARATOR)
        .map_or(stored, |(_, id)| id)
}

/// Publishes into the logs of the registry. See the module docs.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// Where the logs are.
    namespaces: Arc<Namespaces>,
    /// Publish counters and latency.
    metrics: Arc<Metrics>,
    /// Cancelled when the broker shuts down: publishing stops.
    shutdown: CancellationToken,
}

impl Publisher {
    /// A publisher over `namespaces`.
    pub fn new(
        namespaces: Arc<Namespaces>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Publisher {
        Publisher {
            namespaces,
            metrics,
            shutdown,
        }
    }

    /// A subject events may be stored under. Inboxes are never stored: a reply goes to its
    /// waiting request directly, so here every inbox counts as not live.
    pub fn check_subject(subject: &str) -> Result<Subject, Error> {
        let s = Subject::parse(subject).map_err(Error::subject)?;
        s.check_publish(|_| false).map_err(Error::subject)?;
        Ok(s)
    }

    /// Publishes one event; resolves once it is durable under the namespace's policy.
    pub async fn publish(&self, p: Publish) -> Result<Receipt, Error> {
        self.publish_checked(CheckedPublish::new(p)?).await
    }

    /// [`Publisher::publish`] of an event whose subject is checked already.
    pub async fn publish_checked(&self, p: CheckedPublish) -> Result<Receipt, Error> {
        let mut receipts = self.append(vec![p], false).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::internal("publishing", "no receipt"))
    }

    /// Publishes events of one namespace atomically.
    pub async fn publish_batch(&self, items: Vec<Publish>) -> Result<Vec<Receipt>, Error> {
        let checked = items
            .into_iter()
            .enumerate()
            .map(|(i, p)| CheckedPublish::new(p).map_err(|e| at_item(e, i)))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish_batch_checked(checked).await
    }

    /// [`Publisher::publish_batch`] of events whose subjects are checked already.
    pub async fn publish_batch_checked(
        &self,
        items: Vec<CheckedPublish>,
    ) -> Result<Vec<Receipt>, Error> {
        self.append(items, true).await
    }

    /// Publishes an event the broker makes itself (dead letters), into any namespace.
    pub(crate) async fn publish_internal(&self, p: Publish) -> Result<Receipt, Error> {
        let mut receipts = self
            .append(vec![CheckedPublish::internal(p)?], false)
            .await?;
        receipts
            .pop()
            .ok_or_else(|| Error::internal("publishing", "no receipt"))
    }

    /// Appends; errors name the item at fault when `batch` is set. Internal events were
    /// checked against the broker's own, wider limits ([`CheckedPublish::internal`]).
    async fn append(&self, items: Vec<CheckedPublish>, batch: bool) -> Result<Vec<Receipt>, Error> {
        let at_item = |e: Error, i: usize| if batch { at_item(e, i) } else { e };
        let started = Instant::now();
        if self.shutdown.is_cancelled() {
            return Err(Error::new(
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
            ));
        }
        let Some(first) = items.first() else {
            return Err(Error::new(ErrorCode::InvalidBatch, "empty batch"));
        };
        let namespace = first.subject.namespace();
        if let Some((i, other)) = items
            .iter()
            .enumerate()
            .find(|(_, c)| c.subject.namespace() != namespace)
        {
            return Err(Error::new(
                ErrorCode::InvalidBatch,
                format!(
                    "item {i}: subject {:?} is not in namespace {namespace:?}: a batch must stay in one namespace",
                    other.publish.subject
                ),
            ));
        }
        // Each payload's size, for the bytes counted (a single event needs only its own).
        let many = items.len() > 1;
        let mut sizes = Vec::with_capacity(if many { items.len() } else { 0 });
        let mut total_bytes = 0;
        let mut events = Vec::with_capacity(items.len());
        for (i, CheckedPublish { publish: p, .. }) in items.into_iter().enumerate() {
            let size = p.payload.len() as u64;
            total_bytes += size;
            if many {
                sizes.push(size);
            }
            events.push(new_event(p).map_err(|e| at_item(e, i))?);
        }
        // The events keep the checked subjects, so the namespace is read from the first
        // rather than copied out of the items before they are taken apart.
        let namespace = crate::subject::first_token(&events[0].subject);
        let log = self.namespaces.get_or_create(namespace).await?;
        let c = self.metrics.namespace(namespace);
        let receipts = log.append(events).await.map_err(|e| match Error::from(e) {
            e if !batch && e.code == ErrorCode::InvalidBatch => {
                Error::new(ErrorCode::InvalidHeader, e.message)
            }
            e => e,
        })?;
        let fresh = receipts.iter().filter(|r| !r.duplicate).count() as u64;
        let fresh_bytes: u64 = if many {
            receipts
                .iter()
                .zip(&sizes)
                .filter(|(r, _)| !r.duplicate)
                .map(|(_, n)| n)
                .sum()
        } else if fresh == 0 {
            0
        } else {
            total_bytes
        };
        c.published.fetch_add(fresh, Ordering::Relaxed);
        c.published_bytes.fetch_add(fresh_bytes, Ordering::Relaxed);
        self.metrics.publish_latency.observe(started.elapsed());
        Ok(receipts)
    }
}

/// The storage form of a publish, once its reply subject is checked.
fn new_event(p: Publish) -> Result<NewEvent, Error> {
    if let Some(r) = &p.reply_to {
        Subject::parse(r).map_err(|e| {
            Error::new(
                ErrorCode::InvalidHeader,
                format!("invalid reply subject: {e}"),
            )
        })?;
    }
    if p.msg_id
        .as_deref()
        .is_some_and(|m| m.contains(SCOPE_SEPARATOR))
    {
        return Err(Error::new(
            ErrorCode::InvalidHeader,
            "a dedup id may not contain NUL",
        ));
    }
    Ok(NewEvent {
        subject: p.subject,
        headers: p.headers,
        reply_to: p.reply_to,
        msg_id: p.msg_id.map(|m| scoped_msg_id(p.dedup_scope.as_deref(), m)),
        content_type: p.content_type,
        payload: p.payload,
    })
}

/// `e` as the error of batch item `i`.
pub(crate) fn at_item(e: Error, i: usize) -> Error {
    Error::new(e.code, format!("item {i}: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(subject: &str) -> Publish {
        Publish {
            subject: subject.to_owned(),
            ..Publish::default()
        }
    }

    #[test]
    fn a_checked_publish_holds_its_own_subject() {
        let user = Publisher::check_subject("user.created").expect("valid");
        let same =
            CheckedPublish::with_subject(user.clone(), publish("user.created")).expect("same text");
        assert_eq!(same.subject(), &user);
        // A subject parsed for other text is not trusted: the event's own is checked.
        let other = CheckedPublish::with_subject(user.clone(), publish("order.paid"))
            .expect("valid on its own");
        assert_eq!(other.subject().as_str(), "order.paid");
        for refused in ["_bus_.dead.x", "a..b", "user.*"] {
            let e =
                CheckedPublish::with_subject(user.clone(), publish(refused)).expect_err(refused);
            assert_ne!(e.code, ErrorCode::Internal, "{refused}: {e:?}");
            assert!(CheckedPublish::new(publish(refused)).is_err(), "{refused}");
        }
        // The broker's own events may go to its reserved namespace; a client's may not.
        assert!(CheckedPublish::internal(publish("_bus_.dead.x")).is_ok());
    }
}
