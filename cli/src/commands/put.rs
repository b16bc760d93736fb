//! `bus put <subject> [payload]`: publish one event.
//!
//! The payload is the argument, or stdin when it is absent or `-`. Without
//! `--content-type`, a payload that parses as JSON is sent as `application/json`, other
//! UTF-8 text as `text/plain; charset=utf-8`, and anything else as
//! `application/octet-stream`.
//!
//! With `--confirm N` the publish waits until N distinct consumers acked the event, at most
//! `--timeout`. The receipt is printed either way; when fewer than N confirmed in time the
//! command exits with status 4 (the event stays stored).

use std::io::{IsTerminal as _, Read as _};

use crate::args::PutArgs;
use crate::error::CliError;
use crate::output::human_duration;
use crate::output::{Output, notice};

/// Largest payload read from stdin: the largest payload limit a broker can have
/// (256 MiB); a broker configured lower answers `413 payload_too_large`.
const MAX_STDIN_BYTES: u64 = 256 * 1024 * 1024;

/// Runs `bus put`.
pub async fn run(url: &str, json: bool, args: PutArgs) -> Result<(), CliError> {
    // Connect first: an unreachable broker fails fast, before stdin is read.
    let client = super::connect(url).await?;
    let payload = match args.payload.as_deref() {
        Some("-") | None => read_stdin()?,
        Some(p) => p.as_bytes().to_vec(),
    };
    let content_type = args
        .content_type
        .unwrap_or_else(|| detect_content_type(&payload).to_owned());
    let mut publish = client
        .publish(args.subject.clone(), payload)
        .content_type(content_type);
    for (name, value) in args.headers {
        publish = publish.header(name, value);
    }
    if let Some(id) = args.id {
        publish = publish.msg_id(id);
    }
    if let Some(r) = args.reply_to {
        publish = publish.reply_to(r);
    }
    if let Some(n) = args.confirm {
        publish = publish.confirm(n, args.timeout);
    }
    let receipt = publish.await?;
    let mut out = Output::new();
    let confirmation = match (receipt.confirmed, receipt.required) {
        (Some(k), Some(n)) => Some((k, n)),
        _ => None,
    };
    if json {
        out.line(receipt.json())?;
    } else if receipt.duplicate {
        out.line(&format!(
            "duplicate of {} (sequence {}): nothing stored",
            receipt.id, receipt.sequence
        ))?;
    } else {
        let mut line = format!(
            "published {} as {} (sequence {})",
            receipt.subject, receipt.id, receipt.sequence
        );
        if let Some((k, n)) = confirmation {
            line.push_str(&format!(", confirmed by {k} of {n}"));
        }
        out.line(&line)?;
    }
    match confirmation {
        Some((k, n)) if k < n => Err(CliError::timeout(format!(
            "only {k} of {n} consumers confirmed {} within {}",
            receipt.id,
            human_duration(args.timeout)
        ))),
        _ => Ok(()),
    }
}

/// The content type `bus put` gives a payload by default.
pub fn detect_content_type(payload: &[u8]) -> &'static str {
    match std::str::from_utf8(payload) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            "application/json"
        }
        Ok(_) => "text/plain; charset=utf-8",
        Err(_) => "application/octet-stream",
    }
}

/// Reads all of stdin, at most [`MAX_STDIN_BYTES`].
pub fn read_stdin() -> Result<Vec<u8>, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        notice("reading the payload from stdin (end it with Ctrl-D)");
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::with_cause("cannot read the payload from stdin", e))?;
    if buf.len() as u64 > MAX_STDIN_BYTES {
        return Err(CliError::msg(format!(
            "the payload on stdin exceeds {} MiB",
            MAX_STDIN_BYTES >> 20
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_content_types() {
        for (payload, want) in [
            (&br#"{"name":"ada"}"#[..], "application/json"),
            (b" [1, 2]\n", "application/json"),
            (b"42", "application/json"),
            (b"\"quoted\"", "application/json"),
            (b"hello", "text/plain; charset=utf-8"),
            (b"{broken", "text/plain; charset=utf-8"),
            (b"", "text/plain; charset=utf-8"),
            ("héllo".as_bytes(), "text/plain; charset=utf-8"),
            (b"\x00\xff\xfe", "application/octet-stream"),
        ] {
            assert_eq!(detect_content_type(payload), want, "{payload:?}");
        }
    }
}
