//! `bus`: the command-line front end of the bus broker.
//!
//! The subcommands (`server`, `put`, `get`, ...) arrive with the HTTP server; until then
//! the binary only prints its version and help.

use clap::Parser;

/// The `bus` command.
#[derive(Parser, Debug)]
#[command(name = "bus", version, about = "A persistent, subject-routed event broker")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("bus: no subcommand yet: the server arrives with the HTTP API work");
    std::process::exit(2);
}
