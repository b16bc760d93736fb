//! `bus get <pattern>`: read events from `--from` on, then live. With `--count N` it exits
//! after exactly N events; without, it follows the stream until the broker stops.
//!
//! With `--json` each event is printed as the broker sent it, one per line, flushed as it
//! arrives; otherwise readably. Gap notices go to stderr.
//!
//! With `--ack manual|auto`, `--durable` or `--group` the stream is a member of a consumer,
//! named on stderr when it attaches. In manual mode the events stay pending until acked
//! (`bus ack`), and each printed event carries its `delivery_count`. In auto mode each event
//! is acked after it is printed, through the client's background acknowledger (many acks
//! per request), so the stream never waits one round trip per event; with `--count N` the
//! command exits only once the broker confirmed every ack, and only then disconnects
//! (disconnecting first would hand the printed events to another member at once). With `--count N` a member asks for at
//! most N unacknowledged events and at most N deliveries in all (`limit=N`), so the broker
//! never hands it an event it will not print.

use futures::StreamExt as _;

use bus_client::{AckMode, StreamItem, SubscribeOptions, Subscription};

use crate::args::{AckArg, GetArgs};
use crate::error::CliError;
use crate::output::{Output, format_event, gap_notice, notice};

/// Largest `max_in_flight` the broker accepts.
const MAX_IN_FLIGHT: u64 = 100_000;

/// Runs `bus get`.
pub async fn run(url: &str, json: bool, args: GetArgs) -> Result<(), CliError> {
    let options = options(&args)?;
    let client = super::connect(url).await?;
    let mut sub = client
        .subscribe_with(&args.pattern, options)
        .await
        .map_err(|e| CliError::client_context(format!("cannot read {}", args.pattern), e))?;
    let mut auto_ack = false;
    if args.is_consumer() {
        let name = sub
            .consumer()
            .ok_or_else(|| CliError::msg("the broker did not name the consumer it attached to"))?
            .to_owned();
        let subscribed = sub.subscribed();
        let kind = subscribed
            .and_then(|s| s.kind)
            .map_or("consumer", |k| k.as_str());
        let ack = subscribed.and_then(|s| s.ack).unwrap_or_default();
        notice(&format!(
            "reading as consumer {name} ({kind}, ack {})",
            ack.as_str()
        ));
        if args.ack != AckArg::None && ack != AckMode::Manual {
            return Err(CliError::msg(format!(
                "consumer {name} was created with ack mode {}; it cannot be read with --ack {}",
                ack.as_str(),
                if args.ack == AckArg::Auto {
                    "auto"
                } else {
                    "manual"
                }
            )));
        }
        auto_ack = args.ack == AckArg::Auto;
    }
    let mut out = Output::new();
    let mut seen: u64 = 0;
    while let Some(item) = sub.next().await {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                let err = CliError::client_context(format!("reading {} failed", args.pattern), e);
                if auto_ack {
                    // Send the acks of what was printed; the stream's failure is the news.
                    if let Err(ack_err) = finish_acks(&sub).await
                        && let Some(line) = ack_err.render()
                    {
                        crate::output::notice_raw(&line);
                    }
                }
                return Err(err);
            }
        };
        match item {
            StreamItem::Event(m) => {
                if json {
                    out.line(m.json())?;
                } else {
                    out.line(&format_event(&m, out.color()))?;
                }
                if auto_ack {
                    m.ack().await.map_err(CliError::client)?;
                    check_acks(&sub)?;
                }
                seen += 1;
                if seen == args.count {
                    if auto_ack {
                        finish_acks(&sub).await?;
                    }
                    return Ok(());
                }
            }
            StreamItem::Gap(g) => gap_notice(&g),
            _ => {}
        }
    }
    // The broker announced its shutdown.
    if auto_ack {
        finish_acks(&sub).await?;
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

/// Fails once an ack sent in the background was refused.
fn check_acks(sub: &Subscription) -> Result<(), CliError> {
    match sub.failed_acks() {
        0 => Ok(()),
        n => Err(CliError::msg(format!(
            "the broker did not record {n} acks of consumer {}; those events will come again",
            sub.consumer().unwrap_or("?")
        ))),
    }
}

/// Waits until every ack queued was answered; fails if any was refused.
async fn finish_acks(sub: &Subscription) -> Result<(), CliError> {
    sub.flush_acks().await.map_err(CliError::client)?;
    check_acks(sub)
}

/// The subscription the flags ask for.
fn options(args: &GetArgs) -> Result<SubscribeOptions, CliError> {
    let mut o = SubscribeOptions::new().from(args.from.clone());
    if !args.is_consumer() {
        if args.ack_wait.is_some()
            || args.max_deliver.is_some()
            || !args.backoff.is_empty()
            || args.max_in_flight.is_some()
        {
            return Err(CliError::msg(
                "--ack-wait, --max-deliver, --backoff and --max-in-flight are consumer settings: \
                 add --ack manual or auto, --durable NAME or --group NAME",
            ));
        }
        return Ok(o);
    }
    if args.ack != AckArg::None {
        o = o.ack(AckMode::Manual);
    }
    if let Some(d) = &args.durable {
        o = o.durable(d.clone());
    }
    if let Some(g) = &args.group {
        o = o.group(g.clone());
    }
    if let Some(w) = args.ack_wait {
        o = o.ack_wait(w);
    }
    if let Some(n) = args.max_deliver {
        o = o.max_deliver(n);
    }
    if !args.backoff.is_empty() {
        o = o.backoff(args.backoff.iter().copied());
    }
    if let Some(n) = max_in_flight(args.max_in_flight, args.count) {
        o = o.max_in_flight(n as usize);
    }
    if args.count > 0 {
        o = o.limit(args.count);
    }
    Ok(o)
}

/// `--max-in-flight`, lowered to `--count` when that is smaller: a member that exits after
/// N events asks for no more than N at a time.
fn max_in_flight(flag: Option<u64>, count: u64) -> Option<u64> {
    let from_count = (count > 0).then(|| count.min(MAX_IN_FLIGHT));
    match (flag, from_count) {
        (Some(f), Some(c)) => Some(f.min(c)),
        (f, c) => f.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_bounds_the_events_in_flight() {
        assert_eq!(max_in_flight(None, 0), None);
        assert_eq!(max_in_flight(None, 5), Some(5));
        assert_eq!(max_in_flight(Some(3), 5), Some(3));
        assert_eq!(max_in_flight(Some(50), 5), Some(5));
        assert_eq!(max_in_flight(Some(50), 0), Some(50));
        assert_eq!(max_in_flight(None, 1_000_000), Some(MAX_IN_FLIGHT));
    }
}
