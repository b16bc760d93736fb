//! `bus bench req`: C callers send requests (each one at a time, closed loop) to R
//! responders in one queue group, each answering one request at a time with its payload.
//! Reports requests/s and round-trip latency percentiles.
//!
//! The responders attach before the first request (their subscriptions are confirmed), and
//! their group has a name of its own, deleted at the end.
//!
//! Bound: `--count` requests or `--duration`, and `--max-time`; each request waits at most
//! [`REQUEST_TIMEOUT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bus_client::{
    AckMode, ApiError, Client, ErrorCode, StreamItem, SubscribeOptions, Subscription,
};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::args::ReqArgs;
use super::histogram::Latency;
use super::load::per_s;
use super::progress::Progress;
use super::pub_bench::payload;
use super::report::Report;
use super::scrape::Scrape;
use super::target::Target;
use super::{Figures, info, unique, whole};
use crate::error::CliError;

/// Longest one request waits for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `bus bench req`.
pub async fn run(url: &str, args: ReqArgs) -> Result<Report, CliError> {
    let target = Target::open(url, &args.common)?;
    let result = measure(&target, &args).await;
    target.close();
    result
}

async fn measure(target: &Target, args: &ReqArgs) -> Result<Report, CliError> {
    let deadline = Instant::now() + args.common.max_time;
    let client = super::super::options()?
        .connect(&target.url())
        .await
        .map_err(CliError::client)?;
    let subject = format!("{}.req", args.common.namespace);
    let group = unique("bench-req");
    let mut responders = JoinSet::new();
    for i in 0..args.responders {
        let options = SubscribeOptions::new()
            .group(group.clone())
            .ack(AckMode::Manual);
        let sub = client
            .subscribe_with(&subject, options)
            .await
            .map_err(|e| CliError::client_context(format!("responder {i} cannot attach"), e))?;
        responders.spawn(respond(i, sub, client.clone()));
    }
    let before = Scrape::read(&target.endpoint).await?;
    let requests = args.requests();
    let progress = Progress::new("request", args.duration.is_none().then_some(requests));
    let start = Instant::now();
    let stop = match args.duration {
        Some(d) => (start + d).min(deadline),
        None => deadline,
    };
    let next = Arc::new(AtomicU64::new(0));
    let body = payload(args.size);
    let mut callers = JoinSet::new();
    for _ in 0..args.callers {
        callers.spawn(call(
            client.clone(),
            subject.clone(),
            body.clone(),
            requests,
            next.clone(),
            stop,
            progress.clone(),
        ));
    }
    let mut latency = Latency::new();
    let mut done = 0;
    let outcome: Result<(), CliError> = async {
        while let Some(r) = callers.join_next().await {
            let l = r.map_err(|e| CliError::with_cause("a caller task failed", e))??;
            done += l.count();
            latency.merge(&l);
        }
        Ok(())
    }
    .await;
    let elapsed = start.elapsed();
    progress.finish();
    // The responders wait for requests forever: stop them, then clean up.
    responders.abort_all();
    while let Some(r) = responders.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e);
        }
    }
    let _ = client.delete_consumer(&group).await;
    outcome?;
    if args.duration.is_none() && done < requests {
        return Err(CliError::msg(format!(
            "stopped at --max-time after {done} of {requests} requests"
        )));
    }
    let after = Scrape::read(&target.endpoint).await?;
    let mut results = Figures::new();
    results.push("requests", json!(done));
    results.push(
        "elapsed_s",
        json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    results.push("requests_per_s", whole(per_s(done, elapsed)));
    results.push("round_trip_us", latency.summary());
    results.cpu_per_event(&before, &after, done, target);
    let params = vec![
        ("callers".to_owned(), json!(args.callers)),
        ("responders".to_owned(), json!(args.responders)),
        ("size".to_owned(), json!(args.size)),
        (
            "count".to_owned(),
            json!(args.count.or(args.duration.is_none().then_some(requests))),
        ),
        (
            "duration_s".to_owned(),
            json!(args.duration.map(|d| d.as_secs_f64())),
        ),
    ];
    Ok(Report {
        mode: "req",
        info: info(target, &after),
        params,
        results: results.into_vec(),
    })
}

/// One caller: claims request numbers until `requests` or `stop`, timing each.
async fn call(
    client: Client,
    subject: String,
    body: Bytes,
    requests: u64,
    next: Arc<AtomicU64>,
    stop: Instant,
    progress: Progress,
) -> Result<Latency, CliError> {
    let mut latency = Latency::new();
    while Instant::now() < stop && next.fetch_add(1, Ordering::Relaxed) < requests {
        let sent = Instant::now();
        client
            .request(subject.clone(), body.clone())
            .timeout(REQUEST_TIMEOUT)
            .await?;
        latency.record(sent.elapsed());
        progress.inc(1);
    }
    Ok(latency)
}

/// One responder: answers each request with its payload, then acks it. Delivery is at least
/// once, so a request may come again after it was answered: the broker then refuses the reply
/// with `unknown_inbox` (nobody waits on the inbox), which is acked and passed over, as
/// `Client::serve` does.
async fn respond(i: usize, mut sub: Subscription, client: Client) -> Result<(), CliError> {
    while let Some(item) = sub.next().await {
        match item {
            Ok(StreamItem::Event(m)) => {
                if let Some(inbox) = &m.reply_to
                    && let Err(e) = client.reply(inbox.clone(), m.payload.clone()).await
                {
                    let code = e.api_error().and_then(ApiError::error_code);
                    if code != Some(ErrorCode::UnknownInbox) {
                        return Err(e.into());
                    }
                }
                m.ack().await.map_err(|e| {
                    CliError::client_context(format!("responder {i} cannot ack"), e)
                })?;
            }
            Ok(_) => {}
            Err(e) => return Err(CliError::client_context(format!("responder {i} failed"), e)),
        }
    }
    Err(CliError::msg(format!("responder {i}'s stream ended")))
}
