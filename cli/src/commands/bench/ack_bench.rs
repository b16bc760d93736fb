//! `bus bench ack`: fill a namespace with `--count` events, then drain them with manual-ack
//! consumers — one durable consumer, or a queue group of `--group K` members — acking each
//! event as it arrives (the client batches acks in the background). Reports consumed and
//! acked events/s, from the first subscription to the last ack answered, and what the
//! consumer still holds afterwards (`pending`, which should be 0).
//!
//! The consumer starts after a marker event published just before the fill, so that earlier
//! runs' events are not read; it has a name of its own and is deleted at the end.
//!
//! Bound: the members stop once the consumer delivered `--count` events, or fail at
//! `--max-time`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bus_client::{AckMode, Client, Start, StreamItem, SubscribeOptions, Subscription};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::args::AckArgs;
use super::load::{Plan, drive, per_s};
use super::progress::Progress;
use super::pub_bench::publish_calls;
use super::report::Report;
use super::scrape::Scrape;
use super::target::Target;
use super::{Figures, info, unique, whole};
use crate::error::CliError;

/// Events per request when filling.
const FILL_BATCH: u64 = 1000;
/// Connections filling.
const FILL_CONNECTIONS: usize = 4;

/// Runs `bus bench ack`.
pub async fn run(url: &str, args: AckArgs) -> Result<Report, CliError> {
    let target = Target::open(url, &args.common)?;
    let result = measure(&target, &args).await;
    target.close();
    result
}

async fn measure(target: &Target, args: &AckArgs) -> Result<Report, CliError> {
    let deadline = Instant::now() + args.common.max_time;
    let client = super::super::options()?
        .connect(&target.url())
        .await
        .map_err(CliError::client)?;
    let ns = &args.common.namespace;
    let marker = client.publish(format!("{ns}.mark"), Bytes::new()).await?;
    let fill = Plan {
        connections: FILL_CONNECTIONS,
        requests: args.count.div_ceil(FILL_BATCH),
        duration: None,
        rate: None,
        deadline,
    };
    let progress = Progress::new("fill", Some(args.count));
    let make = publish_calls(&format!("{ns}.ack.job"), args.size, FILL_BATCH, args.count);
    let filled = drive(&target.endpoint, &fill, make, &progress).await;
    progress.finish();
    let filled = filled?;

    let name = unique("bench-ack");
    let members = args.group.unwrap_or(1);
    let mut options = SubscribeOptions::new()
        .from(Start::Cursor(marker.id.clone()))
        .ack(AckMode::Manual);
    options = match args.group {
        Some(_) => options.group(name.clone()),
        None => options.durable(name.clone()),
    };
    let before = Scrape::read(&target.endpoint).await?;
    let progress = Progress::new("consume", Some(filled.events));
    let consumed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let pattern = format!("{ns}.ack.>");
    for i in 0..members {
        let sub = client
            .subscribe_with(&pattern, options.clone())
            .await
            .map_err(|e| CliError::client_context(format!("member {i} cannot attach"), e))?;
        tasks.spawn(member(
            i,
            sub,
            filled.events,
            consumed.clone(),
            done_tx.clone(),
            done_rx.clone(),
            progress.clone(),
            deadline,
        ));
    }
    drop(done_tx);
    let mut redelivered = 0;
    // Kept until the consumer was read: a group without members is gone.
    let mut attached = Vec::with_capacity(members);
    while let Some(r) = tasks.join_next().await {
        let (n, sub) = r.map_err(|e| CliError::with_cause("a member task failed", e))??;
        redelivered += n;
        attached.push(sub);
    }
    let elapsed = start.elapsed();
    progress.finish();
    let after = Scrape::read(&target.endpoint).await?;
    let pending = consumer_pending(&client, &name).await;
    drop(attached);
    let _ = client.delete_consumer(&name).await;
    let consumed = consumed.load(Ordering::Relaxed);
    let mut results = Figures::new();
    results.push("events", json!(filled.events));
    results.push("consumed", json!(consumed));
    results.push("redelivered", json!(redelivered));
    results.push("pending_after", json!(pending?));
    results.push(
        "elapsed_s",
        json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    results.push("acked_per_s", whole(per_s(filled.events, elapsed)));
    results.cpu_per_event(&before, &after, filled.events, target);
    let params = vec![
        ("members".to_owned(), json!(members)),
        (
            "kind".to_owned(),
            json!(if args.group.is_some() {
                "group"
            } else {
                "durable"
            }),
        ),
        ("count".to_owned(), json!(args.count)),
        ("size".to_owned(), json!(args.size)),
    ];
    Ok(Report {
        mode: "ack",
        info: info(target, &after),
        params,
        results: results.into_vec(),
    })
}

/// What the consumer still holds unacknowledged.
async fn consumer_pending(client: &Client, name: &str) -> Result<u64, CliError> {
    let c = client.consumer(name).await.map_err(CliError::client)?;
    Ok(c.pending)
}

/// One member: acks every event it is given until the consumer delivered `total` first
/// deliveries; then sends the acks it queued and waits for their answers. Returns its
/// redeliveries, and its subscription (still attached).
#[allow(clippy::too_many_arguments)]
async fn member(
    i: usize,
    mut sub: Subscription,
    total: u64,
    consumed: Arc<AtomicU64>,
    done_tx: watch::Sender<bool>,
    mut done: watch::Receiver<bool>,
    progress: Progress,
    deadline: Instant,
) -> Result<(u64, Subscription), CliError> {
    let mut redelivered = 0;
    while !*done.borrow() {
        tokio::select! {
            item = sub.next() => match item {
                Some(Ok(StreamItem::Event(m))) => {
                    m.ack().await.map_err(|e| CliError::client_context(format!("member {i} cannot ack"), e))?;
                    if m.delivery_count.is_some_and(|n| n > 1) {
                        redelivered += 1;
                        continue;
                    }
                    progress.inc(1);
                    if consumed.fetch_add(1, Ordering::Relaxed) + 1 >= total {
                        let _ = done_tx.send(true);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::client_context(format!("member {i} failed"), e)),
                None => return Err(CliError::msg(format!("member {i}'s stream ended"))),
            },
            _ = done.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(CliError::msg(format!(
                    "the consumer delivered {} of {total} events by --max-time",
                    consumed.load(Ordering::Relaxed)
                )));
            }
        }
    }
    let flush = tokio::time::timeout_at(deadline, sub.flush_acks()).await;
    match flush {
        Ok(Ok(())) => Ok((redelivered, sub)),
        Ok(Err(e)) => Err(CliError::client_context(
            format!("member {i}'s acks failed"),
            e,
        )),
        Err(_) => Err(CliError::msg(format!(
            "member {i}'s acks were not answered by --max-time"
        ))),
    }
}
