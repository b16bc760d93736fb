//! `bus tail <pattern>`: follow a live stream, for people.
//!
//! Each event is a header line (the subject, coloured when stdout is a terminal and
//! `NO_COLOR` is unset; the sequence; how long ago it was published; its headers) and then its
//! payload indented below it: JSON pretty-printed, other text as it is, binary data described.
//! It starts at `--from` (default `newest`: only what comes next) and follows the stream until
//! the broker stops, or exits after `--count N` events. With `--json` it prints the event JSON
//! instead, one per line, as `bus get --json` does. Stderr says when the stream started
//! (`bus: following <pattern> from <start>`), and carries the gap notices.

use futures::StreamExt as _;

use bus_broker::storage::now_ns;
use bus_client::StreamItem;

use crate::args::TailArgs;
use crate::error::CliError;
use crate::output::{Output, format_tail_event, gap_notice, notice};

/// Runs `bus tail`.
pub async fn run(url: &str, json: bool, args: TailArgs) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let mut sub = client
        .subscribe(&args.pattern, args.from.clone())
        .await
        .map_err(|e| CliError::client_context(format!("cannot follow {}", args.pattern), e))?;
    // Said once the broker confirmed the subscription: from here on nothing new is missed.
    notice(&format!("following {} from {}", args.pattern, args.from));
    let mut out = Output::new();
    let mut seen: u64 = 0;
    while let Some(item) = sub.next().await {
        let item = item.map_err(|e| {
            CliError::client_context(format!("following {} failed", args.pattern), e)
        })?;
        match item {
            StreamItem::Event(m) => {
                if json {
                    out.line(m.json())?;
                } else {
                    out.line(&format_tail_event(&m, out.color(), now_ns()))?;
                }
                seen += 1;
                if seen == args.count {
                    return Ok(());
                }
            }
            StreamItem::Gap(g) => gap_notice(&g),
            _ => {}
        }
    }
    if args.count > 0 {
        return Err(CliError::negative(format!(
            "the broker shut down after {seen} of {} events",
            args.count
        )));
    }
    notice("the broker shut down; the stream has ended");
    Ok(())
}
