//! [`AckBatcher`]: sends a consumer's acks in the background, many per request
//! (`POST /v1/consumers/{name}/acks`), so that acking is not one round trip per event.
//!
//! One task per consumer subscription. It takes what is queued, up to [`MAX_BATCH`] acks, sends
//! them in one request, answers the acks whose callers wait ([`Message::double_ack`]
//! (crate::Message::double_ack)) and the flushes queued behind them, and repeats. A batch
//! that fails on a dropped connection is sent again (acks are idempotent: an ack of an acked
//! event answers `already_acked`), as the reconnect policy allows.
//!
//! Bounded: at most [`QUEUE`] acks wait to be sent; past that, queueing an ack waits
//! (backpressure on the consumer loop). The task ends once every handle (the subscription
//! and the messages it delivered) is dropped, after sending what was queued: dropping them
//! flushes, as long as the runtime keeps running.
//!
//! Loss: a runtime shutting down cancels the task, and nothing can send what it had not
//! sent (its connections belong to that runtime). The task's state sits in an [`Unsent`]
//! guard whose `Drop` counts those acks in the client's
//! [`Statistics::acks_lost`](crate::Statistics::acks_lost) and logs how many with
//! `tracing::warn!`; their events come back as redeliveries. To lose none, await
//! [`Subscription::close`](crate::Subscription::close) or
//! [`Subscription::flush_acks`](crate::Subscription::flush_acks) before the runtime stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::ack::{AckItem, AckStatus, ack_batch};
use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::reconnect::with_retries;

/// Most acks in one request.
pub const MAX_BATCH: usize = 1000;
/// Most acks queued and not yet sent.
pub const QUEUE: usize = 10_000;

type Answer = oneshot::Sender<Result<AckStatus, Error>>;

enum Command {
    /// Ack `id`; answer `done` when the broker did, if someone waits.
    Ack { id: String, done: Option<Answer> },
    /// Answer once everything queued before it was sent.
    Flush(oneshot::Sender<()>),
}

/// Figures of the task.
#[derive(Debug, Default)]
struct Stats {
    /// Acks the broker did not record.
    failed: AtomicU64,
    /// Requests made.
    requests: AtomicU64,
}

/// The handle: cheap to clone; the task lives while one exists.
#[derive(Clone, Debug)]
pub(crate) struct AckBatcher {
    tx: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    /// Becomes `true` when the task has ended (everything queued was sent).
    ended: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Ack { id, .. } => write!(f, "Ack({id})"),
            Command::Flush(_) => f.write_str("Flush"),
        }
    }
}

fn gone() -> Error {
    Error::new(ErrorKind::Io, "the background acknowledger has stopped")
}

impl AckBatcher {
    /// Starts the task for `consumer` (needs a Tokio runtime).
    pub(crate) fn start(client: Client, consumer: Arc<str>) -> AckBatcher {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let (end_tx, ended) = tokio::sync::watch::channel(false);
        let task_stats = stats.clone();
        tokio::spawn(async move {
            run(client, consumer, rx, &task_stats).await;
            let _ = end_tx.send(true);
        });
        AckBatcher { tx, stats, ended }
    }

    /// Queues an ack of `id`; resolves once queued (waiting while the queue is full).
    pub(crate) async fn ack(&self, id: &str) -> Result<(), Error> {
        let cmd = Command::Ack {
            id: id.to_owned(),
            done: None,
        };
        self.tx.send(cmd).await.map_err(|_| gone())
    }

    /// Acks `id` in the next batch and resolves with the broker's answer for it.
    pub(crate) async fn ack_and_wait(&self, id: &str) -> Result<AckStatus, Error> {
        let (done, answer) = oneshot::channel();
        let cmd = Command::Ack {
            id: id.to_owned(),
            done: Some(done),
        };
        self.tx.send(cmd).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Resolves once every ack queued before the call was sent and answered.
    pub(crate) async fn flush(&self) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    /// Background acks that failed (their events will be redelivered).
    pub(crate) fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Requests sent so far.
    pub(crate) fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Resolves once the task has ended: every handle was dropped and what was queued sent.
    pub(crate) fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            // An error means the task is gone: ended too.
            let _ = ended.wait_for(|e| *e).await;
        }
    }
}

/// What the task holds and has not sent yet: the queue and the batch being sent. Dropped
/// with the task; anything still in it then (the runtime stopped the task before it sent
/// it) is counted as lost and logged.
struct Unsent {
    /// The queue.
    rx: mpsc::Receiver<Command>,
    /// The batch being sent; emptied once the broker answered it.
    ids: Vec<String>,
    /// The client, whose counters take the loss.
    client: Client,
    /// The consumer, for the log line.
    consumer: Arc<str>,
}

impl Drop for Unsent {
    fn drop(&mut self) {
        // No more sends: what is queued now is all there is. `try_recv` needs no runtime.
        self.rx.close();
        let mut lost = self.ids.len() as u64;
        while let Ok(cmd) = self.rx.try_recv() {
            if matches!(cmd, Command::Ack { .. }) {
                lost += 1;
            }
        }
        if lost > 0 {
            self.client
                .counters()
                .acks_lost
                .fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(
                consumer = %self.consumer,
                lost,
                "the runtime stopped before {lost} queued acks were sent; their events will be redelivered"
            );
        }
    }
}

async fn run(client: Client, consumer: Arc<str>, rx: mpsc::Receiver<Command>, stats: &Stats) {
    let mut unsent = Unsent {
        rx,
        ids: Vec::with_capacity(MAX_BATCH),
        client: client.clone(),
        consumer: consumer.clone(),
    };
    let Unsent { rx, ids, .. } = &mut unsent;
    let mut waiting: Vec<(usize, Answer)> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Ack { id, done } => {
                    if let Some(d) = done {
                        waiting.push((ids.len(), d));
                    }
                    ids.push(id);
                }
                // Everything before it is in this batch: answered once the batch is.
                Command::Flush(f) => flushes.push(f),
            }
            if ids.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !ids.is_empty() {
            let items: Vec<AckItem> = ids.iter().map(|id| AckItem::ack(id.as_str())).collect();
            let policy = client.options().reconnect_policy();
            let sent = with_retries(policy, true, || {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                ack_batch(&client, &consumer, items.clone())
            })
            .await;
            match sent {
                Ok(results) => {
                    let mut results: Vec<Option<Result<AckStatus, Error>>> =
                        results.into_iter().map(|r| Some(r.result)).collect();
                    let bad = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
                    stats.failed.fetch_add(bad as u64, Ordering::Relaxed);
                    client
                        .counters()
                        .acks_failed
                        .fetch_add(bad as u64, Ordering::Relaxed);
                    for (i, done) in waiting.drain(..) {
                        let r = results
                            .get_mut(i)
                            .and_then(Option::take)
                            .unwrap_or_else(|| Err(gone()));
                        let _ = done.send(r);
                    }
                }
                Err(e) => {
                    stats.failed.fetch_add(ids.len() as u64, Ordering::Relaxed);
                    client
                        .counters()
                        .acks_failed
                        .fetch_add(ids.len() as u64, Ordering::Relaxed);
                    for (_, done) in waiting.drain(..) {
                        let _ = done.send(Err(Error::new(e.kind().clone(), e.to_string())));
                    }
                }
            }
            ids.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}
