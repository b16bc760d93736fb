//! `bus reply <pattern> --exec CMD | --echo`: a long-lived responder from the shell, built on
//! [`Client::serve`](bus_client::Client::serve).
//!
//! It joins the queue group `--group` (default: the pattern itself) from `newest` with manual
//! acks, so responders started with the same pattern share the requests and a request whose
//! responder dies before answering goes to another one. For each request it runs CMD through
//! `sh -c` with the request payload on stdin (and `BUS_SUBJECT`, `BUS_EVENT_ID` in the
//! environment) and replies with its stdout (at most
//! [`MAX_OUTPUT`](super::exec::MAX_OUTPUT) bytes; the runner is [`super::exec`]); a non-zero exit,
//! or a command still running after 4/5 of `--ack-wait` (it is killed), becomes an error reply
//! carrying the reason and the first line of stderr. Each request is acked once answered; an
//! event without `reply_to` is not a request and is acked unanswered.
//!
//! One line per request goes to stdout (`<subject> <id> replied` or `... error: <message>`,
//! or a JSON object with `--json`). At most `--concurrency` requests run at once. SIGINT or
//! SIGTERM (or `--count` answers) stops taking requests; those in flight finish and are
//! answered before the command exits 0. A second signal exits at once (status 130; requests
//! in flight go to another responder).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use bus_client::{Answer, HandlerError, Message, ServeOptions, SubscribeOptions, header_safe};
use bus_proto::Start;

use crate::args::ReplyArgs;
use crate::error::CliError;
use crate::output::{Output, notice};

/// What answers a request.
#[derive(Debug)]
enum Handler {
    Echo,
    /// The command and how long it may run.
    Exec(String, std::time::Duration),
}

/// Runs `bus reply`.
pub async fn run(url: &str, json: bool, args: ReplyArgs) -> Result<(), CliError> {
    let group = args.group.clone().unwrap_or_else(|| args.pattern.clone());
    let mut subscribe = SubscribeOptions::new()
        .from(Start::Newest)
        .group(group.clone())
        .ack_wait(args.ack_wait);
    if args.count > 0 {
        subscribe = subscribe.limit(args.count);
    }
    // Handlers first: a signal from the moment the notice below is printed must be caught.
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    let (Ok(mut sigint), Ok(mut sigterm)) = handlers else {
        return Err(CliError::msg(
            "cannot install the SIGINT and SIGTERM handlers",
        ));
    };
    let answered = Arc::new(AtomicU64::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let stop = {
        let (answered, enough, count) = (answered.clone(), enough.clone(), args.count);
        async move {
            let reached = async {
                loop {
                    let n = enough.notified();
                    if count > 0 && answered.load(Ordering::SeqCst) >= count {
                        return;
                    }
                    n.await;
                }
            };
            let signalled = tokio::select! {
                _ = sigint.recv() => { notice("SIGINT: finishing the requests in flight"); true }
                _ = sigterm.recv() => { notice("SIGTERM: finishing the requests in flight"); true }
                _ = reached => false,
            };
            if signalled {
                // Patience has an end: a second signal stops at once.
                tokio::spawn(async move {
                    tokio::select! {
                        _ = sigint.recv() => {}
                        _ = sigterm.recv() => {}
                    }
                    notice("second signal: stopping now");
                    std::process::exit(130);
                });
            }
        }
    };
    let options = ServeOptions::new()
        .subscribe(subscribe)
        .concurrency(args.concurrency as usize)
        .shutdown(stop);
    let handler = Arc::new(match args.exec {
        // Killed a little before the ack wait runs out, so the error reply and the ack land
        // before the broker hands the request to another responder.
        Some(cmd) => Handler::Exec(cmd, args.ack_wait.mul_f64(0.8)),
        None => Handler::Echo,
    });
    let client = super::connect(url).await?;
    notice(&format!(
        "answering requests on {} in group {group}",
        args.pattern
    ));
    let served = client.serve(&args.pattern, options, move |m| {
        let (handler, answered, enough) = (handler.clone(), answered.clone(), enough.clone());
        async move {
            if m.reply_to.is_none() {
                let _ = Output::new().line(&format!("{} {} skipped: no reply_to", m.subject, m.id));
                return Ok(Answer::default());
            }
            let outcome = answer(&handler, &m).await;
            let line = report(&m, outcome.as_ref().err(), json);
            // A closed stdout does not stop the responder.
            let _ = Output::new().line(&line);
            answered.fetch_add(1, Ordering::SeqCst);
            enough.notify_waiters();
            outcome
        }
    });
    served
        .await
        .map_err(|e| CliError::client_context(format!("cannot answer {}", args.pattern), e))
}

/// One line for stdout about request `m`.
fn report(m: &Message, error: Option<&HandlerError>, json: bool) -> String {
    if json {
        let mut v = serde_json::json!({
            "id": m.id,
            "subject": m.subject,
            "status": if error.is_some() { "error" } else { "replied" },
        });
        if let Some(e) = error {
            v["error"] = e.message().into();
        }
        return v.to_string();
    }
    match error {
        None => format!("{} {} replied", m.subject, m.id),
        Some(e) => format!("{} {} error: {}", m.subject, m.id, e.message()),
    }
}

/// The reply to `m`, or an error reply's message.
async fn answer(handler: &Handler, m: &Message) -> Result<Answer, HandlerError> {
    match handler {
        Handler::Echo => {
            let a = Answer::new(m.payload.clone());
            Ok(match &m.content_type {
                Some(ct) => a.content_type(ct.clone()),
                None => a,
            })
        }
        Handler::Exec(cmd, limit) => {
            let outcome = super::exec::run(&super::exec::Exec {
                cmd,
                input: &m.payload,
                env: &[("BUS_SUBJECT", &m.subject), ("BUS_EVENT_ID", &m.id)],
                limit: *limit,
                capture_stderr: true,
            })
            .await;
            if let Some(why) = outcome.failure() {
                return Err(HandlerError::new(header_safe(&why)));
            }
            let super::exec::Outcome::Finished(f) = outcome else {
                return Err(HandlerError::new("the command did not run"));
            };
            let out = Bytes::from(f.stdout);
            let ct = super::put::detect_content_type(&out);
            Ok(Answer::new(out).content_type(ct))
        }
    }
}
