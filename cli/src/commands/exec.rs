//! Running a shell command once per message, shared by `bus reply --exec` and
//! `bus get --exec`: `sh -c CMD` with the input on its stdin, a time limit, and a cap on the
//! stdout read.
//!
//! Bound: at most [`MAX_OUTPUT`] bytes of stdout are kept (one more byte read marks the
//! output as over the cap; the rest is drained and dropped, so the command never blocks on a
//! full pipe), and at most [`MAX_STDERR`] bytes of a captured stderr. A command still running
//! at its time limit is killed (SIGKILL, through `kill_on_drop`) and reported as
//! [`Outcome::TimedOut`].

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Most bytes of a command's stdout kept; more is a failure.
pub const MAX_OUTPUT: u64 = 16 * 1024 * 1024;
/// Most bytes of a command's stderr kept when it is captured (for an error message).
pub const MAX_STDERR: u64 = 64 * 1024;

/// One command to run.
#[derive(Debug)]
pub struct Exec<'a> {
    /// The shell command line.
    pub cmd: &'a str,
    /// Written to its stdin, which is then closed.
    pub input: &'a [u8],
    /// Environment variables set for it.
    pub env: &'a [(&'a str, &'a str)],
    /// How long it may run before it is killed.
    pub limit: Duration,
    /// Whether its stderr is read (for [`Finished::stderr_line`]) rather than passed through
    /// to ours.
    pub capture_stderr: bool,
}

/// What running it came to.
#[derive(Debug)]
pub enum Outcome {
    /// It exited (or was killed by a signal other than ours).
    Finished(Finished),
    /// It was still running at the limit and was killed.
    TimedOut(Duration),
    /// `sh` could not be started, or waiting for it failed.
    NotRun(String),
}

/// A command that ended by itself.
#[derive(Debug)]
pub struct Finished {
    /// Whether it exited with status 0.
    pub success: bool,
    /// `exit status N` or `killed by a signal`.
    pub status: String,
    /// Its stdout, at most [`MAX_OUTPUT`] bytes.
    pub stdout: Vec<u8>,
    /// Whether stdout went past [`MAX_OUTPUT`] (the rest was dropped).
    pub over_cap: bool,
    /// The first non-empty line of its stderr, when captured.
    pub stderr_line: String,
}

impl Finished {
    /// Why it counts as a failure, or `None` when it succeeded within the cap.
    pub fn failure(&self) -> Option<String> {
        if self.over_cap {
            return Some(format!("command output exceeds {} MiB", MAX_OUTPUT >> 20));
        }
        if self.success {
            return None;
        }
        Some(if self.stderr_line.is_empty() {
            format!("command failed with {}", self.status)
        } else {
            format!("command failed with {}: {}", self.status, self.stderr_line)
        })
    }
}

impl Outcome {
    /// Why it counts as a failure, or `None` when it succeeded.
    pub fn failure(&self) -> Option<String> {
        match self {
            Outcome::Finished(f) => f.failure(),
            Outcome::TimedOut(limit) => {
                Some(format!("command still running after {limit:?}: killed"))
            }
            Outcome::NotRun(why) => Some(why.clone()),
        }
    }
}

/// Runs `e`, bounded by its limit.
pub async fn run(e: &Exec<'_>) -> Outcome {
    // Dropping the command's future kills it (kill_on_drop).
    match tokio::time::timeout(e.limit, run_unbounded(e)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::TimedOut(e.limit),
    }
}

async fn run_unbounded(e: &Exec<'_>) -> Outcome {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(e.cmd)
        .envs(e.env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if e.capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(err) => return Outcome::NotRun(format!("cannot run sh: {err}")),
    };
    // Feed stdin while the output is read, so that neither side can block the other.
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin closes the pipe: not an error.
            let _ = stdin.write_all(e.input).await;
        }
    };
    let (_, mut out, err) = tokio::join!(
        feed,
        read_head(child.stdout.take(), MAX_OUTPUT),
        read_head(child.stderr.take(), MAX_STDERR),
    );
    let status = match child.wait().await {
        Ok(s) => s,
        Err(err) => return Outcome::NotRun(format!("cannot run {:?}: {err}", e.cmd)),
    };
    let over_cap = out.len() as u64 > MAX_OUTPUT;
    out.truncate(MAX_OUTPUT as usize);
    let stderr = String::from_utf8_lossy(&err);
    Outcome::Finished(Finished {
        success: status.success(),
        status: match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_owned(),
        },
        stdout: out,
        over_cap,
        stderr_line: stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned(),
    })
}

/// Up to `cap + 1` bytes of `pipe` (one more than allowed shows it was exceeded); the rest is
/// read and dropped, so the writer never blocks on a full pipe.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, cap: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let Some(mut pipe) = pipe else {
        return buf;
    };
    let _ = (&mut pipe).take(cap + 1).read_to_end(&mut buf).await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    buf
}
