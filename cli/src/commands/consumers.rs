//! `bus consumers [list | info NAME | set NAME ... | seek NAME --to START | delete NAME]`: the
//! consumers as a table (with their settings: ack mode, ack wait, max deliver, max in
//! flight) or (`--json`) a JSON array; one consumer; changing, moving or deleting one.
//!
//! `set` sends `PATCH /v1/consumers/{name}` with only the settings given and prints the
//! consumer as the broker answered it. The client crate has no call for it yet, so it is a
//! plain HTTP/1.1 request here ([`patch`]), bounded by [`PATCH_TIMEOUT`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;

use bus_client::ApiError;
use bus_proto::ConsumerInfo;

use crate::args::{Backoff, ConsumersAction, MaxDeliver};
use crate::error::CliError;
use crate::output::{Output, consumer_table, notice};

/// How long `bus consumers set` waits for the connection and the answer, in all.
pub const PATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Runs `bus consumers`.
pub async fn run(url: &str, json: bool, action: Option<ConsumersAction>) -> Result<(), CliError> {
    let client = super::connect(url).await?;
    let mut out = Output::new();
    match action.unwrap_or(ConsumersAction::List) {
        ConsumersAction::List => {
            let list = client.consumers().await.map_err(CliError::client)?;
            if json {
                return out.line(&encode(&list)?);
            }
            if list.is_empty() {
                notice("no consumers");
                return Ok(());
            }
            out.line(&consumer_table(&list))
        }
        ConsumersAction::Info { name } => {
            let c = client.consumer(&name).await.map_err(CliError::client)?;
            show(&mut out, json, &c)
        }
        ConsumersAction::Set {
            name,
            ack_wait,
            max_deliver,
            backoff,
            max_in_flight,
        } => {
            let body = settings_json(ack_wait, max_deliver, backoff.as_ref(), max_in_flight);
            let c = patch(url, &name, body)
                .await
                .map_err(|e| e.context(format!("cannot change consumer {name}")))?;
            show(&mut out, json, &c)
        }
        ConsumersAction::Seek { name, to } => {
            let c = client
                .seek_consumer(&name, to)
                .await
                .map_err(CliError::client)?;
            show(&mut out, json, &c)
        }
        ConsumersAction::Delete { name } => {
            client
                .delete_consumer(&name)
                .await
                .map_err(CliError::client)?;
            if json {
                out.line(&serde_json::json!({ "deleted": name }).to_string())
            } else {
                out.line(&format!("deleted consumer {name}"))
            }
        }
    }
}

/// The `PATCH` body: only the settings given. Durations in whole milliseconds (rounded up,
/// so a positive one never becomes 0); `"max_deliver": null` for unlimited.
fn settings_json(
    ack_wait: Option<Duration>,
    max_deliver: Option<MaxDeliver>,
    backoff: Option<&Backoff>,
    max_in_flight: Option<u64>,
) -> String {
    let ms = |d: Duration| format!("{}ms", d.as_nanos().div_ceil(1_000_000));
    let mut v = serde_json::Map::new();
    if let Some(w) = ack_wait {
        v.insert("ack_wait".into(), ms(w).into());
    }
    match max_deliver {
        Some(MaxDeliver::Limit(n)) => {
            v.insert("max_deliver".into(), n.into());
        }
        Some(MaxDeliver::Unlimited) => {
            v.insert("max_deliver".into(), serde_json::Value::Null);
        }
        None => {}
    }
    if let Some(b) = backoff {
        let steps: Vec<serde_json::Value> = b.0.iter().map(|d| ms(*d).into()).collect();
        v.insert("backoff".into(), steps.into());
    }
    if let Some(n) = max_in_flight {
        v.insert("max_in_flight".into(), n.into());
    }
    serde_json::Value::Object(v).to_string()
}

/// A failed `PATCH`, with its exit status (2).
#[derive(Debug)]
struct PatchError(CliError);

impl PatchError {
    fn context(self, message: String) -> CliError {
        let code = self.0.code;
        match self.0.error {
            Some(cause) => CliError {
                code,
                ..CliError::with_cause(message, cause)
            },
            None => CliError::msg(message),
        }
    }
}

impl<E: Into<crate::error::BoxError>> From<E> for PatchError {
    fn from(e: E) -> PatchError {
        PatchError(CliError {
            code: crate::error::EXIT_ERROR,
            error: Some(e.into()),
        })
    }
}

/// `PATCH /v1/consumers/{name}` with JSON `body` on the broker at `base`; the consumer as it
/// is now. A 4xx or 5xx answer becomes the broker's error (`broker answered 404
/// unknown_consumer: ...`).
async fn patch(base: &str, name: &str, body: String) -> Result<ConsumerInfo, PatchError> {
    match tokio::time::timeout(PATCH_TIMEOUT, patch_unbounded(base, name, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PATCH_TIMEOUT:?}").into()),
    }
}

async fn patch_unbounded(base: &str, name: &str, body: String) -> Result<ConsumerInfo, PatchError> {
    let base: Uri = base
        .parse()
        .map_err(|e| PatchError::from(format!("invalid broker URL {base:?}: {e}")))?;
    if base.scheme_str() != Some("http") {
        return Err(format!("the broker URL {base} is not an http:// URL").into());
    }
    let (Some(host), Some(authority)) = (base.host(), base.authority()) else {
        return Err(format!("the broker URL {base} has no host").into());
    };
    let port = base.port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| PatchError::from(format!("cannot connect to {authority}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection runs until the answer is read; dropping `sender` ends it.
    tokio::spawn(conn);
    let path = format!(
        "{}/v1/consumers/{}",
        base.path().trim_end_matches('/'),
        encode_segment(name)
    );
    let req = Request::builder()
        .method(Method::PATCH)
        .uri(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("bus-cli/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let answer = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await?
        .to_bytes();
    if !(200..300).contains(&status) {
        return Err(ApiError::from_response(status, &answer).into());
    }
    serde_json::from_slice(&answer)
        .map_err(|e| PatchError::from(format!("the broker's answer is not a consumer: {e}")))
}

/// `name` as one path segment: unreserved bytes as they are, the rest percent-encoded.
fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One consumer: its JSON, or a table of one row.
fn show(out: &mut Output, json: bool, c: &ConsumerInfo) -> Result<(), CliError> {
    if json {
        out.line(&encode(c)?)
    } else {
        out.line(&consumer_table(std::slice::from_ref(c)))
    }
}

fn encode(v: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string(v).map_err(|e| CliError::with_cause("cannot encode the consumers", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_json_holds_only_what_was_given() {
        assert_eq!(
            settings_json(None, None, None, Some(100)),
            r#"{"max_in_flight":100}"#
        );
        let b = Backoff(vec![Duration::from_secs(1), Duration::from_millis(1500)]);
        let v: serde_json::Value = serde_json::from_str(&settings_json(
            Some(Duration::from_secs(30)),
            Some(MaxDeliver::Unlimited),
            Some(&b),
            None,
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ack_wait":"30000ms","max_deliver":null,"backoff":["1000ms","1500ms"]})
        );
        let v = settings_json(
            None,
            Some(MaxDeliver::Limit(5)),
            Some(&Backoff(vec![])),
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(v, serde_json::json!({"backoff":[],"max_deliver":5}));
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(encode_segment("mail-er_1"), "mail-er_1");
        assert_eq!(encode_segment("~s-3"), "~s-3");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
