//! `bus get <pattern>`: read events from `--from` on, then live. With `--count N` it exits
//! after exactly N events; without, it follows the stream until SIGINT or SIGTERM, through
//! broker restarts ([`super::follow`]): after a crash the stream reconnects by itself, after
//! a graceful shutdown it subscribes again once the broker is back, resuming where it left
//! off. A signal ends it with status 0 (after the acks it owes are confirmed).
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
//! (disconnecting first would hand the printed events to another member at once); a
//! follower (no `--count`) names an ack the broker refused on stderr and goes on, since the
//! event comes again anyway. With
//! `--count N` a member asks for at most N deliveries in all (`limit=N`), so the broker never
//! hands it an event it will not print. Reading never changes the consumer's settings: the
//! consumer settings flags apply only when the consumer is created (`bus consumers set`
//! changes them), and `--max-in-flight` is sent only when given.
//!
//! With `--exec CMD` nothing is printed for the events: CMD runs through `sh -c` once per
//! event, one at a time in order, with the event JSON and a newline on its stdin (and
//! `BUS_SUBJECT`, `BUS_EVENT_ID` in its environment). Its stdout is copied to ours once it
//! exits (at most [`MAX_OUTPUT`](super::exec::MAX_OUTPUT) bytes; more counts as a failure),
//! its stderr goes straight to ours. A command still running after `--exec-timeout` is
//! killed and counts as a failure. As a member (always manual-ack with `--exec`) an event
//! is acked when CMD exits 0 and nacked (redelivered) otherwise; each failure is named on
//! stderr. Failures do not change the exit status.

use std::time::Duration;

use bus_client::{Message, StreamItem, SubscribeOptions, Subscription};
use bus_proto::AckMode;

use super::exec::{Exec, Outcome};
use super::follow::{Follower, Signals, Step};
use crate::args::{AckArg, GetArgs};
use crate::error::CliError;
use crate::output::{Output, format_event, gap_notice, notice};

/// `--exec-timeout` of a plain stream.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `bus get`.
pub async fn run(url: &str, json: bool, args: GetArgs) -> Result<(), CliError> {
    let options = options(&args)?;
    // Caught from before the first byte is read, so that a signal always ends with status 0.
    let signals = Signals::install()?;
    let client = super::follow::connect(url).await?;
    let cannot = |e| CliError::client_context(format!("cannot read {}", args.pattern), e);
    let Some(mut follower) = Follower::open(client, &args.pattern, options, args.count, signals)
        .await
        .map_err(cannot)?
    else {
        return Ok(());
    };
    // Whether this command acknowledges what it receives (and so owes acks at the end).
    let mut acks = false;
    let mut exec_limit = args.exec_timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT);
    if args.is_consumer() {
        let sub = follower.sub();
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
        let wants_acks = args.ack != AckArg::None || args.exec.is_some();
        if wants_acks && ack != AckMode::Manual {
            let how = match (&args.exec, args.ack) {
                (Some(_), _) => "--exec",
                (None, AckArg::Auto) => "--ack auto",
                _ => "--ack manual",
            };
            return Err(CliError::msg(format!(
                "consumer {name} was created with ack mode {}; it cannot be read with {how}",
                ack.as_str()
            )));
        }
        acks = args.ack == AckArg::Auto || args.exec.is_some();
        if args.exec_timeout.is_none()
            && let Some(w) = subscribed.and_then(|s| s.ack_wait)
        {
            // Killed a little before the ack wait runs out, so that the nack lands before
            // the broker hands the event to another member.
            exec_limit = w.mul_f64(0.8);
        }
    }
    if acks {
        follower.flush_acks_on_restart();
    }
    if let Some(d) = &args.durable {
        let mut o = SubscribeOptions::new()
            .from(args.from.clone())
            .durable(d.clone());
        if args.ack != AckArg::None || args.exec.is_some() {
            o = o.ack(AckMode::Manual);
        }
        follower.reattach_with(o);
    }
    let mut out = Output::new();
    // Refused acks of the current subscription already reported (a follower goes on).
    let mut refused = 0;
    loop {
        let step = match follower.next().await {
            Ok(step) => step,
            Err(e) => {
                let err = CliError::client_context(format!("reading {} failed", args.pattern), e);
                if acks {
                    // Send the acks of what was handled; the stream's failure is the news.
                    if let Err(ack_err) = finish_acks(follower.sub()).await
                        && let Some(line) = ack_err.render()
                    {
                        crate::output::notice_raw(&line);
                    }
                }
                return Err(err);
            }
        };
        match step {
            Step::Stop => break,
            Step::Item(StreamItem::Event(m)) => {
                match &args.exec {
                    Some(cmd) => handle(&mut out, cmd, exec_limit, &m, acks).await?,
                    None if json => out.line(m.json())?,
                    None => out.line(&format_event(&m, out.color()))?,
                }
                if acks && args.exec.is_none() {
                    m.ack().await.map_err(CliError::client)?;
                }
                if acks {
                    if args.count > 0 {
                        check_acks(follower.sub())?;
                    } else {
                        report_refused_acks(follower.sub(), &mut refused);
                    }
                }
                if follower.seen() == args.count {
                    break;
                }
            }
            Step::Item(StreamItem::Gap(g)) => gap_notice(&g),
            Step::Item(_) => {}
        }
    }
    if acks {
        finish_acks(follower.sub()).await?;
    }
    Ok(())
}

/// For a follower (no `--count`): names acks the broker refused since the last report, and
/// goes on. The events come again (at least once), so ending the follower would not help.
fn report_refused_acks(sub: &Subscription, reported: &mut u64) {
    let n = sub.failed_acks();
    if n < *reported {
        // A new subscription after a restart counts from 0.
        *reported = 0;
    }
    if n > *reported {
        notice(&format!(
            "the broker did not record {} of consumer {}; those events will come again",
            crate::output::plural(n - *reported, "ack"),
            sub.consumer().unwrap_or("?")
        ));
        *reported = n;
    }
}

/// Runs `cmd` for event `m`, copies its stdout to ours, and with `acks` acks `m` when it
/// succeeded and nacks it otherwise.
async fn handle(
    out: &mut Output,
    cmd: &str,
    limit: Duration,
    m: &Message,
    acks: bool,
) -> Result<(), CliError> {
    let mut input = Vec::with_capacity(m.json().len() + 1);
    input.extend_from_slice(m.json().as_bytes());
    input.push(b'\n');
    let outcome = super::exec::run(&Exec {
        cmd,
        input: &input,
        env: &[("BUS_SUBJECT", &m.subject), ("BUS_EVENT_ID", &m.id)],
        limit,
        capture_stderr: false,
    })
    .await;
    if let Outcome::Finished(f) = &outcome {
        out.bytes(&f.stdout)?;
    }
    match outcome.failure() {
        None if acks => m.ack().await.map_err(CliError::client),
        None => Ok(()),
        Some(why) => {
            let tail = if acks { "; nacked" } else { "" };
            notice(&format!("{} {}: {why}{tail}", m.subject, m.id));
            if acks {
                m.nack().await.map_err(CliError::client)?;
            }
            Ok(())
        }
    }
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
    if args.ack != AckArg::None || args.exec.is_some() {
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
    // Only when asked for: a setting sent here becomes the consumer's for good when this
    // stream creates it. `limit=N` alone bounds this member.
    if let Some(n) = args.max_in_flight {
        o = o.max_in_flight(n as usize);
    }
    if args.count > 0 {
        o = o.limit(args.count);
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser as _;

    fn get_args(args: &[&str]) -> GetArgs {
        let cli = Cli::try_parse_from(["bus", "get"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Get(g) => g,
            _ => panic!("not get"),
        }
    }

    #[test]
    fn count_does_not_set_max_in_flight() {
        let base = SubscribeOptions::new().durable("d").limit(2);
        let o = options(&get_args(&["a.>", "--durable", "d", "--count", "2"])).unwrap();
        assert_eq!(o, base);
        let flags = [
            "a.>",
            "--durable",
            "d",
            "--count",
            "2",
            "--max-in-flight",
            "50",
        ];
        let o = options(&get_args(&flags)).unwrap();
        assert_eq!(o, base.max_in_flight(50));
    }

    #[test]
    fn exec_makes_a_member_manual_ack() {
        let o = options(&get_args(&["a.>", "--durable", "d", "--exec", "cat"])).unwrap();
        assert_eq!(o, SubscribeOptions::new().durable("d").ack(AckMode::Manual));
        let o = options(&get_args(&["a.>", "--exec", "cat"])).unwrap();
        assert_eq!(o, SubscribeOptions::new());
    }
}
