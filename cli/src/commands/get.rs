//! `bus get <pattern>`: read events from `--from` on, then live. With `--count N` it exits
//! after exactly N events; without, it follows the stream until the broker stops.
//!
//! With `--json` each event is printed as the broker sent it, one per line, flushed as it
//! arrives; otherwise readably. Gap notices go to stderr.

use futures::StreamExt as _;

use bus_client::StreamItem;

use crate::args::GetArgs;
use crate::error::CliError;
use crate::output::{Output, format_event, notice};

/// Runs `bus get`.
pub async fn run(url: &str, json: bool, args: GetArgs) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let mut sub = client
        .subscribe(&args.pattern, args.from.clone())
        .await
        .map_err(|e| CliError::client_context(format!("cannot read {}", args.pattern), e))?;
    let mut out = Output::new();
    let mut seen: u64 = 0;
    while let Some(item) = sub.next().await {
        let item = item
            .map_err(|e| CliError::client_context(format!("reading {} failed", args.pattern), e))?;
        match item {
            StreamItem::Event(m) => {
                if json {
                    out.line(m.json())?;
                } else {
                    out.line(&format_event(&m, out.color()))?;
                }
                seen += 1;
                if seen == args.count {
                    return Ok(());
                }
            }
            StreamItem::Gap(g) => notice(&format!(
                "gap in {}: events {} to {} were deleted by retention before they were read",
                g.namespace,
                g.missed_from,
                g.resume_at.saturating_sub(1)
            )),
            _ => {}
        }
    }
    // The broker announced its shutdown.
    if args.count > 0 {
        return Err(CliError::negative(format!(
            "the broker shut down after {seen} of {} events",
            args.count
        )));
    }
    notice("the broker shut down; the stream has ended");
    Ok(())
}
