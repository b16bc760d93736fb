//! `bus tail <pattern>`: follow a live stream, for people.
//!
//! Each event is a header line (the subject, coloured when stdout is a terminal and
//! `NO_COLOR` is unset; the sequence; how long ago it was published; its headers) and then its
//! payload indented below it: JSON pretty-printed, other text as it is, binary data described.
//! It starts at `--from` (default `newest`: only what comes next) and follows the stream,
//! through broker restarts ([`super::follow`]), until SIGINT or SIGTERM (status 0), or exits
//! after `--count N` events. With `--json` it prints the event JSON
//! instead, one per line, as `bus get --json` does. Stderr says when the stream started
//! (`bus: following <pattern> from <start>`), and carries the gap notices.

use bus_broker::storage::now_ns;
use bus_client::{StreamItem, SubscribeOptions};

use super::follow::{Follower, Signals, Step};
use crate::args::TailArgs;
use crate::error::CliError;
use crate::output::{Output, format_tail_event, gap_notice, notice};

/// Runs `bus tail`.
pub async fn run(url: &str, json: bool, args: TailArgs) -> Result<(), CliError> {
    let signals = Signals::install()?;
    let client = super::follow::connect(url).await?;
    let options = SubscribeOptions::new().from(args.from.clone());
    let Some(mut follower) = Follower::open(client, &args.pattern, options, args.count, signals)
        .await
        .map_err(|e| CliError::client_context(format!("cannot follow {}", args.pattern), e))?
    else {
        return Ok(());
    };
    // Said once the broker confirmed the subscription: from here on nothing new is missed.
    notice(&format!("following {} from {}", args.pattern, args.from));
    let mut out = Output::new();
    loop {
        let step = follower.next().await.map_err(|e| {
            CliError::client_context(format!("following {} failed", args.pattern), e)
        })?;
        match step {
            Step::Stop => return Ok(()),
            Step::Item(StreamItem::Event(m)) => {
                if json {
                    out.line(m.json())?;
                } else {
                    out.line(&format_tail_event(&m, out.color(), now_ns()))?;
                }
                if follower.seen() == args.count {
                    return Ok(());
                }
            }
            Step::Item(StreamItem::Gap(g)) => gap_notice(&g),
            Step::Item(_) => {}
        }
    }
}
