//! `bus req <subject> [payload]`: send a request and print the reply's payload as it came
//! (with `--json`, the reply as one JSON object: `request_id`, `subject`, `headers`,
//! `content_type` and `payload` in the event JSON's payload form).
//!
//! The payload is written as it came; when it is text (UTF-8) that does not end with a
//! newline, a newline follows, on a terminal and in a pipe alike, so that the shell prompt
//! or the next line of a script's output starts on a line of its own. An empty or binary
//! payload gets none (`bus req ... > file` keeps binary bytes exact).
//!
//! SIGINT or SIGTERM while waiting stops waiting: nothing is printed and the command exits
//! 0 (the request stays published; a reply that comes later is not read).
//!
//! Exit statuses: 0 replied (or stopped by a signal); 1 an error reply (the responder's message on stderr); 3 no
//! responders (nothing stored); 4 no reply within `--timeout`.

use bus_client::Reply;
use bus_proto::event::{push_headers, push_json_str, push_payload};

use crate::args::ReqArgs;
use crate::error::CliError;
use crate::output::{Output, notice};

/// Runs `bus req`.
pub async fn run(url: &str, json: bool, args: ReqArgs) -> Result<(), CliError> {
    let mut signals = super::follow::Signals::install()?;
    let client = super::connect(url).await?;
    let payload = match args.payload.as_deref() {
        Some("-") => super::put::read_stdin()?,
        Some(p) => p.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let content_type = args.content_type.or_else(|| {
        (!payload.is_empty()).then(|| super::put::detect_content_type(&payload).to_owned())
    });
    let mut request = client
        .request(args.subject.clone(), payload)
        .timeout(args.timeout);
    if let Some(ct) = content_type {
        request = request.content_type(ct);
    }
    for (name, value) in args.headers {
        request = request.header(name, value);
    }
    let reply = tokio::select! {
        r = request.into_future() => r?,
        which = signals.recv() => {
            notice(&format!("{which}: stopped waiting for the reply"));
            return Ok(());
        }
    };
    let mut out = Output::new();
    if json {
        return out.line(&reply_json(&args.subject, &reply));
    }
    out.bytes(&reply.payload)?;
    if needs_newline(&reply.payload) {
        out.bytes(b"\n")?;
    }
    Ok(())
}

/// Whether a newline goes after payload `p`: it is text and does not end with one.
fn needs_newline(p: &[u8]) -> bool {
    !p.is_empty() && !p.ends_with(b"\n") && std::str::from_utf8(p).is_ok()
}

/// The reply as one line of JSON.
fn reply_json(subject: &str, reply: &Reply) -> String {
    let mut out = String::from("{\"request_id\":");
    push_json_str(&mut out, &reply.request_id);
    out.push_str(",\"subject\":");
    push_json_str(&mut out, subject);
    push_headers(
        &mut out,
        reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if let Some(ct) = &reply.content_type {
        out.push_str(",\"content_type\":");
        push_json_str(&mut out, ct);
    }
    push_payload(&mut out, &reply.payload, reply.content_type.as_deref());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replies_end_with_a_newline() {
        assert!(needs_newline(b"ok"));
        assert!(!needs_newline(b"ok\n"));
        assert!(!needs_newline(b""));
        assert!(!needs_newline(b"\xff\x00"));
    }

    #[test]
    fn reply_json_takes_the_event_payload_forms() {
        let mut reply = Reply {
            request_id: "rpc-1-0".into(),
            headers: [("source".to_owned(), "users".to_owned())].into(),
            content_type: Some("application/json".into()),
            payload: br#"{"name":"ada"}"#.to_vec().into(),
        };
        let v: serde_json::Value = serde_json::from_str(&reply_json("rpc.get", &reply)).unwrap();
        assert_eq!(v["request_id"], "rpc-1-0");
        assert_eq!(v["subject"], "rpc.get");
        assert_eq!(v["headers"]["source"], "users");
        assert_eq!(v["payload"]["name"], "ada");
        reply.content_type = Some("application/octet-stream".into());
        reply.payload = b"\xff\x00".to_vec().into();
        let v: serde_json::Value = serde_json::from_str(&reply_json("rpc.get", &reply)).unwrap();
        assert_eq!(v["payload"], "/wA=");
        assert_eq!(v["encoding"], "base64");
    }
}
