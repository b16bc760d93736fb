//! The command line of `bus bench`: its modes and their flags, and the checks clap cannot
//! express (ranges, flags that exclude each other), done once before anything runs.

use std::net::SocketAddr;
use std::time::Duration;

use bus_broker::storage::FsyncPolicy;
use clap::{Args, Subcommand, ValueEnum};

use crate::args::{parse_duration_arg, parse_fsync, parse_size_arg};
use crate::error::CliError;

/// Most connections, subscribers, callers or responders one mode opens.
pub const MAX_CLIENTS: usize = 10_000;
/// Most events in one publish request: the broker's batch limit.
pub const MAX_BATCH_EVENTS: u64 = 10_000;
/// Largest payload: the broker's default payload limit.
pub const MAX_PAYLOAD_BYTES: u64 = 1024 * 1024;

/// `bus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// The modes of `bus bench`.
#[derive(Subcommand, Debug)]
pub enum BenchMode {
    /// Publishing: events/s, MB/s and publish latency.
    Pub(PubArgs),
    /// Delivery over SSE to M subscribers while publishers run, or catching up.
    Sub(SubArgs),
    /// Manual-ack consumers (one, or a group) draining a filled namespace.
    Ack(AckArgs),
    /// Request/reply: C callers against R responders.
    Req(ReqArgs),
    /// Serve the baseline (the broker's HTTP stack answering a receipt, doing nothing else)
    /// until SIGINT or SIGTERM, for load generators other than `bus bench`.
    #[command(hide = true)]
    Baseline(BaselineArgs),
}

/// Flags every measuring mode takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Start a broker in this process, on a temporary directory, instead of using --url.
    #[arg(long)]
    pub embedded: bool,

    /// The fsync policy of the --embedded broker: always, interval:<ms> or never.
    #[arg(long, value_parser = parse_fsync, value_name = "POLICY")]
    pub fsync: Option<FsyncPolicy>,

    /// Print the figures as CSV (a header line and one row) instead of a table.
    #[arg(long)]
    pub csv: bool,

    /// The namespace the bench publishes in (its subjects are `<namespace>.<mode>...`).
    #[arg(long, default_value = "bench", value_name = "NAME")]
    pub namespace: String,

    /// Stop with an error when the run (filling included) takes longer than this.
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub max_time: Duration,
}

/// How publishers load the broker.
#[derive(Args, Debug, Clone)]
pub struct Load {
    /// Publishers: connections, each sending one request at a time.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    pub connections: usize,

    /// Payload size of each event.
    #[arg(short = 's', long, default_value = "128", value_parser = parse_size_arg, value_name = "SIZE")]
    pub size: u64,

    /// Events per request: 1 publishes single events, more publishes batches.
    #[arg(short = 'b', long, default_value_t = 1, value_name = "N")]
    pub batch: u64,

    /// Events to publish in all (default 10000 unless --duration is given).
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    pub count: Option<u64>,

    /// Publish for this long instead of a count.
    #[arg(short = 'd', long, value_parser = parse_duration_arg, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Open loop: send at this many events per second in all, each latency measured from
    /// the time its request was due (free of coordinated omission); `send_lag_us` is the part
    /// of it before the request was sent. Default: closed loop,
    /// each connection sending its next request once the last is answered.
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub rate: Option<f64>,
}

/// Events published when neither `--count` nor `--duration` is given.
pub const DEFAULT_COUNT: u64 = 10_000;

impl Load {
    /// The events to publish: `--count`, or [`DEFAULT_COUNT`], or unbounded under
    /// `--duration` (time bounds it then).
    pub fn events(&self) -> u64 {
        match (self.count, self.duration) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => DEFAULT_COUNT,
        }
    }

    fn check(&self) -> Result<(), CliError> {
        in_range(
            "--connections",
            self.connections as u64,
            1,
            MAX_CLIENTS as u64,
        )?;
        in_range("--batch", self.batch, 1, MAX_BATCH_EVENTS)?;
        in_range("--size", self.size, 0, MAX_PAYLOAD_BYTES)?;
        if let Some(n) = self.count {
            in_range("--count", n, 1, u64::MAX)?;
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(CliError::msg("--duration must be longer than 0"));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(CliError::msg(format!(
                "--rate must be a positive number of events per second, got {r}"
            )));
        }
        Ok(())
    }
}

/// `bus bench pub`.
#[derive(Args, Debug)]
pub struct PubArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Run the same load against the baseline too (the broker's HTTP stack answering a
    /// receipt, doing no other work, served in this process) and report bus as a ratio.
    #[arg(long)]
    pub baseline: bool,
    /// With --embedded: make the same appends directly on the disk engine too (no HTTP),
    /// measure the disk's fdatasync rate, and report bus as a ratio of the log alone.
    #[arg(long)]
    pub log_alone: bool,
}

/// Who the subscribers of `bus bench sub` subscribe to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// All on one pattern: every subscriber receives every event.
    Dense,
    /// Each on its own subject: every event goes to one subscriber.
    Sparse,
}

/// Where the subscribers of `bus bench sub` start.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubFrom {
    /// Live: subscribe first, then publish.
    Newest,
    /// Catching up: publish everything first, then read it from the log.
    Oldest,
}

/// `bus bench sub`.
#[derive(Args, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Subscribers (SSE streams).
    #[arg(short = 'm', long, default_value_t = 1, value_name = "M")]
    pub subscribers: usize,
    /// dense (all on one pattern) or sparse (each on its own subject).
    #[arg(long, value_enum, default_value_t = Layout::Dense)]
    pub layout: Layout,
    /// newest (live, while publishers run) or oldest (catch-up from the log).
    #[arg(long, value_enum, default_value_t = SubFrom::Newest)]
    pub from: SubFrom,
}

/// `bus bench ack`.
#[derive(Args, Debug)]
pub struct AckArgs {
    #[command(flatten)]
    pub common: Common,
    /// Events to fill the namespace with, then consume and ack.
    #[arg(short = 'n', long, default_value_t = DEFAULT_COUNT, value_name = "N")]
    pub count: u64,
    /// Payload size of each event.
    #[arg(short = 's', long, default_value = "128", value_parser = parse_size_arg, value_name = "SIZE")]
    pub size: u64,
    /// Members of a queue group sharing the work; without it, one durable consumer.
    #[arg(long, value_name = "K")]
    pub group: Option<usize>,
}

/// `bus bench req`.
#[derive(Args, Debug)]
pub struct ReqArgs {
    #[command(flatten)]
    pub common: Common,
    /// Callers, each sending one request at a time.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "C")]
    pub callers: usize,
    /// Responders, in one queue group, each answering one request at a time.
    #[arg(short = 'r', long, default_value_t = 1, value_name = "R")]
    pub responders: usize,
    /// Payload size of each request (the reply echoes it).
    #[arg(short = 's', long, default_value = "128", value_parser = parse_size_arg, value_name = "SIZE")]
    pub size: u64,
    /// Requests in all (default 10000 unless --duration is given).
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Send requests for this long instead of a count.
    #[arg(short = 'd', long, value_parser = parse_duration_arg, value_name = "DURATION")]
    pub duration: Option<Duration>,
}

/// `bus bench baseline`.
#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:2022")]
    pub addr: SocketAddr,
}

impl Common {
    /// Checks what clap cannot; `json` is the global `--json`.
    pub fn check(&self, json: bool) -> Result<(), CliError> {
        if self.csv && json {
            return Err(CliError::msg("--csv and --json exclude each other"));
        }
        if self.fsync.is_some() && !self.embedded {
            return Err(CliError::msg(
                "--fsync sets the policy of an --embedded broker; a running broker keeps its own (bus server --fsync)",
            ));
        }
        if self.max_time.is_zero() {
            return Err(CliError::msg("--max-time must be longer than 0"));
        }
        if bus_broker::subject::is_reserved_namespace(&self.namespace) {
            return Err(CliError::msg(format!(
                "invalid --namespace {:?}: reserved for the broker",
                self.namespace
            )));
        }
        bus_broker::subject::validate_namespace(&self.namespace).map_err(|e| {
            CliError::with_cause(format!("invalid --namespace {:?}", self.namespace), e)
        })
    }
}

impl PubArgs {
    /// Checks the flags.
    pub fn check(&self, json: bool) -> Result<(), CliError> {
        self.common.check(json)?;
        if self.log_alone && !self.common.embedded {
            return Err(CliError::msg(
                "--log-alone compares with the disk engine of this machine: it needs --embedded",
            ));
        }
        self.load.check()
    }
}

impl SubArgs {
    /// Checks the flags.
    pub fn check(&self, json: bool) -> Result<(), CliError> {
        self.common.check(json)?;
        self.load.check()?;
        in_range(
            "--subscribers",
            self.subscribers as u64,
            1,
            MAX_CLIENTS as u64,
        )?;
        if self.from == SubFrom::Oldest
            && (self.load.duration.is_some() || self.load.rate.is_some())
        {
            return Err(CliError::msg(
                "--from oldest publishes --count events first; --duration and --rate apply to live runs",
            ));
        }
        if self.load.size < super::sub_bench::STAMP_BYTES as u64 {
            return Err(CliError::msg(format!(
                "bus bench sub needs --size of at least {} bytes (the payload carries its send time)",
                super::sub_bench::STAMP_BYTES
            )));
        }
        Ok(())
    }
}

impl AckArgs {
    /// Checks the flags.
    pub fn check(&self, json: bool) -> Result<(), CliError> {
        self.common.check(json)?;
        in_range("--count", self.count, 1, u64::MAX)?;
        in_range("--size", self.size, 0, MAX_PAYLOAD_BYTES)?;
        if let Some(k) = self.group {
            in_range("--group", k as u64, 1, MAX_CLIENTS as u64)?;
        }
        Ok(())
    }
}

impl ReqArgs {
    /// Checks the flags.
    pub fn check(&self, json: bool) -> Result<(), CliError> {
        self.common.check(json)?;
        in_range("--callers", self.callers as u64, 1, MAX_CLIENTS as u64)?;
        in_range(
            "--responders",
            self.responders as u64,
            1,
            MAX_CLIENTS as u64,
        )?;
        in_range("--size", self.size, 0, MAX_PAYLOAD_BYTES)?;
        if let Some(n) = self.count {
            in_range("--count", n, 1, u64::MAX)?;
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(CliError::msg("--duration must be longer than 0"));
        }
        Ok(())
    }

    /// The requests to send: `--count`, or [`DEFAULT_COUNT`], or unbounded under
    /// `--duration`.
    pub fn requests(&self) -> u64 {
        match (self.count, self.duration) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => DEFAULT_COUNT,
        }
    }
}

/// `Ok` when `min <= v <= max`, else an error naming the flag.
fn in_range(flag: &str, v: u64, min: u64, max: u64) -> Result<(), CliError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else if max == u64::MAX {
        Err(CliError::msg(format!(
            "{flag} must be at least {min}, got {v}"
        )))
    } else {
        Err(CliError::msg(format!(
            "{flag} must be between {min} and {max}, got {v}"
        )))
    }
}
