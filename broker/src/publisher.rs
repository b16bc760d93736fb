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
        let mut receipts = self.append(vec![p], false, false).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::internal("publishing", "no receipt"))
    }

    /// Publishes events of one namespace atomically.
    pub async fn publish_batch(&self, items: Vec<Publish>) -> Result<Vec<Receipt>, Error> {
        self.append(items, true, false).await
    }

    /// Publishes an event the broker makes itself (dead letters), into any namespace.
    pub(crate) async fn publish_internal(&self, p: Publish) -> Result<Receipt, Error> {
        let mut receipts = self.append(vec![p], false, true).await?;
        receipts
            .pop()
            .ok_or_else(|| Error::internal("publishing", "no receipt"))
    }

    /// Appends; errors name the item at fault when `batch` is set; `internal` events may go
    /// to reserved namespaces and exceed the client limits.
    async fn append(
        &self,
        items: Vec<Publish>,
        batch: bool,
        internal: bool,
    ) -> Result<Vec<Receipt>, Error> {
        let at_item = |e: Error, i: usize| if batch { at_item(e, i) } else { e };
        let started = Instant::now();
        if self.shutdown.is_cancelled() {
            return Err(Error::new(
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
            ));
        }
        let mut namespace: Option<String> = None;
        let mut events = Vec::with_capacity(items.len());
        let mut sizes = Vec::with_capacity(items.len());
        for (i, p) in items.into_iter().enumerate() {
            let subject = if internal {
                Subject::parse_internal(&p.subject).map_err(Error::subject)?
            } else {
                Self::check_subject(&p.subject).map_err(|e| at_item(e, i))?
            };
            match &namespace {
                None => namespace = Some(subject.namespace().to_owned()),
                Some(ns) if ns != subject.namespace() => {
                    return Err(Error::new(
                        ErrorCode::InvalidBatch,
                        format!(
                            "item {i}: subject {:?} is not in namespace {ns:?}: a batch must stay in one namespace",
                            p.subject
                        ),
                    ));
                }
                Some(_) => {}
            }
            sizes.push(p.payload.len() as u64);
            events.push(new_event(p).map_err(|e| at_item(e, i))?);
        }
        let namespace =
            namespace.ok_or_else(|| Error::new(ErrorCode::InvalidBatch, "empty batch"))?;
        let log = self.namespaces.get_or_create(&namespace).await?;
        let receipts = log.append(events).await.map_err(|e| match Error::from(e) {
            e if !batch && e.code == ErrorCode::InvalidBatch => {
                Error::new(ErrorCode::InvalidHeader, e.message)
            }
            e => e,
        })?;
        let fresh = receipts.iter().filter(|r| !r.duplicate).count() as u64;
        let fresh_bytes: u64 = receipts
            .iter()
            .zip(&sizes)
            .filter(|(r, _)| !r.duplicate)
            .map(|(_, n)| n)
            .sum();
        let c = self.metrics.namespace(&namespace);
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
