//! The command line: global flags, subcommands and their flags, and the parsers of their
//! values (headers, start positions).

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
    /// Publish one event.
    Put(PutArgs),
    /// Read events: from the log, then live.
    Get(GetArgs),
    /// List namespaces and their figures.
    Ns(NsArgs),
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

fn parse_start(s: &str) -> Result<Start, String> {
    s.parse()
        .map_err(|e: bus_client::StartParseError| e.to_string())
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
    fn refuses_bad_values() {
        for args in [
            &["put", "a.b", "x", "-H", "novalue"][..],
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
