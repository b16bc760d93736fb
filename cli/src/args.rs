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
use bus_proto::Start;
use bus_proto::units::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};

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

    /// PEM file of the certificate authorities to trust for an https:// broker, instead of
    /// the system's.
    #[arg(long, global = true, env = "BUS_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Bearer token (or JWT) sent to a broker started with --auth.
    #[arg(
        long,
        global = true,
        env = "BUS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
// Parsed once per process; the server's many flags make its variant the largest.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the broker.
    Server(ServerArgs),
    /// Publish one event.
    Put(PutArgs),
    /// Read events: from the log, then live; or as a member of a consumer, with acks.
    #[command(after_help = GET_HELP)]
    Get(GetArgs),
    /// List namespaces and their figures.
    Ns(NsArgs),
    /// Acknowledge events delivered by a consumer: done, never redelivered.
    #[command(
        after_help = "All ids go in one request. Acking an event that was already acked succeeds.\n\
                      Exit status 2 when any id failed (each is named on stderr)."
    )]
    Ack(AckArgs),
    /// Have events delivered by a consumer redelivered, now or after --delay.
    #[command(
        after_help = "All ids go in one request. Exit status 2 when any id failed (each is named \
                      on stderr)."
    )]
    Nack(NackArgs),
    /// List the consumers; show, change, move or delete one.
    Consumers(ConsumersArgs),
    /// Send a request and print the reply's payload.
    #[command(
        after_help = "Exit status: 0 replied, 1 the responder answered with an error reply, \
                      3 no responders (nothing stored), 4 no reply within --timeout."
    )]
    Req(ReqArgs),
    /// Answer requests from the shell: a long-lived responder in a queue group.
    #[command(
        after_help = "With --exec, CMD runs through `sh -c` once per request, the request \
                      payload on its stdin; its stdout is the reply. A non-zero exit becomes an \
                      error reply carrying the exit status and the first line of stderr.\n\
                      Responders with the same --group share the requests; each request is \
                      acked once answered, so one whose responder dies goes to another."
    )]
    Reply(ReplyArgs),
    /// Read a log offline: print its events, verify it, or repair it.
    ///
    /// PATH is a data directory, a namespace directory or a segment file.
    #[command(after_help = INSPECT_HELP)]
    Inspect(InspectArgs),
    /// Back up the events matching a pattern to stdout, as NDJSON.
    ///
    /// Every event up to the newest one when the dump started is written, then it exits.
    #[command(after_help = DUMP_HELP)]
    Dump(DumpArgs),
    /// Republish a dump made by `bus dump`, from stdin or FILE.
    ///
    /// Restoring the same dump twice stores each event once.
    #[command(after_help = RESTORE_HELP)]
    Restore(RestoreArgs),
    /// Move a data directory into NATS JetStream, keeping event ids and cursors.
    ///
    /// Each namespace becomes its stream starting at the same sequence, with the same ids,
    /// times, headers and dedup ids; consumers and their positions move to the state bucket.
    /// Stop the broker first; then run `bus server --storage` with the same URL.
    Migrate(MigrateArgs),
    /// Follow a live stream, for people.
    ///
    /// Subjects coloured, JSON payloads pretty-printed, times relative ("2s ago").
    Tail(TailArgs),
    /// Credentials for `bus server --auth FILE`.
    Auth(AuthArgs),
    /// Check that the broker answers `/healthz`: exit status 0 if it does, 2 if not.
    ///
    /// Needs no credential; meant for scripts and container health checks.
    Health,
    /// Measure a broker: publish, subscribe, consume+ack, request/reply.
    #[command(after_help = BENCH_HELP)]
    Bench(crate::commands::bench::args::BenchArgs),
}

const BENCH_HELP: &str = "Drives the broker at --url, or with --embedded one started in this \
process on a temporary directory (--fsync sets its policy). A progress bar shows on stderr \
while it runs; the summary (a table, --json or --csv) names the broker's fsync policy, this \
machine's cores and the bus version.\n\
Example: bus bench pub --embedded --fsync never -c 64 -n 200000 --baseline";

/// `bus auth`.
#[derive(Args, Debug)]
pub struct AuthArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AuthAction,
}

/// The `bus auth` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthAction {
    /// Generate a bearer token for principal NAME: prints the token (give it to the client)
    /// and the auth-file entry holding its SHA-256 (add it to the file, then SIGHUP the
    /// broker).
    Token {
        /// The principal's name.
        name: String,
    },
    /// Show who the broker takes the --token (or BUS_TOKEN) for, and its rights.
    Whoami,
}

/// `bus get --help`, after the flags.
const GET_HELP: &str = "\
Without --count, bus get follows the stream until SIGINT or SIGTERM (exit status 0), through
broker restarts: after a crash it reconnects, after a graceful shutdown it subscribes again
once the broker is back, resuming after the last event it printed (a consumer member
attaches to its consumer again).

Reading never changes a consumer: --ack-wait, --max-deliver, --backoff and --max-in-flight
apply only when this stream creates the consumer; `bus consumers set` changes them.

With --exec CMD, one command runs at a time, in order. Its stdout is copied to ours when it
exits (at most 16 MiB; more counts as a failure), its stderr goes to ours. BUS_SUBJECT and
BUS_EVENT_ID are set for it. A command that exits non-zero or runs past --exec-timeout
(killed) is a failure, named on stderr; a member nacks the event, so it is redelivered
(up to the consumer's --max-deliver). Failures do not change the exit status.";

/// `bus inspect --help`, after the flags.
const INSPECT_HELP: &str = "\
Read only, without the data directory's lock: safe while a broker runs on it. Files that are
not segments (<20 digits>.log) are ignored; indexes and checkpoints are not read (the broker
rebuilds or ignores damaged ones). A data directory also covers .state when verifying.

--verify checks every segment header and every record (length, CRC-32, fields, sequence),
that each sealed segment holds exactly its sequences, and tells a torn tail of the newest
segment (a write cut short, or zeroed pre-allocated space: the end of the log, cut by the
broker at start) from damage (a valid record after the bad one, or any bad byte in a sealed
segment), as the broker's recovery does.

--repair needs a stopped broker: it takes the data directory's lock and fails when a broker
holds it. In each damaged namespace it keeps every record that still verifies, with its
sequence: each damaged segment is rewritten (format version 2, which allows holes) and its
original bytes are kept in <namespace>/quarantine/; no later segment is deleted. It reports
exactly which sequences were lost, as ranges; readers then get them as a gap with the reason
`damaged`, and no sequence is ever handed out again. A bus older than this one (which reads
only format version 1) refuses a repaired namespace, naming the version.

Exit status: 0 healthy (or repaired), 1 damage found (each damaged namespace is named on
stdout, the first damage on stderr: file, offset and sequence), 2 an error (unreadable
path, not a log, broker running during --repair).";

/// `bus dump --help`, after the flags.
const DUMP_HELP: &str = "\
File format: one event per line in the event JSON of the API (proto-docs/http-api.md), as
`bus get --json` prints it: id, subject, namespace, sequence, time, headers, reply_to,
msg_id (the publisher's dedup id, when it gave one), content_type, payload (JSON embedded,
else a string, else base64 with \"encoding\":\"base64\").

The dump pulls pages until it has every matching event up to the newest one of each
namespace when it started, then exits; later events are left out.

Not kept: the exact line breaks of JSON payloads (the event JSON turns them into spaces).
Ids, sequences and times are given anew by the broker restored to.

--json changes nothing: the output is JSON already. Counts and gap notices go to stderr.
Exit status: 0 done, 2 an error.";

/// `bus restore --help`, after the flags.
const RESTORE_HELP: &str = "\
Events are republished in batches (one namespace per batch, atomic), with their subject,
headers, payload bytes, content type and reply subject. Each event's dedup id is its \"msg_id\"
when the line has one, else its original event id, so restoring a dump twice stores
nothing the second time, within the broker's dedup window (bus server --dedup-window,
default 2m). An event without a content type is published on its own, since a batch item
always gets one.

Prints how many events were stored and how many were duplicates. Exit status 2 at the first
line that is not an event or the first publish that fails; what came before it is stored.";

/// `bus req`.
#[derive(Args, Debug)]
pub struct ReqArgs {
    /// The subject to send the request on (`rpc.user.get`).
    pub subject: String,

    /// The payload; read from stdin when `-`; empty when absent.
    pub payload: Option<String>,

    /// An event header of the request, name=value (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header, value_name = "NAME=VALUE")]
    pub headers: Vec<(String, String)>,

    /// Content type of the payload; default as for `bus put`.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,

    /// How long to wait for the reply (1ms to 5m).
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `bus reply`.
#[derive(Args, Debug)]
pub struct ReplyArgs {
    /// The pattern of the requests to answer (`rpc.user.get`, `rpc.>`).
    pub pattern: String,

    /// Answer each request with CMD's stdout (run through `sh -c`, the payload on stdin).
    #[arg(
        long,
        value_name = "CMD",
        conflicts_with = "echo",
        required_unless_present = "echo"
    )]
    pub exec: Option<String>,

    /// Answer each request with its own payload.
    #[arg(long)]
    pub echo: bool,

    /// The queue group to answer in; default: the pattern itself.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,

    /// Most requests handled at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N")]
    pub concurrency: u32,

    /// How long a request may take before it goes to another responder (the ack wait); an
    /// --exec command still running after 4/5 of it is killed and answered with an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub ack_wait: Duration,

    /// Exit after answering this many requests; 0 answers until the broker stops.
    #[arg(short = 'n', long, default_value_t = 0, value_name = "N")]
    pub count: u64,
}

/// `bus inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A data directory, a namespace directory or one segment file.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Check every checksum and report per namespace instead of printing events.
    #[arg(long)]
    pub verify: bool,

    /// Cut each damaged namespace at its first damage (the broker must be stopped).
    #[arg(long)]
    pub repair: bool,

    /// Print from this sequence on (in each namespace).
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with_all = ["verify", "repair"])]
    pub from: Option<u64>,

    /// Print at most this many events (in each namespace).
    #[arg(short = 'n', long, value_name = "N", conflicts_with_all = ["verify", "repair"])]
    pub count: Option<u64>,
}

/// `bus dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The pattern to back up (`user.>`, `>`).
    pub pattern: String,

    /// Where to start: oldest, an event id or cursor, or an RFC 3339 time.
    #[arg(long, default_value = "oldest", value_parser = parse_start, value_name = "START")]
    pub from: Start,
}

/// `bus restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The dump to read; stdin when absent or `-`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `bus tail`.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// The pattern to follow (`user.*`, `user.>`, `>`).
    pub pattern: String,

    /// Where to start: newest (only what comes next), oldest, an event id or cursor, or an
    /// RFC 3339 time.
    #[arg(long, default_value = "newest", value_parser = parse_start, value_name = "START")]
    pub from: Start,

    /// Exit after this many events; 0 follows the stream until the broker stops.
    #[arg(short = 'n', long, default_value_t = 0, value_name = "N")]
    pub count: u64,
}

/// `bus server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Not a server flag: the global `--url`, hidden from `bus server --help` (an argument
    /// of the same id keeps clap from listing the global one here); given on the command
    /// line, `main` refuses it.
    #[arg(long, hide = true)]
    pub url: Option<String>,

    /// Not a server flag: the global `--json`, hidden and refused as `url` is.
    #[arg(long, hide = true)]
    pub json: bool,

    /// Not a server flag: the global `--cacert`, hidden and refused as `url` is.
    #[arg(long, hide = true)]
    pub cacert: Option<PathBuf>,

    /// Not a server flag: the global `--token`, hidden and refused as `url` is.
    #[arg(long, hide = true)]
    pub token: Option<String>,

    /// Principals, credentials and permissions (YAML; proto-docs/security.md); every
    /// request must then authenticate. Reloaded on SIGHUP.
    #[arg(long, env = "BUS_AUTH", value_name = "FILE")]
    pub auth: Option<PathBuf>,

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

    /// Where events are stored: the data directory (the default), or
    /// nats://host:4222[,host2:4222...] for NATS JetStream (proto-docs/jetstream.md).
    #[arg(long, env = "BUS_STORAGE", value_name = "URL")]
    pub storage: Option<String>,

    /// How to reach NATS under --storage nats://.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// When a publish counts as durable: always (the default), interval:<ms> or never.
    /// Refused with --storage nats:// (durability is the NATS server's there).
    #[arg(long, env = "BUS_FSYNC", value_parser = parse_fsync, value_name = "POLICY")]
    pub fsync: Option<FsyncPolicy>,

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

    /// Most connections per client address (an IPv6 client counts by its /64); past it a
    /// connection is closed. Loopback clients are exempt unless --limit-loopback.
    #[arg(long, env = "BUS_MAX_CONNECTIONS_PER_CLIENT", default_value_t = bus_broker::config::DEFAULT_MAX_CONNECTIONS_PER_CLIENT, value_name = "COUNT")]
    pub max_connections_per_client: usize,

    /// Hold loopback clients to --max-connections-per-client too.
    #[arg(long, env = "BUS_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,

    /// Proxies (addresses or CIDR blocks, comma-separated) whose PROXY protocol header or
    /// X-Forwarded-For names the client; default: none.
    #[arg(
        long,
        env = "BUS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "ADDR|CIDR,..."
    )]
    pub trusted_proxies: Vec<String>,

    /// Time from a connection's accept (or a later request's first byte) to its whole
    /// request head, the TLS handshake included; past it the connection is closed.
    #[arg(long, env = "BUS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub header_timeout: Duration,

    /// Time to receive a whole request body (408 request_timeout past it).
    #[arg(long, env = "BUS_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub body_timeout: Duration,

    /// A keep-alive connection with no request open is closed after this.
    #[arg(long, env = "BUS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// A connection whose socket accepts no byte of pending output (a subscriber that
    /// stopped reading) for this long is closed.
    #[arg(long, env = "BUS_STALLED_STREAM_TIMEOUT", default_value = "5m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub stalled_stream_timeout: Duration,

    /// Host names the broker answers for (comma-separated; .example.com for subdomains
    /// too, * for any); others get 421. Default: on loopback, loopback names only.
    #[arg(
        long,
        env = "BUS_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST,..."
    )]
    pub allowed_hosts: Vec<String>,

    /// Listen on a non-loopback address without credentials: anyone who reaches it may
    /// publish, read and delete.
    #[arg(long, env = "BUS_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// With --storage nats://, whether durable manual-ack consumers of one namespace are
    /// JetStream durable consumers (`false`: every consumer on bus's own engine, its state
    /// in the KV bucket; see proto-docs/jetstream.md).
    #[arg(
        long,
        env = "BUS_JETSTREAM_CONSUMERS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub jetstream_consumers: bool,

    /// PEM certificate chain to serve HTTPS with (needs --tls-key); reloaded on SIGHUP.
    #[arg(long, env = "BUS_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "BUS_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Most namespaces; creating one more is refused (403 namespace_limit).
    #[arg(long, env = "BUS_MAX_NAMESPACES", default_value_t = bus_broker::config::DEFAULT_MAX_NAMESPACES, value_name = "COUNT")]
    pub max_namespaces: usize,

    /// Threads shared by every namespace's writer (encode and write): at most this many
    /// namespaces write at once; a namespace owns no thread.
    #[arg(long, env = "BUS_WRITE_THREADS", default_value_t = bus_broker::storage::pool::DEFAULT_WRITE_THREADS as u16, value_parser = clap::value_parser!(u16).range(1..=256), value_name = "COUNT")]
    pub write_threads: u16,

    /// Threads shared by every namespace's fdatasync under fsync=always: at most this many
    /// namespaces sync at once.
    #[arg(long, env = "BUS_SYNC_THREADS", default_value_t = bus_broker::storage::pool::DEFAULT_SYNC_THREADS as u16, value_parser = clap::value_parser!(u16).range(1..=256), value_name = "COUNT")]
    pub sync_threads: u16,

    /// Segment files kept open at once; idle, synced ones past it are closed and reopened
    /// on use (one with unsynced writes stays open).
    #[arg(long, env = "BUS_MAX_OPEN_FILES", default_value_t = bus_broker::storage::open_files::DEFAULT_MAX_OPEN_FILES as u32, value_parser = clap::value_parser!(u32).range(16..), value_name = "COUNT")]
    pub max_open_files: u32,

    /// Settings of one namespace, NAME:key=value,... with keys fsync, retention-age,
    /// retention-bytes, retention-events (repeatable; `;`-separated in BUS_NS_CONFIG).
    /// Kept in the data directory for later starts.
    #[arg(long = "ns-config", env = "BUS_NS_CONFIG", value_delimiter = ';', value_parser = parse_ns_config, value_name = "NAME:SETTINGS")]
    pub ns_config: Vec<(String, NamespaceOverride)>,
}

/// Credentials, TLS and replicas for NATS JetStream (`bus server --storage nats://`,
/// `bus migrate --to`).
#[derive(Args, Debug)]
pub struct NatsArgs {
    /// NATS user name (with --nats-password), under --storage nats://.
    #[arg(
        long,
        env = "BUS_NATS_USER",
        value_name = "USER",
        requires = "nats_password"
    )]
    pub nats_user: Option<String>,

    /// NATS password (with --nats-user).
    #[arg(
        long,
        env = "BUS_NATS_PASSWORD",
        value_name = "PASSWORD",
        requires = "nats_user"
    )]
    pub nats_password: Option<String>,

    /// NATS authentication token.
    #[arg(long, env = "BUS_NATS_TOKEN", value_name = "TOKEN")]
    pub nats_token: Option<String>,

    /// NATS credentials file (JWT and NKey seed, `.creds`).
    #[arg(long, env = "BUS_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// PEM file of the CA certificates the NATS servers' certificates are checked against.
    #[arg(long, env = "BUS_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Refuse NATS servers that do not speak TLS.
    #[arg(long, env = "BUS_NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,

    /// Replicas of every JetStream stream bus creates (1 on one server; 3 or 5 in a cluster).
    #[arg(long, env = "BUS_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), value_name = "COUNT")]
    pub nats_replicas: u8,
}

/// `bus migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The data directory to move (the broker must be stopped: it is locked while read).
    #[arg(long, env = "BUS_DATA", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,

    /// The JetStream servers to move it to: nats://host:4222[,host2:4222...].
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// How to reach them.
    #[command(flatten)]
    pub nats: NatsArgs,
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

    /// Wait until this many distinct consumers have acked the event (1 to 1000); exit
    /// status 4, after printing the receipt, when fewer did within --timeout.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub confirm: Option<u32>,

    /// How long --confirm waits (1ms to 5m).
    #[arg(long, requires = "confirm", default_value = "5s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `bus get --ack`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckArg {
    /// Read the log; nothing is acknowledged.
    None,
    /// Each event stays pending until acknowledged (`bus ack`), else it comes back.
    Manual,
    /// Manual on the broker; each event is acked once printed.
    Auto,
}

/// `bus get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The pattern to read (`user.*`, `user.>`, `>`).
    pub pattern: String,

    /// Where to start: oldest, newest, an event id or cursor, or an RFC 3339 time.
    #[arg(long, default_value = "newest", value_parser = parse_start, value_name = "START")]
    pub from: Start,

    /// Exit after exactly this many events; 0 follows the stream (through broker restarts)
    /// until SIGINT or SIGTERM. As a consumer member it also takes at most N deliveries.
    #[arg(short = 'n', long, default_value_t = 0, value_name = "N")]
    pub count: u64,

    /// Run CMD (through `sh -c`) once per event, the event JSON on its stdin, instead of
    /// printing the event; as a consumer member, ack the event when CMD exits 0, else nack it.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,

    /// Kill an --exec command still running after this (a failure: nacked); default 30s,
    /// as a member 4/5 of the consumer's ack wait.
    #[arg(long, requires = "exec", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub exec_timeout: Option<Duration>,

    /// How events are acknowledged: none, manual (pending until `bus ack`; printed events
    /// carry delivery_count) or auto (acked once printed; with --count, exit once the acks
    /// are confirmed).
    #[arg(long, value_enum, default_value_t = AckArg::None, value_name = "MODE")]
    pub ack: AckArg,

    /// Read as the durable consumer NAME (created on first use, kept across restarts; runs
    /// with the same name share the events). Letters, digits, '_' and '-'.
    #[arg(long, value_name = "NAME", conflicts_with = "group")]
    pub durable: Option<String>,

    /// Read as a member of the queue group NAME: each event goes to one member; the group
    /// ends with its last member.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,

    /// Redeliver an event not acked within this (consumer default 30s); applies when the
    /// consumer is created.
    #[arg(long, value_parser = parse_duration_arg, value_name = "DURATION")]
    pub ack_wait: Option<Duration>,

    /// Deliveries of one event before it goes to the dead-letter subject (default
    /// unlimited); applies when the consumer is created.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliver: Option<u32>,

    /// Ack waits of successive redeliveries, comma-separated (1s,10s,1m); applies when the
    /// consumer is created.
    #[arg(long, value_delimiter = ',', value_parser = parse_duration_arg, value_name = "DURATION,...")]
    pub backoff: Vec<Duration>,

    /// Most unacknowledged events at a time (consumer default 1000); applies when the
    /// consumer is created.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_in_flight: Option<u64>,
}

impl GetArgs {
    /// Whether the stream attaches to a consumer rather than reading the log.
    pub fn is_consumer(&self) -> bool {
        self.ack != AckArg::None || self.durable.is_some() || self.group.is_some()
    }
}

/// `bus ack`.
#[derive(Args, Debug)]
pub struct AckArgs {
    /// The consumer that delivered the events (as `bus get` or `bus consumers` names it).
    pub consumer: String,

    /// The event ids.
    #[arg(required = true, value_name = "EVENT_ID")]
    pub ids: Vec<String>,
}

/// `bus nack`.
#[derive(Args, Debug)]
pub struct NackArgs {
    /// The consumer that delivered the events.
    pub consumer: String,

    /// The event ids.
    #[arg(required = true, value_name = "EVENT_ID")]
    pub ids: Vec<String>,

    /// Redeliver after this delay (at most 24h) rather than now.
    #[arg(long, value_parser = parse_duration_arg, value_name = "DURATION")]
    pub delay: Option<Duration>,
}

/// `bus consumers`.
#[derive(Args, Debug)]
pub struct ConsumersArgs {
    /// What to do; default: list.
    #[command(subcommand)]
    pub action: Option<ConsumersAction>,
}

/// `bus consumers <action>`.
#[derive(Subcommand, Debug)]
pub enum ConsumersAction {
    /// List the consumers (the default).
    List,
    /// Show one consumer.
    Info {
        /// The consumer's name.
        name: String,
    },
    /// Move a consumer: its pending deliveries are dropped and reading restarts at --to.
    Seek {
        /// The consumer's name.
        name: String,
        /// Where to restart: oldest, newest, an event id or cursor, or an RFC 3339 time.
        #[arg(long, value_parser = parse_start, value_name = "START")]
        to: Start,
    },
    /// Change a consumer's settings; its members keep reading.
    #[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)
        .args(["ack_wait", "max_deliver", "backoff", "max_in_flight"])))]
    Set {
        /// The consumer's name.
        name: String,
        /// Redeliver an event not acked within this.
        #[arg(long, value_parser = parse_duration_arg, value_name = "DURATION")]
        ack_wait: Option<Duration>,
        /// Deliveries of one event before it goes to the dead-letter subject, or unlimited.
        #[arg(long, value_parser = parse_max_deliver, value_name = "N|unlimited")]
        max_deliver: Option<MaxDeliver>,
        /// Ack waits of successive redeliveries, comma-separated (1s,10s,1m), or none (the
        /// ack wait every time).
        #[arg(long, value_parser = parse_backoff, value_name = "DURATION,...|none")]
        backoff: Option<Backoff>,
        /// Most unacknowledged events at a time, per member.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
        max_in_flight: Option<u64>,
    },
    /// Delete a consumer and, for a durable one, its saved state.
    Delete {
        /// The consumer's name.
        name: String,
    },
}

/// `bus consumers set --max-deliver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxDeliver {
    /// At most this many deliveries.
    Limit(u32),
    /// No limit.
    Unlimited,
}

/// `bus consumers set --backoff`: the waits, empty for none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff(pub Vec<Duration>);

/// `bus ns`.
#[derive(Args, Debug)]
pub struct NsArgs {}

/// `N` (at least 1) or `unlimited`.
fn parse_max_deliver(s: &str) -> Result<MaxDeliver, String> {
    if s == "unlimited" {
        return Ok(MaxDeliver::Unlimited);
    }
    match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(MaxDeliver::Limit(n)),
        _ => Err(format!(
            "expected a count of at least 1 or unlimited, got {s:?}"
        )),
    }
}

/// `1s,5s` or `none`.
fn parse_backoff(s: &str) -> Result<Backoff, String> {
    if s == "none" {
        return Ok(Backoff(Vec::new()));
    }
    s.split(',')
        .map(|d| parse_duration(d.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(Backoff)
}

pub(crate) fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    s.parse()
}

pub(crate) fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

pub(crate) fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn parse_start(s: &str) -> Result<Start, String> {
    s.parse()
        .map_err(|e: bus_proto::StartParseError| e.to_string())
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
        assert_eq!(s.fsync, None);
        assert_eq!(s.max_payload, 1 << 20);
        assert_eq!(s.segment_size, 64 << 20);
        assert_eq!(s.dedup_window, Duration::from_secs(120));
        assert_eq!(s.max_connections, 10_000);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.namespaces, None);
        assert!(s.cors_origins.is_empty() && s.ns_config.is_empty());
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.body_timeout, Duration::from_secs(30));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.stalled_stream_timeout, Duration::from_secs(300));
        assert_eq!(s.max_connections_per_client, 256);
        assert!(!s.limit_loopback && !s.allow_anonymous);
        assert!(s.jetstream_consumers);
        assert!(s.trusted_proxies.is_empty() && s.allowed_hosts.is_empty());
        assert_eq!((s.tls_cert, s.tls_key), (None, None));
        assert_eq!(
            (s.retention_age, s.retention_bytes, s.retention_events),
            (None, None, None)
        );
    }

    #[test]
    fn jetstream_consumers_can_be_turned_off() {
        let cli = parse(&["server", "--jetstream-consumers", "false"]).unwrap();
        let Command::Server(s) = cli.command else {
            panic!("not server")
        };
        assert!(!s.jetstream_consumers);
        assert!(parse(&["server", "--jetstream-consumers", "maybe"]).is_err());
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
        assert_eq!(
            s.fsync,
            Some(FsyncPolicy::Interval(Duration::from_millis(5)))
        );
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
            &["get", "a", "--ack", "sometimes"],
            &["get", "a", "--durable", "d", "--group", "g"],
            &["get", "a", "--max-in-flight", "0"],
            &["get", "a", "--max-deliver", "0"],
            &["get", "a", "--ack-wait", "soon"],
            &["get"],
            &["put", "a.b", "x", "--confirm", "0"],
            &["put", "a.b", "x", "--timeout", "1s"],
            &["ack", "orders"],
            &["nack", "orders", "a-1-0", "--delay", "later"],
            &["consumers", "seek", "orders"],
            &["consumers", "delete"],
            &["consumers", "set", "orders"],
            &["consumers", "set", "orders", "--max-deliver", "0"],
            &["consumers", "set", "orders", "--max-deliver", "many"],
            &["consumers", "set", "orders", "--backoff", "1s,soon"],
            &["get", "a", "--exec-timeout", "1s"],
            &["frobnicate"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn parses_consumer_flags_of_get() {
        let cli = parse(&["get", "a.>"]).unwrap();
        let Command::Get(g) = cli.command else {
            panic!("not get")
        };
        assert_eq!(g.ack, AckArg::None);
        assert!(!g.is_consumer());
        let cli = parse(&[
            "get",
            "a.>",
            "--ack",
            "auto",
            "--durable",
            "d-1",
            "--ack-wait",
            "10s",
            "--max-deliver",
            "3",
            "--backoff",
            "1s,1m",
            "--max-in-flight",
            "50",
        ])
        .unwrap();
        let Command::Get(g) = cli.command else {
            panic!("not get")
        };
        assert_eq!(g.ack, AckArg::Auto);
        assert_eq!(g.durable.as_deref(), Some("d-1"));
        assert_eq!(g.ack_wait, Some(Duration::from_secs(10)));
        assert_eq!(g.max_deliver, Some(3));
        assert_eq!(g.backoff, [Duration::from_secs(1), Duration::from_secs(60)]);
        assert_eq!(g.max_in_flight, Some(50));
        assert!(g.is_consumer());
        let cli = parse(&["get", "a", "--group", "g"]).unwrap();
        let Command::Get(g) = cli.command else {
            panic!("not get")
        };
        assert!(g.is_consumer());
    }

    #[test]
    fn parses_acks_confirm_and_consumers() {
        let Command::Put(p) = parse(&["put", "a.b", "x", "--confirm", "2"])
            .unwrap()
            .command
        else {
            panic!("not put")
        };
        assert_eq!((p.confirm, p.timeout), (Some(2), Duration::from_secs(5)));
        let Command::Nack(n) = parse(&["nack", "c", "a-1-0", "a-2-0", "--delay", "5s"])
            .unwrap()
            .command
        else {
            panic!("not nack")
        };
        assert_eq!(n.ids, ["a-1-0", "a-2-0"]);
        assert_eq!(n.delay, Some(Duration::from_secs(5)));
        let Command::Consumers(c) = parse(&["consumers", "--json"]).unwrap().command else {
            panic!("not consumers")
        };
        assert!(c.action.is_none());
        let Command::Consumers(c) = parse(&["consumers", "seek", "orders", "--to", "oldest"])
            .unwrap()
            .command
        else {
            panic!("not consumers")
        };
        assert!(matches!(
            c.action,
            Some(ConsumersAction::Seek { name, to: Start::Oldest }) if name == "orders"
        ));
    }

    #[test]
    fn parses_consumers_set() {
        let Command::Consumers(c) = parse(&[
            "consumers",
            "set",
            "mailer",
            "--ack-wait",
            "1m",
            "--max-deliver",
            "unlimited",
            "--backoff",
            "1s,5s",
            "--max-in-flight",
            "7",
        ])
        .unwrap()
        .command
        else {
            panic!("not consumers")
        };
        let Some(ConsumersAction::Set {
            name,
            ack_wait,
            max_deliver,
            backoff,
            max_in_flight,
        }) = c.action
        else {
            panic!("not set")
        };
        assert_eq!(name, "mailer");
        assert_eq!(ack_wait, Some(Duration::from_secs(60)));
        assert_eq!(max_deliver, Some(MaxDeliver::Unlimited));
        let waits = vec![Duration::from_secs(1), Duration::from_secs(5)];
        assert_eq!(backoff, Some(Backoff(waits)));
        assert_eq!(max_in_flight, Some(7));
        let Command::Consumers(c) = parse(&["consumers", "set", "m", "--backoff", "none"])
            .unwrap()
            .command
        else {
            panic!("not consumers")
        };
        assert!(
            matches!(c.action, Some(ConsumersAction::Set { backoff: Some(b), .. }) if b.0.is_empty())
        );
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
