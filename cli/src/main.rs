//! `bus`: the command-line front end of the bus broker.
//!
//! `bus server` runs the broker (`bus-broker`); `bus put`, `bus get`, `bus tail`, `bus ns`,
//! `bus ack`, `bus nack`, `bus consumers`, `bus req`, `bus reply`, `bus dump` and
//! `bus restore` talk to one over HTTP through `bus-client` (`bus consumers set`, which the
//! client has no call for yet, with a plain HTTP request); `bus bench` loads one (or one of
//! its own, `--embedded`) and reports its figures; `bus inspect` reads a data directory
//! offline. The modules: [`args`] (the command line), [`commands`] (one file per
//! subcommand), [`output`] (what goes to stdout and stderr), [`error`] (exit statuses and the
//! `bus: <error>: <cause>` line), [`namespace_dir`] (a namespace's segments read offline, for
//! `bus inspect`).
//!
//! Rules every command keeps: with `--json`, stdout carries only results; notices and errors
//! go to stderr. Exit status 0 ok, 1 a negative result, 2 an error, 3 no responders, 4
//! timeout. A closed stdout pipe ends the command quietly with 0. SIGINT and SIGTERM end a
//! long-running command (`server`, `get`, `tail`, `reply`, `req` while waiting) cleanly with 0.

mod args;
mod commands;
mod error;
mod namespace_dir;
mod output;

use std::process::ExitCode;

use bus_client::AckOp;
use clap::{CommandFactory as _, FromArgMatches as _};

use crate::args::{Cli, Command};
use crate::error::{CliError, EXIT_ERROR};

/// mimalloc rather than glibc's malloc: a request's buffers are allocated on one thread and
/// freed on another, which makes glibc take arena locks (futex waits) on every publish.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(line) = e.render() {
                output::notice_raw(&line);
            }
            ExitCode::from(e.code)
        }
    }
}

/// The command line, refusing the client flags `--url` and `--json` given to `bus server`
/// (which would ignore them). From `BUS_URL` the URL is not refused: the environment is
/// shared by all commands.
fn parse() -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some(server) = matches.subcommand_matches("server") {
        for (flag, why) in [
            ("url", "it listens on --addr"),
            ("json", "it logs to stderr"),
            ("cacert", "it serves --tls-cert"),
            ("token", "it checks tokens with --auth"),
        ] {
            if server.value_source(flag) == Some(clap::parser::ValueSource::CommandLine) {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("bus server does not take --{flag} (a client flag): {why}"),
                ));
            }
        }
    }
    Cli::from_arg_matches(&matches)
}

/// Runs the command on a runtime of its size: the server and the bench on all cores, a
/// client command on the current thread.
fn run(cli: Cli) -> Result<(), CliError> {
    let runtime = match &cli.command {
        Command::Server(_) | Command::Bench(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .map_err(|e| CliError::with_cause("cannot start the async runtime", e))?;
    commands::set_cacert(cli.cacert.clone());
    commands::set_token(cli.token.clone());
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => commands::server::run(args).await,
            Command::Put(args) => commands::put::run(&cli.url, cli.json, args).await,
            Command::Get(args) => commands::get::run(&cli.url, cli.json, args).await,
            Command::Ns(_) => commands::ns::run(&cli.url, cli.json).await,
            Command::Ack(a) => {
                commands::ack::run(&cli.url, cli.json, &a.consumer, a.ids, AckOp::Ack).await
            }
            Command::Nack(a) => {
                let op = AckOp::Nack(a.delay);
                commands::ack::run(&cli.url, cli.json, &a.consumer, a.ids, op).await
            }
            Command::Consumers(a) => commands::consumers::run(&cli.url, cli.json, a.action).await,
            Command::Req(args) => commands::req::run(&cli.url, cli.json, args).await,
            Command::Reply(args) => commands::reply::run(&cli.url, cli.json, args).await,
            Command::Inspect(args) => commands::inspect::run(cli.json, args),
            Command::Dump(args) => commands::dump::run(&cli.url, args).await,
            Command::Restore(args) => commands::restore::run(&cli.url, cli.json, args).await,
            Command::Migrate(args) => commands::migrate::run(args).await,
            Command::Tail(args) => commands::tail::run(&cli.url, cli.json, args).await,
            Command::Auth(a) => commands::auth::run(&cli.url, cli.json, a.action).await,
            Command::Health => commands::health::run(&cli.url, cli.json).await,
            Command::Bench(args) => commands::bench::run(&cli.url, cli.json, args).await,
        }
    })
}

/// Help and version go to stdout with status 0; a usage error is printed as
/// `bus: <error>` with clap's hints, status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            output::notice_raw(&format!("bus: {}", text.trim_end()));
            ExitCode::from(EXIT_ERROR)
        }
    }
}
