//! Acknowledgements: what can be done with a delivery ([`AckOp`]), the broker's answer
//! ([`AckStatus`]), and batches of them ([`AckItem`], [`AckResult`]).
//!
//! One acknowledgement is `POST /v1/consumers/{name}/events/{id}/{op}`; a batch is
//! `POST /v1/consumers/{name}/acks`, answered entry by entry. Acknowledging an event that was
//! already acked, terminated or dead-lettered succeeds with [`AckStatus::AlreadyAcked`], so
//! retrying after a broken connection is safe.

use std::sync::Arc;
use std::time::Duration;

use bus_proto::ErrorCode;
use bytes::Bytes;
use hyper::Method;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use crate::ack_batcher::AckBatcher;
use crate::client::{Body, Client, decode_json, encode};
use crate::consumer::millis_param;
use crate::error::{ApiError, Error, ErrorKind};

/// What to do with a delivery.
///
/// ```no_run
/// # async fn demo(m: bus_client::Message, handled: bool) -> Result<(), bus_client::Error> {
/// use std::time::Duration;
/// use bus_client::AckOp;
/// let op = if handled {
///     AckOp::Ack
/// } else {
///     AckOp::Nack(Some(Duration::from_secs(10)))
/// };
/// m.acknowledge(op).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOp {
    /// Done: never redelivered.
    Ack,
    /// Redeliver: now (`None`), or after the delay; the delivery count goes up when it is
    /// redelivered.
    Nack(Option<Duration>),
    /// Still working: the ack wait restarts.
    InProgress,
    /// Never redeliver: the event goes to the dead-letter subject.
    Term,
}

impl AckOp {
    /// The path segment and batch `op` of the protocol: `ack`, `nack`, `progress`, `term`.
    ///
    /// ```no_run
    /// assert_eq!(bus_client::AckOp::InProgress.as_str(), "progress");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AckOp::Ack => "ack",
            AckOp::Nack(_) => "nack",
            AckOp::InProgress => "progress",
            AckOp::Term => "term",
        }
    }

    /// The delay of a nack with delay.
    fn delay(self) -> Option<Duration> {
        match self {
            AckOp::Nack(d) => d,
            _ => None,
        }
    }
}

/// The broker's answer to one acknowledgement: the wire type of `bus-proto`.
///
/// ```no_run
/// # async fn demo(m: bus_client::Message) -> Result<(), bus_client::Error> {
/// use bus_client::AckStatus;
/// match m.double_ack().await? {
///     AckStatus::Acked => {}
///     AckStatus::AlreadyAcked => println!("a redelivery of an event acked before"),
///     other => println!("{}", other.as_str()),
/// }
/// # Ok(()) }
/// ```
pub use bus_proto::AckStatus;

/// One entry of [`Client::ack_batch`]: an event id and what to do with it. A bare id (`&str`
/// or `String`) converts into an ack.
///
/// ```no_run
/// use bus_client::{AckItem, AckOp};
/// let items: Vec<AckItem> = vec![
///     "order-7-9f3c2a1b".into(),
///     AckItem::new("order-8-9f3c2a1b", AckOp::Term),
/// ];
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckItem {
    /// The event id.
    pub id: String,
    /// What to do.
    pub op: AckOp,
}

impl AckItem {
    /// An entry doing `op` to event `id`.
    ///
    /// ```no_run
    /// use bus_client::{AckItem, AckOp};
    /// let item = AckItem::new("order-7-9f3c2a1b", AckOp::InProgress);
    /// assert_eq!(item.op, AckOp::InProgress);
    /// ```
    pub fn new(id: impl Into<String>, op: AckOp) -> AckItem {
        AckItem { id: id.into(), op }
    }

    /// Ack event `id`.
    ///
    /// ```no_run
    /// use bus_client::AckItem;
    /// assert_eq!(AckItem::ack("order-7-9f3c2a1b"), AckItem::from("order-7-9f3c2a1b"));
    /// ```
    pub fn ack(id: impl Into<String>) -> AckItem {
        AckItem::new(id, AckOp::Ack)
    }

    /// Nack event `id`: redeliver now.
    ///
    /// ```no_run
    /// use bus_client::{AckItem, AckOp};
    /// assert_eq!(AckItem::nack("order-7-9f3c2a1b").op, AckOp::Nack(None));
    /// ```
    pub fn nack(id: impl Into<String>) -> AckItem {
        AckItem::new(id, AckOp::Nack(None))
    }

    /// Nack event `id`: redeliver after `delay` (at most 24 h).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let later = Duration::from_secs(60);
    /// let item = bus_client::AckItem::nack_with_delay("order-7-9f3c2a1b", later);
    /// ```
    pub fn nack_with_delay(id: impl Into<String>, delay: Duration) -> AckItem {
        AckItem::new(id, AckOp::Nack(Some(delay)))
    }

    /// Restart the ack wait of event `id`.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::AckItem;
    /// // Keep the deliveries still being worked on.
    /// let working = ["order-7-9f3c2a1b", "order-8-9f3c2a1b"];
    /// client.ack_batch("orders", working.map(AckItem::in_progress)).await?;
    /// # Ok(()) }
    /// ```
    pub fn in_progress(id: impl Into<String>) -> AckItem {
        AckItem::new(id, AckOp::InProgress)
    }

    /// Terminate event `id`: never redelivered, dead-lettered.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::AckItem;
    /// client
    ///     .ack_batch("orders", [AckItem::term("order-7-9f3c2a1b")])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn term(id: impl Into<String>) -> AckItem {
        AckItem::new(id, AckOp::Term)
    }

    /// The entry's JSON: a bare id for an ack, else `{"id","op","delay"}`.
    fn to_json(&self) -> serde_json::Value {
        match self.op {
            AckOp::Ack => serde_json::Value::String(self.id.clone()),
            op => {
                let mut v = serde_json::json!({"id": self.id, "op": op.as_str()});
                if let Some(d) = op.delay() {
                    v["delay"] = millis_param(d).into();
                }
                v
            }
        }
    }
}

impl From<&str> for AckItem {
    fn from(id: &str) -> AckItem {
        AckItem::ack(id)
    }
}

impl From<String> for AckItem {
    fn from(id: String) -> AckItem {
        AckItem::ack(id)
    }
}

/// The answer to one entry of a batch.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
/// let results = client.ack_batch("orders", ["order-7-9f3c2a1b"]).await?;
/// for r in results {
///     match r.result {
///         Ok(status) => println!("{}: {}", r.id, status.as_str()),
///         Err(e) => eprintln!("{}: {e}", r.id),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AckResult {
    /// The event id, as sent.
    pub id: String,
    /// What the broker did, or why this entry failed: an error of kind
    /// [`ErrorKind::Api`] with the entry's code (`not_delivered`, `unknown_event`,
    /// `not_held`, `invalid_parameter`) and the status the same acknowledgement sent alone
    /// would have been answered with.
    pub result: Result<AckStatus, Error>,
}

/// Where a delivery's acknowledgements go: its consumer on its broker, and the background
/// task that sends its acks in batches.
#[derive(Clone, Debug)]
pub(crate) struct Acker {
    /// The client the delivery came through.
    client: Client,
    /// The consumer's name.
    consumer: Arc<str>,
    /// Sends acks in batches.
    batcher: AckBatcher,
}

impl PartialEq for Acker {
    fn eq(&self, other: &Acker) -> bool {
        self.consumer == other.consumer && self.client.url() == other.client.url()
    }
}

impl Eq for Acker {}

impl Acker {
    /// An acker for `consumer`, with its background task (needs a Tokio runtime).
    pub(crate) fn new(client: Client, consumer: Arc<str>) -> Acker {
        let batcher = AckBatcher::start(client.clone(), consumer.clone());
        Acker {
            client,
            consumer,
            batcher,
        }
    }

    /// The background acknowledger.
    pub(crate) fn batcher(&self) -> &AckBatcher {
        &self.batcher
    }

    pub(crate) fn consumer(&self) -> &str {
        &self.consumer
    }

    pub(crate) async fn send(&self, id: &str, op: AckOp) -> Result<AckStatus, Error> {
        acknowledge(&self.client, &self.consumer, id, op).await
    }
}

/// The status of an acknowledgement that failed with `code`, as the single-event endpoint
/// answers it (`proto-docs/http-api.md`, "Errors"); 400 for a code this client does not
/// know.
fn status_of(code: &str) -> u16 {
    ErrorCode::parse(code).map_or(400, ErrorCode::status)
}

#[derive(Deserialize)]
struct WireResult {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<bus_proto::error::ErrorDetail>,
}

fn unknown_status(s: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("the broker answered an acknowledgement with unknown status {s:?}"),
    )
}

impl WireResult {
    fn into_result(self) -> AckResult {
        let result = match (self.status, self.error) {
            (_, Some(e)) => Err(Error::api(ApiError {
                status: status_of(&e.code),
                code: e.code,
                message: e.message,
            })),
            (Some(s), None) => AckStatus::parse(&s).ok_or_else(|| unknown_status(&s)),
            (None, None) => Err(Error::new(
                ErrorKind::Protocol,
                "the broker answered an acknowledgement with neither status nor error",
            )),
        };
        AckResult {
            id: self.id,
            result,
        }
    }
}

/// `POST /v1/consumers/{consumer}/events/{id}/{op}`.
pub(crate) async fn acknowledge(
    client: &Client,
    consumer: &str,
    id: &str,
    op: AckOp,
) -> Result<AckStatus, Error> {
    let mut path = format!(
        "/v1/consumers/{}/events/{}/{}",
        encode(consumer),
        encode(id),
        op.as_str()
    );
    if let Some(d) = op.delay() {
        path.push_str(&format!("?delay={}", millis_param(d)));
    }
    let what = || format!("cannot {} event {id} of consumer {consumer}", op.as_str());
    let inner = async {
        let req = client.http_request(Method::POST, &path, Body::default())?;
        let body = client
            .call(req, client.options().request_timeout_value())
            .await?;
        let r: WireResult = decode_json(&body)?;
        r.into_result().result
    };
    inner.await.map_err(|e| e.context(what()))
}

/// `POST /v1/consumers/{consumer}/acks`.
pub(crate) async fn ack_batch(
    client: &Client,
    consumer: &str,
    items: Vec<AckItem>,
) -> Result<Vec<AckResult>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let inner = async {
        let json: Vec<serde_json::Value> = items.iter().map(AckItem::to_json).collect();
        let body = serde_json::to_vec(&json).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, "cannot encode the ack batch", e)
        })?;
        let path = format!("/v1/consumers/{}/acks", encode(consumer));
        let mut req = client.http_request(Method::POST, &path, Body::new(Bytes::from(body)))?;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = client
            .call(req, client.options().request_timeout_value())
            .await?;
        #[derive(Deserialize)]
        struct Results {
            results: Vec<WireResult>,
        }
        let r: Results = decode_json(&body)?;
        if r.results.len() != items.len() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "the broker answered {} of {} acknowledgements",
                    r.results.len(),
                    items.len()
                ),
            ));
        }
        Ok(r.results.into_iter().map(WireResult::into_result).collect())
    };
    inner.await.map_err(|e: Error| {
        e.context(format!(
            "cannot acknowledge {} events of consumer {consumer}",
            items.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_batch_entries() {
        let items = [
            AckItem::from("a-1-0"),
            AckItem::nack("a-2-0"),
            AckItem::nack_with_delay("a-3-0", Duration::from_secs(5)),
            AckItem::in_progress("a-4-0"),
            AckItem::term(String::from("a-5-0")),
        ];
        let json: Vec<serde_json::Value> = items.iter().map(AckItem::to_json).collect();
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"["a-1-0",{"id":"a-2-0","op":"nack"},{"delay":"5000ms","id":"a-3-0","op":"nack"},{"id":"a-4-0","op":"progress"},{"id":"a-5-0","op":"term"}]"#
        );
    }

    #[test]
    fn decodes_results_and_per_entry_errors() {
        let body = br#"{"results":[{"id":"a-1-0","status":"acked"},{"id":"a-1-0","status":"already_acked"},
            {"error":{"code":"not_delivered","message":"never delivered"},"id":"a-9-0"},
            {"id":"a-2-0","status":"sideways"}]}"#;
        #[derive(Deserialize)]
        struct Results {
            results: Vec<WireResult>,
        }
        let r: Results = serde_json::from_slice(body).unwrap();
        let r: Vec<AckResult> = r.results.into_iter().map(WireResult::into_result).collect();
        assert_eq!(r[0].result.as_ref().unwrap(), &AckStatus::Acked);
        assert_eq!(r[1].result.as_ref().unwrap(), &AckStatus::AlreadyAcked);
        let e = r[2].result.as_ref().unwrap_err();
        assert_eq!(r[2].id, "a-9-0");
        assert_eq!(
            e.kind(),
            &ErrorKind::Api {
                status: 404,
                code: "not_delivered".into()
            }
        );
        assert_eq!(e.api_error().unwrap().message, "never delivered");
        assert_eq!(
            r[3].result.as_ref().unwrap_err().kind(),
            &ErrorKind::Protocol
        );
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            AckStatus::Acked,
            AckStatus::AlreadyAcked,
            AckStatus::Nacked,
            AckStatus::InProgress,
            AckStatus::Terminated,
        ] {
            assert_eq!(AckStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(status_of("not_held"), 409);
        assert_eq!(status_of("invalid_parameter"), 400);
    }
}
