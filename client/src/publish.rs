//! Publishing: [`PublishBuilder`] for one event (`POST /v1/events/{subject}`) and
//! [`BatchItem`] for an atomic batch (`POST /v1/events`).

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::client::{Body, Client, decode_json, encode};
use crate::consumer::millis_param;
use crate::error::{Error, ErrorKind, PublishError};
use crate::message::Receipt;
use crate::reconnect::with_retries;

/// Prefix of request headers that become event headers.
const EVENT_HEADER_PREFIX: &str = "bus-header-";

/// One publish, built by [`Client::publish`]; `.await` it to send.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
/// let receipt = client
///     .publish("order.placed", r#"{"id":17}"#)
///     .content_type("application/json")
///     .header("trace", "abc")
///     .msg_id("order-17")
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a publish does nothing until awaited"]
#[derive(Debug)]
pub struct PublishBuilder {
    client: Client,
    subject: String,
    payload: Bytes,
    headers: Vec<(String, String)>,
    /// `None` only after [`PublishBuilder::no_msg_id`].
    msg_id: Option<String>,
    content_type: Option<String>,
    reply_to: Option<String>,
    /// Confirmations asked for and how long to wait for them.
    confirm: Option<(u32, Duration)>,
}

/// A fresh dedup id: what the client gives every publish unless told otherwise.
pub(crate) fn fresh_msg_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl PublishBuilder {
    pub(crate) fn new(client: Client, subject: String, payload: Bytes) -> PublishBuilder {
        PublishBuilder {
            client,
            subject,
            payload,
            headers: Vec::new(),
            msg_id: Some(fresh_msg_id()),
            content_type: None,
            reply_to: None,
            confirm: None,
        }
    }

    /// Publishes `value` serialised as JSON, with content type `application/json`.
    pub(crate) fn json<T: Serialize + ?Sized>(
        client: Client,
        subject: String,
        value: &T,
    ) -> Result<PublishBuilder, PublishError> {
        let payload = serde_json::to_vec(value).map_err(|e| {
            PublishError::new(
                subject.clone(),
                false,
                Error::with_source(
                    ErrorKind::InvalidInput,
                    "cannot encode the payload as JSON",
                    e,
                ),
            )
        })?;
        Ok(PublishBuilder::new(client, subject, Bytes::from(payload))
            .content_type("application/json"))
    }

    /// Adds an event header; the broker stores its name in lowercase. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// client
    ///     .publish("order.placed", r#"{"id":17}"#)
    ///     .header("trace", "abc")
    ///     .header("tenant", "acme")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> PublishBuilder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the dedup id: a repeat within the namespace's dedup window stores nothing and
    /// answers with the original receipt. Default: a fresh random id, so that the client's
    /// own retries after a dropped connection cannot store the event twice; set one derived
    /// from the data (an order number, say) to make the application's retries safe too.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// // However often this runs within the window, order 17 is stored once.
    /// let receipt = client
    ///     .publish("order.placed", r#"{"id":17}"#)
    ///     .msg_id("order-17")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn msg_id(mut self, id: impl Into<String>) -> PublishBuilder {
        self.msg_id = Some(id.into());
        self
    }

    /// Sends no dedup id: the broker stores every copy, and the client does not retry after
    /// a dropped connection (it cannot know whether the broker stored the event).
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// // A reading that may repeat, and is not worth a retry.
    /// client.publish("metrics.cpu", "0.73").no_msg_id().await?;
    /// # Ok(()) }
    /// ```
    pub fn no_msg_id(mut self) -> PublishBuilder {
        self.msg_id = None;
        self
    }

    /// Sets the payload's content type, kept with the event. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// client
    ///     .publish("report.ready", "<h1>Q3</h1>")
    ///     .content_type("text/html")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn content_type(mut self, content_type: impl Into<String>) -> PublishBuilder {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the event's reply subject. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// // Whoever handles the job announces the result on `job.done`.
    /// client.publish("job.resize", "img-42").reply_to("job.done").await?;
    /// # Ok(()) }
    /// ```
    pub fn reply_to(mut self, subject: impl Into<String>) -> PublishBuilder {
        self.reply_to = Some(subject.into());
        self
    }

    /// Waits until `consumers` distinct consumers (1 to 1,000) have acked the event, or
    /// until `timeout` (1 ms to 5 min) runs out: the way to make a publish synchronous with
    /// its handlers. A consumer counts once however often it acks; consumers in ack mode
    /// `none` never count.
    ///
    /// Either way the event stays stored and the publish succeeds: the receipt says how many
    /// confirmed ([`Receipt::confirmed`], [`Receipt::required`],
    /// [`Receipt::is_confirmed`]). A duplicate dedup id awaits nothing and has neither
    /// figure. The request may take the request timeout plus `timeout`. Default: no
    /// confirmation.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// let receipt = client
    ///     .publish("order.placed", r#"{"id":17}"#)
    ///     .confirm(2, Duration::from_secs(5))
    ///     .await?;
    /// if !receipt.is_confirmed() {
    ///     eprintln!("only {:?} of 2 handlers confirmed", receipt.confirmed);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn confirm(mut self, consumers: u32, timeout: Duration) -> PublishBuilder {
        self.confirm = Some((consumers, timeout));
        self
    }

    async fn send(self) -> Result<Receipt, PublishError> {
        let subject = self.subject.clone();
        self.send_inner()
            .await
            .map_err(|e| PublishError::new(subject, false, e))
    }

    /// Sends, and sends again after a dropped connection when the publish has a dedup id
    /// (as the reconnect policy allows).
    async fn send_inner(self) -> Result<Receipt, Error> {
        let policy = self.client.options().reconnect_policy();
        with_retries(policy, self.msg_id.is_some(), || self.send_once()).await
    }

    async fn send_once(&self) -> Result<Receipt, Error> {
        let mut path = format!("/v1/events/{}", encode(&self.subject));
        let mut timeout = self.client.options().request_timeout_value();
        if let Some((n, wait)) = self.confirm {
            path.push_str(&format!("?confirm={n}&timeout={}", millis_param(wait)));
            timeout = timeout.saturating_add(wait);
        }
        let mut req =
            self.client
                .http_request(Method::POST, &path, Body::new(self.payload.clone()))?;
        set_event_headers(
            req.headers_mut(),
            &self.headers,
            self.content_type.as_deref(),
        )?;
        let h = req.headers_mut();
        if let Some(id) = &self.msg_id {
            h.insert("bus-msg-id", header_value("msg id", id)?);
        }
        if let Some(r) = &self.reply_to {
            h.insert("bus-reply-to", header_value("reply subject", r)?);
        }
        let body = self.client.call(req, timeout).await?;
        let text = std::str::from_utf8(&body).map_err(|e| {
            Error::with_source(ErrorKind::Protocol, "the broker's receipt is not UTF-8", e)
        })?;
        Receipt::from_json(text.trim_end()).map_err(|e| {
            Error::with_source(
                ErrorKind::Protocol,
                "the broker's receipt is not the expected JSON",
                e,
            )
        })
    }
}

impl IntoFuture for PublishBuilder {
    type Output = Result<Receipt, PublishError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Sets event headers (`Bus-Header-<name>`) and the content type on a request, refusing
/// (nothing sent) names and values HTTP cannot carry.
pub(crate) fn set_event_headers(
    h: &mut hyper::HeaderMap,
    headers: &[(String, String)],
    content_type: Option<&str>,
) -> Result<(), Error> {
    for (name, value) in headers {
        h.append(
            header_name(&format!("{EVENT_HEADER_PREFIX}{name}"))?,
            header_value(name, value)?,
        );
    }
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, header_value("content type", ct)?);
    }
    Ok(())
}

/// The event headers (`Bus-Header-<name>`) of an answer, names in lowercase.
pub(crate) fn event_headers(h: &hyper::HeaderMap) -> BTreeMap<String, String> {
    h.iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix(EVENT_HEADER_PREFIX)?;
            Some((name.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect()
}

fn header_name(name: &str) -> Result<HeaderName, Error> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            format!(
                "invalid header name {:?}",
                &name[EVENT_HEADER_PREFIX.len().min(name.len())..]
            ),
            e,
        )
    })
}

fn header_value(what: &str, value: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value).map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            format!("invalid value for {what}: {value:?}"),
            e,
        )
    })
}

/// One item of [`Client::publish_batch`].
///
/// The payload is sent as a JSON string when it is valid UTF-8, else as base64, so the broker
/// stores exactly these bytes. Without [`content_type`](Self::content_type) the broker gives
/// the item its default for that form (`text/plain; charset=utf-8` or
/// `application/octet-stream`).
///
/// ```no_run
/// use bus_client::BatchItem;
/// // An item without a dedup id: set the field itself.
/// let item = BatchItem {
///     msg_id: None,
///     ..BatchItem::new("metrics.cpu", "0.73")
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// The publish subject.
    pub subject: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// The content type. Default: the broker's, see above.
    pub content_type: Option<String>,
    /// Event headers. Default: none.
    pub headers: BTreeMap<String, String>,
    /// Dedup id. Default: a fresh random one (see [`PublishBuilder::msg_id`]); `None` sends
    /// none.
    pub msg_id: Option<String>,
    /// Reply subject. Default: none.
    pub reply_to: Option<String>,
}

impl BatchItem {
    /// An item with a fresh random dedup id and no headers, content type or reply subject.
    ///
    /// ```no_run
    /// let item = bus_client::BatchItem::new("order.placed", r#"{"id":17}"#);
    /// assert!(item.msg_id.is_some());
    /// ```
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> BatchItem {
        BatchItem {
            subject: subject.into(),
            payload: payload.into(),
            content_type: None,
            headers: BTreeMap::new(),
            msg_id: Some(fresh_msg_id()),
            reply_to: None,
        }
    }

    /// Adds an event header.
    ///
    /// ```no_run
    /// let item = bus_client::BatchItem::new("order.placed", "17").header("trace", "abc");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> BatchItem {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the dedup id.
    ///
    /// ```no_run
    /// let item = bus_client::BatchItem::new("order.placed", "17").msg_id("order-17");
    /// ```
    pub fn msg_id(mut self, id: impl Into<String>) -> BatchItem {
        self.msg_id = Some(id.into());
        self
    }

    /// Sets the content type.
    ///
    /// ```no_run
    /// let item = bus_client::BatchItem::new("order.placed", r#"{"id":17}"#)
    ///     .content_type("application/json");
    /// ```
    pub fn content_type(mut self, content_type: impl Into<String>) -> BatchItem {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the reply subject.
    ///
    /// ```no_run
    /// let item = bus_client::BatchItem::new("job.resize", "img-42").reply_to("job.done");
    /// ```
    pub fn reply_to(mut self, subject: impl Into<String>) -> BatchItem {
        self.reply_to = Some(subject.into());
        self
    }
}

/// A batch item's JSON form.
#[derive(Serialize)]
struct WireItem<'a> {
    subject: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    payload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
}

impl<'a> WireItem<'a> {
    fn of(item: &'a BatchItem) -> WireItem<'a> {
        let (payload, encoding) = match std::str::from_utf8(&item.payload) {
            Ok(s) => (s.to_owned(), None),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&item.payload),
                Some("base64"),
            ),
        };
        WireItem {
            subject: &item.subject,
            payload,
            encoding,
            content_type: item.content_type.as_deref(),
            headers: &item.headers,
            msg_id: item.msg_id.as_deref(),
            reply_to: item.reply_to.as_deref(),
        }
    }
}

/// Encodes a batch as the JSON array the broker takes.
fn encode_batch(items: &[BatchItem]) -> Result<Vec<u8>, Error> {
    let wire: Vec<WireItem<'_>> = items.iter().map(WireItem::of).collect();
    serde_json::to_vec(&wire)
        .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "cannot encode the batch", e))
}

pub(crate) async fn publish_batch(
    client: &Client,
    items: Vec<BatchItem>,
) -> Result<Vec<Receipt>, PublishError> {
    let subject = items.first().map(|i| i.subject.clone()).unwrap_or_default();
    // Atomic and, when every item has a dedup id, idempotent: then safe to send again.
    let retry_safe = items.iter().all(|i| i.msg_id.is_some());
    let policy = client.options().reconnect_policy();
    let body = match encode_batch(&items) {
        Ok(b) => Bytes::from(b),
        Err(e) => return Err(PublishError::new(subject, true, e)),
    };
    let once = || async {
        let body = body.clone();
        let mut req = client.http_request(Method::POST, "/v1/events", Body::new(body))?;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = client
            .call(req, client.options().request_timeout_value())
            .await?;
        #[derive(serde::Deserialize)]
        struct Receipts {
            receipts: Vec<Box<RawValue>>,
        }
        let r: Receipts = decode_json(&body)?;
        r.receipts
            .iter()
            .map(|raw| {
                Receipt::from_json(raw.get()).map_err(|e| {
                    Error::with_source(ErrorKind::Protocol, "the broker sent a bad receipt", e)
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    with_retries(policy, retry_safe, once)
        .await
        .map_err(|e| PublishError::new(subject, true, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_batch_items_so_the_bytes_survive() {
        let items = vec![
            BatchItem::new("user.created", r#"{"name":"ada"}"#)
                .content_type("application/json")
                .header("trace", "abc")
                .msg_id("m-1"),
            BatchItem {
                msg_id: None,
                ..BatchItem::new("user.raw", vec![0u8, 0xFF]).reply_to("_inbox.x")
            },
            BatchItem {
                msg_id: None,
                ..BatchItem::new("user.empty", Bytes::new())
            },
        ];
        let json = String::from_utf8(encode_batch(&items).unwrap()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"subject":"user.created","payload":"{\"name\":\"ada\"}","content_type":"application/json","headers":{"trace":"abc"},"msg_id":"m-1"},"#,
                r#"{"subject":"user.raw","payload":"AP8=","encoding":"base64","reply_to":"_inbox.x"},"#,
                r#"{"subject":"user.empty"}]"#
            )
        );
    }

    #[test]
    fn every_publish_gets_its_own_dedup_id_by_default() {
        let a = BatchItem::new("a.b", "x");
        let b = BatchItem::new("a.b", "x");
        let (a, b) = (a.msg_id.unwrap(), b.msg_id.unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn refuses_bad_header_names_locally() {
        let e = header_name("bus-header-bad name").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "invalid header name \"bad name\"");
        let e = header_value("x", "a\nb").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidInput);
    }
}
