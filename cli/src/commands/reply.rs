//! `bus reply <pattern> --exec CMD | --echo`: a long-lived responder from the shell, built on
//! [`Client::serve`](bus_client::Client::serve).
//!
//! It joins the queue group `--group` (default: the pattern itself) from `newest` with manual
//! acks, so responders started with the same pattern share the requests and a request whose
//! responder dies before answering goes to another one. For each request it runs CMD through
//! `sh -c` with the request payload on stdin (and `BUS_SUBJECT`, `BUS_EVENT_ID` in the
//! environment) and replies with its stdout (at most [`MAX_OUTPUT`] bytes); a non-zero exit,
//! or a command still running after 4/5 of `--ack-wait` (it is killed), becomes an error reply
//! carrying the reason and the first line of stderr. Each request is acked once answered; an
//! event without `reply_to` is not a request and is acked unanswered.
//!
//! One line per request goes to stdout (`<subject> <id> replied` or `... error: <message>`,
//! or a JSON object with `--json`). At most `--concurrency` requests run at once. SIGINT or
//! SIGTERM (or `--count` answers) stops taking requests; those in flight finish and are
//! answered before the command exits 0. A second signal exits at once (status 130; requests
//! in flight go to another responder).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use bus_client::{
    Answer, HandlerError, Message, ServeOptions, Start, SubscribeOptions, header_safe,
};

use crate::args::ReplyArgs;
use crate::error::CliError;
use crate::output::{Output, notice};

/// Most bytes of a command's stdout (a reply) read; more is an error reply.
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;
/// Most bytes of a command's stderr read (for the error message).
const MAX_STDERR: u64 = 64 * 1024;

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
            // Dropping the command's future kills it (kill_on_drop).
            let out = tokio::time::timeout(*limit, run_command(cmd, m))
                .await
                .map_err(|_| {
                    HandlerError::new(format!("command still running after {limit:?}: killed"))
                })??;
            let ct = super::put::detect_content_type(&out);
            Ok(Answer::new(out).content_type(ct))
        }
    }
}

/// Runs `cmd` for request `m`: its stdout, or why it failed.
async fn run_command(cmd: &str, m: &Message) -> Result<Bytes, HandlerError> {
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
    let mut child = child.map_err(|e| HandlerError::new(format!("cannot run sh: {e}")))?;
    // Feed stdin while the output is read, so that neither side can block the other.
    let stdin = child.stdin.take();
    let payload = m.payload.clone();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin closes the pipe: not an error.
            let _ = stdin.write_all(&payload).await;
        }
    };
    let (_, out, err) = tokio::join!(
        feed,
        read_head(child.stdout.take(), MAX_OUTPUT, false),
        read_head(child.stderr.take(), MAX_STDERR, true),
    );
    if out.len() as u64 > MAX_OUTPUT {
        return Err(HandlerError::new(format!(
            "command output exceeds {} MiB",
            MAX_OUTPUT >> 20
        )));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| HandlerError::new(format!("cannot run {cmd:?}: {e}")))?;
    if status.success() {
        return Ok(Bytes::from(out));
    }
    let status = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    };
    let stderr = String::from_utf8_lossy(&err);
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let msg = if first.is_empty() {
        format!("command failed with {status}")
    } else {
        format!("command failed with {status}: {}", first.trim())
    };
    Err(HandlerError::new(header_safe(&msg)))
}

/// Up to `cap + 1` bytes of `pipe` (one more than allowed shows it was exceeded). With
/// `drain`, the rest is read and dropped, so the writer never blocks on a full pipe.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    cap: u64,
    drain: bool,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let Some(mut pipe) = pipe else {
        return buf;
    };
    let _ = (&mut pipe).take(cap + 1).read_to_end(&mut buf).await;
    if drain {
        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    }
    buf
}
