//! The command line: global flags, subcommands and their flags, and the parsers of their
//! values (sizes, durations, fsync policies, namespace overrides, headers, start positions).
//!
//! Every `bus server` flag can also come from a `BUS_*` environment variable; a flag given on
//! the command line wins. Lists from the environment are comma-separated, except
//! `BUS_NS_CONFIG`, whose entries hold commas and are separated by `;`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bus_broker::config::{DEFAULT_ADDR, DEFAULT_DATA_DIR, NamespaceOverride};
use bus_broker::storage::FsyncPolicy;
use bus_broker::units::{parse_duration, parse_size};
use bus_client::Start;
use clap::{Args, Parser, Subcommand};

/// Default broker URL of the client commands.
pub const DEFAULT_URL: &str = "http://127.0.0.1:2021";

/// The `bus` command.
#[derive(Parser, Debug)]
#[command(
    name = "bus",
    version,
    about = "A persistent, subject-routed event broker",
    after_help = "Exit status: 0 ok, 1 a negative result, 2 an error, 3 no responders, 4 timeout."
)]
pub struct Cli {
    /// The broker's URL.
    #[arg(long, global = true, env = "BUS_URL", default_value = DEFAULT_URL)]
    pub url: String,

    /// Print results as JSON on stdout (one value per line).
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker.
    Server(ServerArgs),
    /// Publish one event.
    Put(PutArgs),
    /// Read events: from the log, then live.
    Get(GetArgs),
    /// List namespaces and their figures.
    Ns(NsArgs),
}

/// `bus server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "BUS_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Data directory.
    #[arg(long, env = "BUS_DATA", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,

    /// The only namespaces that may exist (comma-separated); default: any, created on first
    /// publish.
    #[arg(
        long,
        env = "BUS_NAMESPACES",
        value_delimiter = ',',
        value_name = "NAME,..."
    )]
    pub namespaces: Option<Vec<String>>,

    /// When a publish counts as durable: always, interval:<ms> or never.
    #[arg(long, env = "BUS_FSYNC", default_value = "always", value_parser = parse_fsync, value_name = "POLICY")]
    pub fsync: FsyncPolicy,

    /// Largest payload accepted (65536, 64KiB, 1MiB).
    #[arg(long, env = "BUS_MAX_PAYLOAD", default_value = "1MiB", value_parser = parse_size_arg, value_name = "SIZE")]
    pub max_payload: u64,

    /// Size at which a namespace's log rolls to a new segment file.
    #[arg(long, env = "BUS_SEGMENT_SIZE", default_value = "64MiB", value_parser = parse_size_arg, value_name = "SIZE")]
    pub segment_size: u64,

    /// Delete segments whose newest event is older than this (30s, 12h, 7d); default: keep.
    #[arg(long, env = "BUS_RETENTION_AGE", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub retention_age: Option<Duration>,

    /// Keep at most about this many bytes per namespace; default: no limit.
    #[arg(long, env = "BUS_RETENTION_BYTES", value_parser = parse_size_arg, value_name = "SIZE")]
    pub retention_bytes: Option<u64>,

    /// Keep at most about this many events per namespace; default: no limit.
    #[arg(long, env = "BUS_RETENTION_EVENTS", value_name = "COUNT")]
    pub retention_events: Option<u64>,

    /// A repeated dedup id (Bus-Msg-Id) within this window stores nothing.
    #[arg(long, env = "BUS_DEDUP_WINDOW", default_value = "2m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub dedup_window: Duration,

    /// An origin allowed by CORS, `*` for any (repeatable); default: no CORS headers.
    #[arg(
        long = "cors-origin",
        env = "BUS_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,

    /// Log level or filter (error, warn, info, debug, trace; or `bus_broker=debug,info`).
    #[arg(
        long,
        env = "BUS_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,

    /// Most open connections; past it new connections wait.
    #[arg(long, env = "BUS_MAX_CONNECTIONS", default_value_t = bus_broker::config::DEFAULT_MAX_CONNECTIONS, value_name = "COUNT")]
    pub max_connections: usize,

    /// Most namespaces; creating one more is refused (403 namespace_limit).
    #[arg(long, env = "BUS_MAX_NAMESPACES", default_value_t = bus_broker::config::DEFAULT_MAX_NAMESPACES, value_name = "COUNT")]
    pub max_namespaces: usize,

    /// Settings of one namespace, NAME:key=value,... with keys fsync, retention-age,
    /// retention-bytes, retention-events (repeatable; `;`-separated in BUS_NS_CONFIG).
    /// Kept in the data directory for later starts.
    #[arg(long = "ns-config", env = "BUS_NS_CONFIG", value_delimiter = ';', value_parser = parse_ns_config, value_name = "NAME:SETTINGS")]
    pub ns_config: Vec<(String, NamespaceOverride)>,
}

/// `bus put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The subject to publish on (`user.created`).
    pub subject: String,

    /// The payload; read from stdin when absent or `-`.
    pub payload: Option<String>,

    /// An event header, name=value (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header, value_name = "NAME=VALUE")]
    pub headers: Vec<(String, String)>,

    /// Dedup id: a repeat within the broker's dedup window stores nothing.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Content type of the payload; default: application/json when it parses as JSON,
    /// text/plain; charset=utf-8 when it is other UTF-8 text, else application/octet-stream.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,

    /// The event's reply subject.
    #[arg(long, value_name = "SUBJECT")]
    pub reply_to: Option<String>,
}

/// `bus get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The pattern to read (`user.*`, `user.>`, `>`).
    pub pattern: String,

    /// Where to start: oldest, newest, an event id or cursor, or an RFC 3339 time.
    #[arg(long, default_value = "newest", value_parser = parse_start, value_name = "START")]
    pub from: Start,

    /// Exit after exactly this many events; 0 follows the stream until the broker stops.
    #[arg(short = 'n', long, default_value_t = 0, value_name = "N")]
    pub count: u64,
}

/// `bus ns`.
#[derive(Args, Debug)]
pub struct NsArgs {}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    s.parse()
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn parse_start(s: &str) -> Result<Start, String> {
    s.parse()
        .map_err(|e: bus_client::StartParseError| e.to_string())
}

/// `NAME:key=value,...`.
fn parse_ns_config(s: &str) -> Result<(String, NamespaceOverride), String> {
    let (name, spec) = s
        .split_once(':')
        .ok_or_else(|| format!("expected NAME:key=value,..., got {s:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("no namespace name in {s:?}"));
    }
    let o = NamespaceOverride::parse(spec)?;
    Ok((name.to_owned(), o))
}

/// `name=value`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected name=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bus").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        for args in [
            &["--url", "http://h:1", "--json", "ns"][..],
            &["ns", "--url", "http://h:1", "--json"],
            &["--json", "ns", "--url", "http://h:1"],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.url, "http://h:1", "{args:?}");
            assert!(cli.json, "{args:?}");
            assert!(matches!(cli.command, Command::Ns(_)));
        }
        let cli = parse(&["get", "user.>", "--count", "3", "--json"]).unwrap();
        assert!(cli.json);
        let Command::Get(g) = cli.command else {
            panic!("not get")
        };
        assert_eq!(
            (g.pattern.as_str(), g.count, g.from),
            ("user.>", 3, Start::Newest)
        );
    }

    #[test]
    fn server_defaults_are_the_documented_ones() {
        let cli = parse(&["server"]).unwrap();
        let Command::Server(s) = cli.command else {
            panic!("not server")
        };
        // These hold unless the environment sets BUS_* variables, which the test run does not.
        assert_eq!(s.addr, DEFAULT_ADDR.parse().unwrap());
        assert_eq!(s.data, PathBuf::from("./bus-data"));
        assert_eq!(s.fsync, FsyncPolicy::Always);
        assert_eq!(s.max_payload, 1 << 20);
        assert_eq!(s.segment_size, 64 << 20);
        assert_eq!(s.dedup_window, Duration::from_secs(120));
        assert_eq!(s.max_connections, 10_000);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.namespaces, None);
        assert!(s.cors_origins.is_empty() && s.ns_config.is_empty());
        assert_eq!(
            (s.retention_age, s.retention_bytes, s.retention_events),
            (None, None, None)
        );
    }

    #[test]
    fn parses_server_flags() {
        let cli = parse(&[
            "server",
            "--addr",
            "0.0.0.0:9000",
            "--namespaces",
            "user,rpc",
            "--fsync",
            "interval:5",
            "--max-payload",
            "64KiB",
            "--retention-age",
            "7d",
            "--retention-bytes",
            "10GiB",
            "--retention-events",
            "1000",
            "--cors-origin",
            "http://a",
            "--cors-origin",
            "http://b",
            "--ns-config",
            "rpc:fsync=never,retention-age=1h",
            "--ns-config",
            "user:retention-events=5",
        ])
        .unwrap();
        let Command::Server(s) = cli.command else {
            panic!("not server")
        };
        assert_eq!(s.addr.port(), 9000);
        assert_eq!(s.namespaces, Some(vec!["user".into(), "rpc".into()]));
        assert_eq!(s.fsync, FsyncPolicy::Interval(Duration::from_millis(5)));
        assert_eq!(s.max_payload, 65536);
        assert_eq!(s.retention_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(s.retention_bytes, Some(10 << 30));
        assert_eq!(s.retention_events, Some(1000));
        assert_eq!(s.cors_origins, ["http://a", "http://b"]);
        assert_eq!(s.ns_config.len(), 2);
        assert_eq!(s.ns_config[0].0, "rpc");
        assert_eq!(s.ns_config[0].1.fsync.as_deref(), Some("never"));
        assert_eq!(s.ns_config[1].1.retention_events, Some(5));
    }

    #[test]
    fn refuses_bad_values() {
        for args in [
            &["server", "--fsync", "sometimes"][..],
            &["server", "--max-payload", "1XB"],
            &["server", "--retention-age", "5"],
            &["server", "--ns-config", "rpc"],
            &["server", "--ns-config", ":fsync=never"],
            &["server", "--ns-config", "rpc:colour=blue"],
            &["server", "--addr", "nowhere"],
            &["put", "a.b", "x", "-H", "novalue"],
            &["get", "a", "--from", ""],
            &["get", "a", "--count", "-1"],
            &["get"],
            &["frobnicate"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn parses_put_and_get() {
        let cli = parse(&[
            "put",
            "a.b",
            "-H",
            "trace=abc",
            "-H",
            "x=1=2",
            "--id",
            "m-1",
            "--content-type",
            "text/csv",
        ])
        .unwrap();
        let Command::Put(p) = cli.command else {
            panic!("not put")
        };
        assert_eq!(p.payload, None);
        assert_eq!(
            p.headers,
            [("trace".into(), "abc".into()), ("x".into(), "1=2".into())]
        );
        assert_eq!(p.id.as_deref(), Some("m-1"));
        assert_eq!(p.content_type.as_deref(), Some("text/csv"));
        for (from, want) in [
            ("oldest", Start::Oldest),
            ("user-3-abc", Start::Cursor("user-3-abc".into())),
            ("1970-01-01T00:00:01Z", Start::Time(1_000_000_000)),
        ] {
            let cli = parse(&["get", "a.>", "--from", from]).unwrap();
            let Command::Get(g) = cli.command else {
                panic!("not get")
            };
            assert_eq!(g.from, want);
        }
    }
}
