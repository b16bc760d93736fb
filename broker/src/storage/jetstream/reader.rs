//! [`JetStreamReader`], a cursor over one namespace's stream, and [`fetch`], the batched
//! direct get it reads with.
//!
//! **Flow.** A reader fetches up to [`FETCH_EVENTS`] events (at most [`FETCH_BYTES`]) from
//! its position with one batched direct get (`$JS.API.DIRECT.GET.<stream>` with `seq` and
//! `batch`; the server answers with the messages, then an end-of-batch status), keeps them
//! in a buffer [`LogReader::try_next`] drains, and fetches again in [`LogReader::next`].
//! At the tail it waits on the log's newest sequence, which this node's appends bump at
//! once; for what another bus node or NATS client stored it also asks for the log's figures
//! every [`TAIL_POLL`] while it waits (the log answers those from one `STREAM.INFO` a
//! second, shared by its readers, and bumps the newest sequence when the stream grew). The
//! poll's deadline is kept in the reader, so a caller that drops `next` and calls it again
//! (a select with a timer) does not push it back. Opening a reader fetches its first batch,
//! so that what was in the log when it opened is at hand at once.
//!
//! **Gaps.** A fetch that starts past the reader's position (retention deleted the events
//! between) yields a gap first; so does an empty fetch once the stream's first sequence has
//! moved past the position.
//!
//! **Bound.** The buffer holds at most one fetch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use super::codec;
use super::log::{JetStreamLog, remote};
use crate::storage::{GapReason, LogReader, ReadItem, StorageError};

/// Events one fetch asks for at most: a subscription's scan budget, so that a pull page
/// (which takes only what is at hand) passes over as many records as on the disk engine.
pub const FETCH_EVENTS: usize = crate::subscription::SCAN_BUDGET;
/// Bytes one fetch asks for at most.
pub const FETCH_BYTES: usize = 4 * 1024 * 1024;
/// How long a fetch waits for the server's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an empty fetch below the newest sequence waits before it asks again (a
/// replica answering direct gets may lag the stream's leader by a little).
const LAG_RETRY: Duration = Duration::from_millis(20);
/// How often a reader waiting at the tail asks for the stream's figures, to find messages
/// other writers stored (this node's own appends wake it at once).
pub const TAIL_POLL: Duration = Duration::from_secs(1);

/// Fetches up to `max` events from `from` on, with a gap first when the first one found is
/// past `from`.
pub async fn fetch(
    log: &JetStreamLog,
    from: u64,
    max: usize,
) -> Result<Vec<ReadItem>, StorageError> {
    let client = log.client();
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| remote("subscribing for a direct get", e))?;
    let request = serde_json::json!({"seq": from, "batch": max, "max_bytes": FETCH_BYTES});
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", log.stream()),
            inbox,
            request.to_string().into(),
        )
        .await
        .map_err(|e| remote("requesting a direct get", e))?;
    let mut out = Vec::new();
    let mut expect = from;
    loop {
        let msg = match tokio::time::timeout(FETCH_TIMEOUT, sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(StorageError::Closed),
            Err(_) => {
                return Err(StorageError::Remote(format!(
                    "no answer to a direct get on {} within {FETCH_TIMEOUT:?}",
                    log.stream()
                )));
            }
        };
        if let Some(status) = msg.status {
            let code = status.as_u16();
            // 204: end of batch; 404: nothing at or after `from`.
            if code == 204 || code == 404 {
                break;
            }
            return Err(StorageError::Remote(format!(
                "direct get on {} answered {code} {}",
                log.stream(),
                msg.description.unwrap_or_default()
            )));
        }
        let Some(headers) = msg.headers.as_ref() else {
            return Err(StorageError::Remote(format!(
                "direct get on {} answered a message without headers",
                log.stream()
            )));
        };
        let event = codec::decode(headers, msg.payload.clone(), |s| log.id(s))
            .map_err(|e| StorageError::Remote(format!("stream {}: {e}", log.stream())))?;
        if event.sequence < expect {
            continue;
        }
        if event.sequence > expect {
            // Messages deleted inside the stream (limits, or `nats stream rmm`): removed on
            // purpose, not damaged.
            out.push(ReadItem::Gap {
                missed_from: expect,
                resume_at: event.sequence,
                reason: GapReason::Retention,
            });
        }
        expect = event.sequence + 1;
        out.push(ReadItem::Event(event));
        if out.len() > max {
            break;
        }
    }
    let _ = sub.unsubscribe().await;
    Ok(out)
}

/// `ns` since the epoch as RFC 3339 (UTC, nanoseconds), the form direct get takes.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The sequence of the first message stored at or after `time_ns` by the server's clock
/// (the reader then skips events whose own time is earlier); past the newest when none.
pub async fn seek_time(log: &JetStreamLog, time_ns: u64, first: u64) -> Result<u64, StorageError> {
    let client = log.client();
    let request = serde_json::json!({"start_time": rfc3339(time_ns)});
    let msg = tokio::time::timeout(
        FETCH_TIMEOUT,
        client.request(
            format!("$JS.API.DIRECT.GET.{}", log.stream()),
            request.to_string().into(),
        ),
    )
    .await
    .map_err(|_| StorageError::Remote("no answer to a direct get by time".into()))?
    .map_err(|e| remote("direct get by time", e))?;
    if msg.status.is_some() {
        // Nothing at or after that time: the next event to be written.
        let last = log.stats_last();
        return Ok(last.max(first.saturating_sub(1)) + 1);
    }
    msg.headers
        .as_ref()
        .and_then(|h| h.get(codec::NATS_SEQUENCE))
        .and_then(|v| v.as_str().trim().parse().ok())
        .ok_or_else(|| StorageError::Remote("direct get by time: no sequence".into()))
}

/// A cursor over a [`JetStreamLog`].
pub struct JetStreamReader {
    /// The log read.
    log: Arc<JetStreamLog>,
    /// The sequence the next fetch starts at.
    fetch_from: u64,
    /// The sequence of the next item [`LogReader::position`] reports.
    next: u64,
    /// Events whose time is before this are skipped (a reader started by time).
    min_time: Option<u64>,
    /// Fetched, not yet returned.
    buf: VecDeque<ReadItem>,
    /// Wakes the reader when events are appended.
    tail: watch::Receiver<u64>,
    /// While waiting at the tail: when it next asks for the stream's figures.
    poll_at: Option<Instant>,
}

impl JetStreamReader {
    /// A reader at `next`, with its first batch fetched.
    pub async fn open(
        log: Arc<JetStreamLog>,
        next: u64,
        min_time: Option<u64>,
    ) -> Result<Self, StorageError> {
        let tail = log.tail();
        let mut r = JetStreamReader {
            log,
            fetch_from: next,
            next,
            min_time,
            buf: VecDeque::new(),
            tail,
            poll_at: None,
        };
        if next <= *r.tail.borrow() {
            r.fill().await?;
        }
        Ok(r)
    }

    /// Fetches the next batch into the buffer (which is empty).
    async fn fill(&mut self) -> Result<(), StorageError> {
        let items = fetch(&self.log, self.fetch_from, FETCH_EVENTS).await?;
        for item in items {
            match &item {
                ReadItem::Event(e) => {
                    self.fetch_from = e.sequence + 1;
                    if let Some(t) = self.min_time {
                        if e.time_ns < t {
                            self.next = e.sequence + 1;
                            continue;
                        }
                        self.min_time = None;
                    }
                }
                ReadItem::Gap { resume_at, .. } => self.fetch_from = *resume_at,
            }
            self.buf.push_back(item);
        }
        Ok(())
    }

    fn pop(&mut self) -> Option<ReadItem> {
        let item = self.buf.pop_front()?;
        self.next = match &item {
            ReadItem::Event(e) => e.sequence + 1,
            ReadItem::Gap { resume_at, .. } => *resume_at,
        };
        Some(item)
    }
}

impl LogReader for JetStreamReader {
    fn try_next(&mut self) -> Result<Option<ReadItem>, StorageError> {
        Ok(self.pop())
    }

    fn next(&mut self) -> BoxFuture<'_, Result<Option<ReadItem>, StorageError>> {
        Box::pin(async move {
            loop {
                if let Some(item) = self.pop() {
                    return Ok(Some(item));
                }
                if self.log.is_closed() {
                    return Ok(None);
                }
                let tail = *self.tail.borrow_and_update();
                if self.fetch_from <= tail {
                    let before = self.fetch_from;
                    self.fill().await?;
                    if !self.buf.is_empty() || self.fetch_from != before {
                        continue;
                    }
                    // Nothing found below the newest sequence: deleted, or a replica
                    // behind the leader.
                    let first = self.log.refresh().await?;
                    if first > self.fetch_from {
                        let gap = ReadItem::Gap {
                            missed_from: self.fetch_from,
                            resume_at: first,
                            reason: GapReason::Retention,
                        };
                        self.fetch_from = first;
                        self.buf.push_back(gap);
                    } else {
                        tokio::time::sleep(LAG_RETRY).await;
                    }
                    continue;
                }
                let poll_at = *self
                    .poll_at
                    .get_or_insert_with(|| Instant::now() + TAIL_POLL);
                tokio::select! {
                    changed = self.tail.changed() => {
                        if changed.is_err() {
                            return Ok(None);
                        }
                        self.poll_at = None;
                    }
                    () = tokio::time::sleep_until(poll_at) => {
                        self.poll_at = None;
                        self.log.refresh_cached().await;
                    }
                }
            }
        })
    }

    fn position(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_709_251_200_000_000_123),
            "2024-03-01T00:00:00.000000123Z"
        );
    }
}
