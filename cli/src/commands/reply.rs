//! `bus reply <pattern> --exec CMD | --echo`: a long-lived responder from the shell.
//!
//! It joins the queue group `--group` (default: the pattern itself) from `newest` with manual
//! acks, so responders started with the same pattern share the requests and a request whose
//! responder dies before answering goes to another one. For each request it runs CMD through
//! `sh -c` with the request payload on stdin (and `BUS_SUBJECT`, `BUS_EVENT_ID` in the
//! environment) and replies with its stdout; a non-zero exit becomes an error reply carrying
//! the exit status and the first line of stderr. Each request is acked once answered.
//!
//! One line per request goes to stdout (`<subject> <id> replied|error: ...`, or a JSON object
//! with `--json`). At most `--concurrency` requests run at once (the broker delivers no more:
//! it is the group's `max_in_flight`). SIGINT or SIGTERM stops taking requests; those in
//! flight finish and are answered before the command exits 0.

use std::process::Stdio;
use std::sync::Arc;

use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;

use bus_client::{AckMode, Client, ErrorKind, Message, Start, StreamItem, SubscribeOptions};

use crate::args::ReplyArgs;
use crate::error::CliError;
use crate::output::{Output, notice};

/// Longest error message sent in an error reply, in bytes.
const MAX_ERROR_MESSAGE: usize = 512;

/// What answers a request.
#[derive(Debug)]
enum Handler {
    Echo,
    Exec(String),
}

/// How one request was answered.
struct Outcome {
    subject: String,
    id: String,
    /// `None` for a reply, else the error reply's message.
    error: Option<String>,
    /// Why the reply did not reach the caller, if it did not.
    undelivered: Option<String>,
}

/// Runs `bus reply`.
pub async fn run(url: &str, json: bool, args: ReplyArgs) -> Result<(), CliError> {
    let group = args.group.clone().unwrap_or_else(|| args.pattern.clone());
    let mut options = SubscribeOptions::new()
        .from(Start::Newest)
        .group(group.clone())
        .ack(AckMode::Manual)
        .ack_wait(args.ack_wait)
        .max_in_flight(args.concurrency as usize);
    if args.count > 0 {
        options = options.limit(args.count);
    }
    let handler = Arc::new(match args.exec {
        Some(cmd) => Handler::Exec(cmd),
        None => Handler::Echo,
    });
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
    let client = super::connect(url).await?;
    let mut sub = client
        .subscribe_with(&args.pattern, options)
        .await
        .map_err(|e| CliError::client_context(format!("cannot answer {}", args.pattern), e))?;
    notice(&format!(
        "answering requests on {} in group {group}",
        args.pattern
    ));
    let mut out = Output::new();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut answered: u64 = 0;
    let mut stream_open = true;
    let limit = args.concurrency as usize;
    while stream_open || !tasks.is_empty() {
        tokio::select! {
            item = sub.next(), if stream_open && tasks.len() < limit => match item {
                Some(Ok(StreamItem::Event(m))) => {
                    tasks.spawn(answer(client.clone(), m, handler.clone()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    notice(&format!("the request stream failed: {}", crate::error::chain(&e)));
                    stream_open = false;
                }
                None => {
                    notice("the broker shut down; finishing the requests in flight");
                    stream_open = false;
                }
            },
            Some(done) = tasks.join_next() => {
                let o = done.map_err(|e| CliError::with_cause("a request handler failed", e))?;
                out.line(&report(&o, json))?;
                answered += 1;
                if answered == args.count {
                    stream_open = false;
                }
            }
            _ = sigint.recv(), if stream_open => {
                notice("SIGINT: finishing the requests in flight");
                stream_open = false;
            }
            _ = sigterm.recv(), if stream_open => {
                notice("SIGTERM: finishing the requests in flight");
                stream_open = false;
            }
        }
    }
    Ok(())
}

/// One line for stdout about `o`.
fn report(o: &Outcome, json: bool) -> String {
    if json {
        let mut v = serde_json::json!({
            "id": o.id,
            "subject": o.subject,
            "status": if o.error.is_some() { "error" } else { "replied" },
        });
        if let Some(e) = &o.error {
            v["error"] = e.as_str().into();
        }
        if let Some(u) = &o.undelivered {
            v["undelivered"] = u.as_str().into();
        }
        return v.to_string();
    }
    let mut line = format!("{} {}", o.subject, o.id);
    match &o.error {
        None => line.push_str(" replied"),
        Some(e) => line.push_str(&format!(" error: {e}")),
    }
    if let Some(u) = &o.undelivered {
        line.push_str(&format!(" (not delivered: {u})"));
    }
    line
}

/// Answers one request and acks it.
async fn answer(client: Client, m: Message, handler: Arc<Handler>) -> Outcome {
    let mut outcome = Outcome {
        subject: m.subject.clone(),
        id: m.id.clone(),
        error: None,
        undelivered: None,
    };
    match &m.reply_to {
        None => outcome.undelivered = Some("the event has no reply_to".into()),
        Some(inbox) => {
            let (payload, content_type, error) = match handler.as_ref() {
                Handler::Echo => (m.payload.to_vec(), m.content_type.clone(), None),
                Handler::Exec(cmd) => run_command(cmd, &m).await,
            };
            let mut reply = client.reply(inbox, payload);
            if let Some(ct) = content_type {
                reply = reply.content_type(ct);
            }
            if let Some(e) = &error {
                reply = reply.error(e.clone());
            }
            outcome.error = error;
            if let Err(e) = reply.await {
                outcome.undelivered = Some(match e.api_error() {
                    Some(a) if a.code == "unknown_inbox" => "the caller stopped waiting".into(),
                    _ => crate::error::chain(&e),
                });
            }
        }
    }
    // Answered (or unanswerable): done either way. A failed ack comes back as a redelivery.
    if let Err(e) = m.ack().await
        && !matches!(e.kind(), ErrorKind::Api { status: 404, .. })
    {
        notice(&format!("cannot ack {}: {}", m.id, crate::error::chain(&e)));
    }
    outcome
}

/// Runs `cmd` for request `m`: (stdout, its content type, the error message of a failure).
async fn run_command(cmd: &str, m: &Message) -> (Vec<u8>, Option<String>, Option<String>) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("BUS_SUBJECT", &m.subject)
        .env("BUS_EVENT_ID", &m.id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return (
                Vec::new(),
                None,
                Some(clean(&format!("cannot run sh: {e}"))),
            );
        }
    };
    // Feed stdin while the output is read, so that neither side can block the other.
    let stdin = child.stdin.take();
    let payload = m.payload.clone();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin closes the pipe: not an error.
            let _ = stdin.write_all(&payload).await;
        }
    };
    let (_, output) = tokio::join!(feed, child.wait_with_output());
    match output {
        Err(e) => (
            Vec::new(),
            None,
            Some(clean(&format!("cannot run {cmd:?}: {e}"))),
        ),
        Ok(o) if o.status.success() => {
            let ct = super::put::detect_content_type(&o.stdout).to_owned();
            (o.stdout, Some(ct), None)
        }
        Ok(o) => {
            let status = match o.status.code() {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_owned(),
            };
            let stderr = String::from_utf8_lossy(&o.stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let msg = if first.is_empty() {
                format!("command failed with {status}")
            } else {
                format!("command failed with {status}: {}", first.trim())
            };
            (Vec::new(), None, Some(clean(&msg)))
        }
    }
}

/// `s` as an HTTP header value: visible ASCII and spaces (others become `?`), at most
/// [`MAX_ERROR_MESSAGE`] bytes.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_ERROR_MESSAGE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_fit_in_a_header() {
        assert_eq!(clean("bad\tthing é"), "bad?thing ?");
        assert_eq!(clean(&"x".repeat(1000)).len(), MAX_ERROR_MESSAGE);
    }
}
