//! `bus bench sub`: M subscribers over SSE — all on one pattern (dense: each receives every
//! event) or each on its own subject (sparse: each event goes to one) — while publishers
//! run (`--from newest`), or reading what was published before they subscribed
//! (`--from oldest`, catch-up). Reports deliveries/s in total and per subscriber,
//! publish→receive latency (live runs), and the broker's CPU per delivery.
//!
//! Each payload starts with its send time ([`STAMP_BYTES`] hex digits of nanoseconds since
//! the run began), which the subscriber reads back. A catch-up run publishes after a marker
//! event and subscribes from it, so that earlier runs' events in the namespace are not read.
//!
//! Bound: each subscriber stops at the events it is owed (known once the publishers are
//! done), or fails at `--max-time`.

use std::sync::Arc;
use std::time::Duration;

use bus_client::{Start, StreamItem, SubscribeOptions, Subscription};
use bytes::Bytes;
use futures::StreamExt as _;
use hyper::Method;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::args::{Layout, SubArgs, SubFrom};
use super::connection::Call;
use super::histogram::Latency;
use super::load::{MakeCall, Plan, drive, per_s};
use super::progress::Progress;
use super::pub_bench::{batch_line, outcome_figures, plan};
use super::report::Report;
use super::scrape::Scrape;
use super::target::Target;
use super::{Figures, info, whole};
use crate::error::CliError;

/// Bytes of the send time at the start of each payload.
pub const STAMP_BYTES: usize = 16;

/// Events per request when filling for a catch-up run.
const FILL_BATCH: u64 = 1000;

/// Runs `bus bench sub`.
pub async fn run(url: &str, args: SubArgs) -> Result<Report, CliError> {
    let target = Target::open(url, &args.common)?;
    let result = measure(&target, &args).await;
    target.close();
    result
}

/// What one subscriber got.
struct Received {
    events: u64,
    /// From the start of the run to its last event.
    elapsed: Duration,
    latency: Latency,
}

async fn measure(target: &Target, args: &SubArgs) -> Result<Report, CliError> {
    let deadline = Instant::now() + args.common.max_time;
    let client = super::super::options()?
        .connect(&target.url())
        .await
        .map_err(CliError::client)?;
    let base = format!("{}.sub", args.common.namespace);
    let m = args.subscribers as u64;
    let subject_of = {
        let base = base.clone();
        let layout = args.layout;
        move |event: u64| match layout {
            Layout::Dense => format!("{base}.all"),
            Layout::Sparse => format!("{base}.{}", event % m),
        }
    };
    let pattern_of = |i: u64| match args.layout {
        Layout::Dense => format!("{base}.>"),
        Layout::Sparse => format!("{base}.{i}"),
    };
    let sparse = (args.layout == Layout::Sparse).then_some(m);
    let epoch = Instant::now();
    let (owed_tx, owed_rx) = watch::channel(None::<u64>);
    let mut results = Figures::new();
    let before;
    let start;
    let mut subscribers = JoinSet::new();
    let live = args.from == SubFrom::Newest;
    let load = &args.load;
    if live {
        for i in 0..m {
            let sub = client
                .subscribe_with(&pattern_of(i), SubscribeOptions::new().from(Start::Newest))
                .await
                .map_err(|e| {
                    CliError::client_context(format!("subscriber {i} cannot subscribe"), e)
                })?;
            subscribers.spawn(receive(
                i,
                sub,
                owed_rx.clone(),
                sparse,
                epoch,
                true,
                deadline,
            ));
        }
        before = Scrape::read(&target.endpoint).await?;
        start = Instant::now();
        let make = stamped_calls(subject_of, load.size, load.batch, load.events(), epoch);
        let progress = Progress::new("publish", load.duration.is_none().then(|| load.events()));
        let published = drive(&target.endpoint, &plan(load, deadline), make, &progress).await;
        progress.finish();
        let published = published?;
        let _ = owed_tx.send(Some(published.events));
        outcome_figures(&mut results, &published);
        rename_publish_figures(&mut results);
    } else {
        let marker = client
            .publish(format!("{}.mark", args.common.namespace), Bytes::new())
            .await?;
        let events = load.events();
        let fill = Plan {
            connections: load.connections,
            requests: events.div_ceil(FILL_BATCH),
            duration: None,
            rate: None,
            deadline,
        };
        let make = stamped_calls(subject_of, load.size, FILL_BATCH, events, epoch);
        let progress = Progress::new("fill", Some(events));
        let filled = drive(&target.endpoint, &fill, make, &progress).await;
        progress.finish();
        let filled = filled?;
        results.push("events", json!(filled.events));
        before = Scrape::read(&target.endpoint).await?;
        let _ = owed_tx.send(Some(filled.events));
        start = Instant::now();
        for i in 0..m {
            let options = SubscribeOptions::new().from(Start::Cursor(marker.id.clone()));
            let sub = client
                .subscribe_with(&pattern_of(i), options)
                .await
                .map_err(|e| {
                    CliError::client_context(format!("subscriber {i} cannot subscribe"), e)
                })?;
            subscribers.spawn(receive(
                i,
                sub,
                owed_rx.clone(),
                sparse,
                start,
                false,
                deadline,
            ));
        }
    }
    let mut deliveries = 0;
    let mut latency = Latency::new();
    let mut rates = Vec::new();
    let mut last = Duration::ZERO;
    while let Some(r) = subscribers.join_next().await {
        let r = r.map_err(|e| CliError::with_cause("a subscriber task failed", e))??;
        deliveries += r.events;
        latency.merge(&r.latency);
        // A live subscriber's clock started before the publishers did.
        let elapsed = if live {
            r.elapsed.saturating_sub(start - epoch)
        } else {
            r.elapsed
        };
        rates.push(per_s(r.events, elapsed));
        last = last.max(elapsed);
    }
    let after = Scrape::read(&target.endpoint).await?;
    results.push("deliveries", json!(deliveries));
    results.push(
        "delivery_elapsed_s",
        json!((last.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    results.push("deliveries_per_s", whole(per_s(deliveries, last)));
    rates.sort_by(f64::total_cmp);
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    results.push(
        "per_subscriber_per_s",
        json!({
            "min": rates.first().map(|&r| r.round() as u64),
            "mean": mean.round() as u64,
            "max": rates.last().map(|&r| r.round() as u64),
        }),
    );
    if live {
        results.push("publish_to_receive_us", latency.summary());
    }
    results.cpu_per_event(&before, &after, deliveries, target);
    let params = vec![
        ("subscribers".to_owned(), json!(m)),
        (
            "layout".to_owned(),
            json!(match args.layout {
                Layout::Dense => "dense",
                Layout::Sparse => "sparse",
            }),
        ),
        (
            "from".to_owned(),
            json!(if live { "newest" } else { "oldest" }),
        ),
        ("publishers".to_owned(), json!(load.connections)),
        ("size".to_owned(), json!(load.size)),
        (
            "batch".to_owned(),
            json!(if live { load.batch } else { FILL_BATCH }),
        ),
        ("rate".to_owned(), json!(load.rate)),
    ];
    Ok(Report {
        mode: "sub",
        info: info(target, &after),
        params,
        results: results.into_vec(),
    })
}

/// The publishers' figures, named as such beside the subscribers'.
fn rename_publish_figures(results: &mut Figures) {
    let figures = std::mem::take(results).into_vec();
    for (k, v) in figures {
        let name = match k.as_str() {
            "events" => "events".to_owned(),
            other => format!("publish_{other}"),
        };
        results.push(&name, v);
    }
}

/// Reads subscriber `i`'s stream until it has the events it is owed.
async fn receive(
    i: u64,
    mut sub: Subscription,
    mut owed: watch::Receiver<Option<u64>>,
    sparse: Option<u64>,
    epoch: Instant,
    stamped: bool,
    deadline: Instant,
) -> Result<Received, CliError> {
    let mut got = Received {
        events: 0,
        elapsed: Duration::ZERO,
        latency: Latency::new(),
    };
    loop {
        let target = *owed.borrow();
        let owed_here = target.map(|total| owed_to(i, total, sparse));
        if owed_here.is_some_and(|n| got.events >= n) {
            return Ok(got);
        }
        tokio::select! {
            item = sub.next() => match item {
                Some(Ok(StreamItem::Event(m))) => {
                    got.events += 1;
                    got.elapsed = epoch.elapsed();
                    if stamped {
                        let sent = stamp_of(&m.payload).ok_or_else(|| CliError::msg(format!(
                            "subscriber {i} received {} with a payload the bench did not send", m.id
                        )))?;
                        got.latency.record(got.elapsed.saturating_sub(sent));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::client_context(format!("subscriber {i} failed"), e)),
                None => return Err(CliError::msg(format!("subscriber {i}'s stream ended after {} events", got.events))),
            },
            changed = owed.changed(), if target.is_none() => {
                if changed.is_err() {
                    return Err(CliError::msg("the publishers stopped"));
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                return Err(CliError::msg(format!(
                    "subscriber {i} had {} of {} events at --max-time",
                    got.events,
                    owed_here.map_or("?".to_owned(), |n| n.to_string())
                )));
            }
        }
    }
}

/// Events subscriber `i` is owed out of events `0..total`: all of them on the dense
/// pattern; on its sparse subject (`sparse` = `Some(M)` subscribers) those numbered
/// `i mod M`.
fn owed_to(i: u64, total: u64, sparse: Option<u64>) -> u64 {
    match sparse {
        None => total,
        Some(m) => total / m + u64::from(i < total % m),
    }
}

/// Request `j` of a run publishing `total` stamped events, `batch` per request, event `e`
/// on `subject_of(e)`.
fn stamped_calls(
    subject_of: impl Fn(u64) -> String + Send + Sync + 'static,
    size: u64,
    batch: u64,
    total: u64,
    epoch: Instant,
) -> MakeCall {
    let pad = "x".repeat((size as usize).saturating_sub(STAMP_BYTES));
    Arc::new(move |j| {
        let stamp = format!("{:016x}", epoch.elapsed().as_nanos() as u64);
        let first = j.saturating_mul(batch);
        let events = batch.min(total.saturating_sub(first)).max(1);
        if batch == 1 {
            let call = Call {
                method: Method::POST,
                path: format!("/v1/events/{}", subject_of(first)),
                content_type: Some("text/plain"),
                body: Bytes::from(format!("{stamp}{pad}")),
            };
            return (call, 1, size);
        }
        let payload = format!("{stamp}{pad}");
        let body: String = (first..first + events)
            .map(|e| batch_line(&subject_of(e), &payload))
            .collect();
        let call = Call {
            method: Method::POST,
            path: "/v1/events".to_owned(),
            content_type: Some("application/x-ndjson"),
            body: Bytes::from(body),
        };
        (call, events, events * size)
    })
}

/// The send time at the start of a payload.
fn stamp_of(payload: &[u8]) -> Option<Duration> {
    let hex = std::str::from_utf8(payload.get(..STAMP_BYTES)?).ok()?;
    u64::from_str_radix(hex, 16).ok().map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_subscribers_are_owed_their_share() {
        assert_eq!(owed_to(3, 10, None), 10);
        let shares: Vec<u64> = (0..4).map(|i| owed_to(i, 10, Some(4))).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!(
            stamp_of(b"00000000000003e8xxxx"),
            Some(Duration::from_nanos(1000))
        );
        assert_eq!(stamp_of(b"short"), None);
    }
}
