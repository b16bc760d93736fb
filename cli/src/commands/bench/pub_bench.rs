//! `bus bench pub`: N connections publish events of a payload size, single (`--batch 1`)
//! or in batches, for a count or a duration, closed loop or open loop at `--rate`. Reports
//! events/s, payload MB/s, request latency percentiles and the broker's CPU per event; with
//! `--baseline` the same load against the baseline too, and bus as a ratio of it.

use std::sync::Arc;

use bus_broker::storage::FsyncPolicy;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use tokio::time::Instant;

use super::args::{Load, PubArgs};
use super::connection::{Call, Endpoint};
use super::histogram::round1;
use super::load::{MakeCall, Outcome, Plan, drive};
use super::progress::Progress;
use super::scrape::Scrape;
use super::target::Target;
use super::{Figures, info, whole};
use crate::error::CliError;

/// Runs `bus bench pub`.
pub async fn run(url: &str, args: PubArgs) -> Result<super::report::Report, CliError> {
    let target = Target::open(url, &args.common)?;
    let result = measure(&target, &args).await;
    target.close();
    result
}

async fn measure(target: &Target, args: &PubArgs) -> Result<super::report::Report, CliError> {
    let deadline = Instant::now() + args.common.max_time;
    let load = &args.load;
    let subject = format!("{}.pub", args.common.namespace);
    let make = publish_calls(&subject, load.size, load.batch, load.events());
    let plan = plan(load, deadline);
    let before = Scrape::read(&target.endpoint).await?;
    let bus = run_phase("bus", &target.endpoint, &plan, load, make.clone()).await?;
    let after = Scrape::read(&target.endpoint).await?;
    let mut results = Figures::new();
    outcome_figures(&mut results, &bus);
    results.cpu_per_event(&before, &after, bus.events, target);
    results.events_per_sync(&before, &after, &args.common.namespace, bus.events);
    if args.baseline {
        let mut server = super::baseline::start()?;
        let base = run_phase("baseline", &Endpoint::local(server.addr), &plan, load, make).await;
        server.stop();
        let base = base?;
        results.push("baseline_events_per_s", whole(base.events_per_s()));
        results.push("baseline_latency_us", base.latency.summary());
        if let Some(lag) = &base.send_lag {
            results.push("baseline_send_lag_us", lag.summary());
        }
        let ratio = if base.events_per_s() > 0.0 {
            bus.events_per_s() / base.events_per_s()
        } else {
            0.0
        };
        results.push(
            "ratio_to_baseline",
            json!((ratio * 1000.0).round() / 1000.0),
        );
    }
    if args.log_alone {
        log_alone_figures(&mut results, &bus, args, deadline).await?;
    }
    let params = vec![
        ("connections".to_owned(), json!(load.connections)),
        ("size".to_owned(), json!(load.size)),
        ("batch".to_owned(), json!(load.batch)),
        (
            "count".to_owned(),
            json!(
                load.count
                    .or(load.duration.is_none().then_some(load.events()))
            ),
        ),
        (
            "duration_s".to_owned(),
            json!(load.duration.map(|d| d.as_secs_f64())),
        ),
        ("rate".to_owned(), json!(load.rate)),
        (
            "loop".to_owned(),
            json!(if load.rate.is_some() {
                "open"
            } else {
                "closed"
            }),
        ),
    ];
    Ok(super::report::Report {
        mode: "pub",
        info: info(target, &after),
        params,
        results: results.into_vec(),
    })
}

/// Runs the log alone with the same load, then the disk's fdatasync rate, and adds them
/// and bus's ratio to the log alone.
async fn log_alone_figures(
    results: &mut Figures,
    bus: &Outcome,
    args: &PubArgs,
    deadline: Instant,
) -> Result<(), CliError> {
    let fsync = args.common.fsync.unwrap_or(FsyncPolicy::Always);
    let load = args.load.clone();
    let deadline = deadline.into_std();
    let progress = Progress::new("log alone", None);
    let alone = tokio::task::spawn_blocking(move || {
        let alone = super::log_alone::run(fsync, &load, deadline)?;
        let syncs = super::log_alone::disk_syncs_per_s()?;
        Ok::<_, CliError>((alone, syncs))
    })
    .await
    .map_err(|e| CliError::msg(format!("the log-alone run failed: {e}")));
    progress.finish();
    let (alone, syncs) = alone??;
    results.push("log_alone_events", json!(alone.events));
    results.push("log_alone_events_per_s", whole(alone.events_per_s));
    results.push(
        "log_alone_events_per_fdatasync",
        json!(round1(alone.events_per_sync)),
    );
    let ratio = if alone.events_per_s > 0.0 {
        bus.events_per_s() / alone.events_per_s
    } else {
        0.0
    };
    results.push(
        "ratio_to_log_alone",
        json!((ratio * 1000.0).round() / 1000.0),
    );
    results.push("disk_fdatasync_per_s", whole(syncs));
    Ok(())
}

/// The load plan of `load`: requests enough for its events, the rate in requests per
/// second.
pub fn plan(load: &Load, deadline: Instant) -> Plan {
    let events = load.events();
    Plan {
        connections: load.connections,
        requests: events.div_ceil(load.batch),
        duration: load.duration,
        rate: load.rate.map(|r| r / load.batch as f64),
        deadline,
    }
}

/// Runs one phase with its progress bar.
async fn run_phase(
    phase: &str,
    endpoint: &Endpoint,
    plan: &Plan,
    load: &Load,
    make: MakeCall,
) -> Result<Outcome, CliError> {
    let total = load.duration.is_none().then(|| load.events());
    let progress = Progress::new(phase, total);
    let outcome = drive(endpoint, plan, make, &progress).await;
    progress.finish();
    outcome
}

/// Events, requests, time, rates and latency of a load run.
pub fn outcome_figures(results: &mut Figures, o: &Outcome) {
    results.push("events", json!(o.events));
    results.push("requests", json!(o.requests));
    results.push(
        "elapsed_s",
        json!((o.elapsed.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    results.push("events_per_s", whole(o.events_per_s()));
    let mb = o.payload_bytes as f64 / 1e6;
    results.push(
        "mb_per_s",
        json!(round1(mb / o.elapsed.as_secs_f64().max(1e-9))),
    );
    results.push("latency_us", o.latency.summary());
    if let Some(lag) = &o.send_lag {
        results.push("send_lag_us", lag.summary());
    }
}

/// A payload of `size` bytes (`x`s).
pub fn payload(size: u64) -> Bytes {
    Bytes::from(vec![b'x'; size as usize])
}

/// The NDJSON batch line of one event with a text payload.
pub fn batch_line(subject: &str, payload: &str) -> String {
    let item = json!({"subject": subject, "payload": payload});
    format!("{item}\n")
}

/// Request `j` of a run publishing `total` events on `subject`, `batch` per request.
pub fn publish_calls(subject: &str, size: u64, batch: u64, total: u64) -> MakeCall {
    let body = payload(size);
    if batch == 1 {
        let path = format!("/v1/events/{subject}");
        return Arc::new(move |_| {
            let call = Call {
                method: Method::POST,
                path: path.clone(),
                content_type: Some("application/octet-stream"),
                body: body.clone(),
            };
            (call, 1, size)
        });
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let line = batch_line(subject, &text);
    let full = Bytes::from(line.repeat(batch as usize));
    let line = Bytes::from(line);
    Arc::new(move |j| {
        let events = batch
            .min(total.saturating_sub(j.saturating_mul(batch)))
            .max(1);
        let body = if events == batch {
            full.clone()
        } else {
            Bytes::from(line.repeat(events as usize))
        };
        let call = Call {
            method: Method::POST,
            path: "/v1/events".to_owned(),
            content_type: Some("application/x-ndjson"),
            body,
        };
        (call, events, events * size)
    })
}
