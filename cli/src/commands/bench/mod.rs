//! `bus bench`: load a broker and report its figures, like `nats bench`.
//!
//! Modes, one file each: [`pub_bench`] (publishing, and the [`baseline`] and the
//! [`log_alone`] beside it),
//! [`sub_bench`] (SSE delivery, live or catching up), [`ack_bench`] (manual-ack consumers
//! draining a filled namespace), [`req_bench`] (request/reply). The parts they share:
//! [`args`] (flags), [`target`] (the broker at `--url`, or `--embedded` in this process on
//! [`server_thread`]), [`connection`] and [`load`] (the load generator: N HTTP/1.1
//! connections, closed or open loop, the open loop timed by [`pacer`]), [`histogram`]
//! (latency percentiles), [`scrape`] (the broker's `/metrics`: version, fsync policy, CPU),
//! [`progress`] (the bar on stderr) and [`report`] (table, `--json`, `--csv`).
//!
//! Every phase is bounded in count and in time (`--max-time`, and a timeout per request),
//! so a bench ends even against a broker that stopped answering.

pub mod ack_bench;
pub mod args;
pub mod baseline;
pub mod connection;
pub mod histogram;
pub mod load;
pub mod log_alone;
pub mod pacer;
pub mod progress;
pub mod pub_bench;
pub mod report;
pub mod req_bench;
pub mod scrape;
pub mod server_thread;
pub mod sub_bench;
pub mod target;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use self::args::{BenchArgs, BenchMode};
use self::report::{Format, Info};
use self::scrape::Scrape;
use self::target::Target;
use crate::error::CliError;

/// Runs `bus bench`; `json` is the global `--json`.
pub async fn run(url: &str, json: bool, args: BenchArgs) -> Result<(), CliError> {
    let (report, csv) = match args.mode {
        BenchMode::Pub(a) => {
            a.check(json)?;
            let csv = a.common.csv;
            (pub_bench::run(url, a).await?, csv)
        }
        BenchMode::Sub(a) => {
            a.check(json)?;
            let csv = a.common.csv;
            (sub_bench::run(url, a).await?, csv)
        }
        BenchMode::Ack(a) => {
            a.check(json)?;
            let csv = a.common.csv;
            (ack_bench::run(url, a).await?, csv)
        }
        BenchMode::Req(a) => {
            a.check(json)?;
            let csv = a.common.csv;
            (req_bench::run(url, a).await?, csv)
        }
        BenchMode::Baseline(a) => return baseline::serve_until_signal(a).await,
    };
    let format = match (json, csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Table,
    };
    report.print(format)
}

/// What the figures were measured on: this machine, and the broker's `bus_info`.
pub fn info(target: &Target, scrape: &Scrape) -> Info {
    Info {
        version: env!("CARGO_PKG_VERSION"),
        broker_version: scrape.info("version"),
        fsync: scrape.info("fsync"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        target: target.name.clone(),
    }
}

/// A name no earlier run used (consumers, groups): `prefix-<hex nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{ns:x}")
}

/// A rate as a whole number.
pub fn whole(x: f64) -> Value {
    json!(x.max(0.0).round() as u64)
}

/// A report's figures, in the order they are pushed.
#[derive(Debug, Default)]
pub struct Figures(Vec<(String, Value)>);

impl Figures {
    /// No figures yet.
    pub fn new() -> Figures {
        Figures::default()
    }

    /// Adds a figure.
    pub fn push(&mut self, name: &str, value: Value) {
        self.0.push((name.to_owned(), value));
    }

    /// The broker's CPU time per event between two scrapes, in microseconds, when it
    /// reports `process_cpu_seconds_total`. With `--embedded` the process is the bench's
    /// too, so the figure includes the load generator (`cpu_includes_bench`).
    pub fn cpu_per_event(&mut self, before: &Scrape, after: &Scrape, events: u64, target: &Target) {
        if let (Some(a), Some(b)) = (before.cpu_seconds(), after.cpu_seconds())
            && events > 0
        {
            let us = (b - a).max(0.0) * 1e6 / events as f64;
            self.push(
                "broker_cpu_us_per_event",
                json!((us * 100.0).round() / 100.0),
            );
            self.push("cpu_includes_bench", json!(target.is_embedded()));
        }
    }

    /// The broker's events per `fdatasync` in `namespace` over a run that appended `events`,
    /// from `bus_fsync_total` (a namespace created by the run has no sample before it). Absent
    /// when the broker synced nothing, e.g. under `never`.
    pub fn events_per_sync(
        &mut self,
        before: &Scrape,
        after: &Scrape,
        namespace: &str,
        events: u64,
    ) {
        let name = format!("bus_fsync_total{{namespace=\"{namespace}\"}}");
        let synced = after.value(&name).unwrap_or(0.0) - before.value(&name).unwrap_or(0.0);
        if synced >= 1.0 {
            let per = events as f64 / synced;
            self.push("events_per_fdatasync", json!((per * 10.0).round() / 10.0));
        }
    }

    /// The figures.
    pub fn into_vec(self) -> Vec<(String, Value)> {
        self.0
    }
}
