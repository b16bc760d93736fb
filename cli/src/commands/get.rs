//! `bus get <pattern>`: read events from `--from` on, then live. With `--count N` it exits
//! after exactly N events; without, it follows the stream until the broker stops.
//!
//! With `--json` each event is printed as the broker sent it, one per line, flushed as it
//! arrives; otherwise readably. Gap notices go to stderr.
//!
//! With `--ack manual|auto`, `--durable` or `--group` the stream is a member of a consumer,
//! named on stderr when it attaches. In manual mode the events stay pending until acked
//! (`bus ack`), and each printed event carries its `delivery_count`. In auto mode each event
//! is acked after it is printed: the ids go to a task that sends them in batches, so the
//! stream never waits one round trip per event; with `--count N` the command exits only
//! once the broker confirmed every ack, and only then disconnects (disconnecting first would
//! hand the printed events to another member at once). With `--count N` a member asks for at
//! most N unacknowledged events and at most N deliveries in all (`limit=N`), so the broker
//! never hands it an event it will not print.

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use bus_client::{AckMode, Client, StreamItem, SubscribeOptions};

use crate::args::{AckArg, GetArgs};
use crate::error::CliError;
use crate::output::{Output, format_event, notice};

/// Largest `max_in_flight` the broker accepts.
const MAX_IN_FLIGHT: u64 = 100_000;
/// Ids printed and not yet handed to the ack task, at most; past it printing waits.
const ACK_QUEUE_IDS: usize = 1024;
/// Most acks sent in one request (the broker takes up to 10,000).
const ACK_BATCH_IDS: usize = 1000;

/// Runs `bus get`.
pub async fn run(url: &str, json: bool, args: GetArgs) -> Result<(), CliError> {
    let options = options(&args)?;
    let client = super::connect(url).await?;
    let mut sub = client
        .subscribe_with(&args.pattern, options)
        .await
        .map_err(|e| CliError::client_context(format!("cannot read {}", args.pattern), e))?;
    let mut auto_ack = None;
    if args.is_consumer() {
        let name = sub
            .consumer()
            .ok_or_else(|| CliError::msg("the broker did not name the consumer it attached to"))?
            .to_owned();
        let subscribed = sub.subscribed();
        let kind = subscribed
            .and_then(|s| s.kind)
            .map_or("consumer", |k| k.as_str());
        let ack = subscribed.and_then(|s| s.ack).unwrap_or_default();
        notice(&format!(
            "reading as consumer {name} ({kind}, ack {})",
            ack.as_str()
        ));
        if args.ack != AckArg::None && ack != AckMode::Manual {
            return Err(CliError::msg(format!(
                "consumer {name} was created with ack mode {}; it cannot be read with --ack {}",
                ack.as_str(),
                if args.ack == AckArg::Auto {
                    "auto"
                } else {
                    "manual"
                }
            )));
        }
        if args.ack == AckArg::Auto {
            auto_ack = Some(AutoAck::start(client.clone(), name));
        }
    }
    let mut out = Output::new();
    let mut seen: u64 = 0;
    loop {
        let item = match &mut auto_ack {
            Some(a) => tokio::select! {
                item = sub.next() => item,
                // The ack task ends early only when it failed.
                r = &mut a.task => return Err(joined(r).err().unwrap_or_else(ack_task_gone)),
            },
            None => sub.next().await,
        };
        let Some(item) = item else { break };
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                let err = CliError::client_context(format!("reading {} failed", args.pattern), e);
                if let Some(a) = auto_ack {
                    // Send the acks of what was printed; the stream's failure is the news.
                    if let Err(ack_err) = a.finish().await
                        && let Some(line) = ack_err.render()
                    {
                        crate::output::notice_raw(&line);
                    }
                }
                return Err(err);
            }
        };
        match item {
            StreamItem::Event(m) => {
                if json {
                    out.line(m.json())?;
                } else {
                    out.line(&format_event(&m, out.color()))?;
                }
                if let Some(a) = &mut auto_ack {
                    a.push(m.id).await?;
                }
                seen += 1;
                if seen == args.count {
                    if let Some(a) = auto_ack {
                        a.finish().await?;
                    }
                    return Ok(());
                }
            }
            StreamItem::Gap(g) => notice(&format!(
                "gap in {}: events {} to {} were deleted by retention before they were read",
                g.namespace,
                g.missed_from,
                g.resume_at.saturating_sub(1)
            )),
            _ => {}
        }
    }
    // The broker announced its shutdown.
    if let Some(a) = auto_ack {
        a.finish().await?;
    }
    if args.count > 0 {
        return Err(CliError::negative(format!(
            "the broker shut down after {seen} of {} events",
            args.count
        )));
    }
    notice("the broker shut down; the stream has ended");
    Ok(())
}

/// The subscription the flags ask for.
fn options(args: &GetArgs) -> Result<SubscribeOptions, CliError> {
    let mut o = SubscribeOptions::new().from(args.from.clone());
    if !args.is_consumer() {
        if args.ack_wait.is_some()
            || args.max_deliver.is_some()
            || !args.backoff.is_empty()
            || args.max_in_flight.is_some()
        {
            return Err(CliError::msg(
                "--ack-wait, --max-deliver, --backoff and --max-in-flight are consumer settings: \
                 add --ack manual or auto, --durable NAME or --group NAME",
            ));
        }
        return Ok(o);
    }
    if args.ack != AckArg::None {
        o = o.ack(AckMode::Manual);
    }
    if let Some(d) = &args.durable {
        o = o.durable(d.clone());
    }
    if let Some(g) = &args.group {
        o = o.group(g.clone());
    }
    if let Some(w) = args.ack_wait {
        o = o.ack_wait(w);
    }
    if let Some(n) = args.max_deliver {
        o = o.max_deliver(n);
    }
    if !args.backoff.is_empty() {
        o = o.backoff(args.backoff.iter().copied());
    }
    if let Some(n) = max_in_flight(args.max_in_flight, args.count) {
        o = o.max_in_flight(n as usize);
    }
    if args.count > 0 {
        o = o.limit(args.count);
    }
    Ok(o)
}

/// `--max-in-flight`, lowered to `--count` when that is smaller: a member that exits after
/// N events asks for no more than N at a time.
fn max_in_flight(flag: Option<u64>, count: u64) -> Option<u64> {
    let from_count = (count > 0).then(|| count.min(MAX_IN_FLIGHT));
    match (flag, from_count) {
        (Some(f), Some(c)) => Some(f.min(c)),
        (f, c) => f.or(c),
    }
}

/// `--ack auto`: a task acking the printed events in batches.
struct AutoAck {
    /// Ids to ack, in print order.
    tx: mpsc::Sender<String>,
    /// The task; it ends when `tx` is dropped and everything was acked, or at the first
    /// failure.
    task: JoinHandle<Result<(), CliError>>,
}

impl AutoAck {
    fn start(client: Client, consumer: String) -> AutoAck {
        let (tx, rx) = mpsc::channel(ACK_QUEUE_IDS);
        AutoAck {
            tx,
            task: tokio::spawn(ack_loop(client, consumer, rx)),
        }
    }

    /// Queues `id` to be acked; waits while the queue is full. Fails when the task failed.
    async fn push(&mut self, id: String) -> Result<(), CliError> {
        if self.tx.send(id).await.is_err() {
            return Err(joined((&mut self.task).await)
                .err()
                .unwrap_or_else(ack_task_gone));
        }
        Ok(())
    }

    /// Waits until every queued id was acked (the broker confirmed each), or the first
    /// failure.
    async fn finish(self) -> Result<(), CliError> {
        drop(self.tx);
        joined(self.task.await)
    }
}

fn joined(r: Result<Result<(), CliError>, tokio::task::JoinError>) -> Result<(), CliError> {
    r.map_err(|e| CliError::with_cause("the ack task failed", e))?
}

fn ack_task_gone() -> CliError {
    CliError::msg("the ack task ended before the stream")
}

/// Acks what arrives on `rx`, taking all that is queued (up to a batch) per request.
async fn ack_loop(
    client: Client,
    consumer: String,
    mut rx: mpsc::Receiver<String>,
) -> Result<(), CliError> {
    let mut ids = Vec::with_capacity(ACK_BATCH_IDS);
    while rx.recv_many(&mut ids, ACK_BATCH_IDS).await > 0 {
        let results = client
            .ack_batch(&consumer, ids.drain(..))
            .await
            .map_err(CliError::client)?;
        if let Some(r) = results.into_iter().find(|r| r.result.is_err())
            && let Err(e) = r.result
        {
            return Err(CliError::client_context(
                format!("cannot ack event {} of consumer {consumer}", r.id),
                e,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_bounds_the_events_in_flight() {
        assert_eq!(max_in_flight(None, 0), None);
        assert_eq!(max_in_flight(None, 5), Some(5));
        assert_eq!(max_in_flight(Some(3), 5), Some(3));
        assert_eq!(max_in_flight(Some(50), 5), Some(5));
        assert_eq!(max_in_flight(Some(50), 0), Some(50));
        assert_eq!(max_in_flight(None, 1_000_000), Some(MAX_IN_FLIGHT));
    }
}
