//! Request/reply: [`RequestBuilder`] sends a request and waits for its [`Reply`]
//! (`POST /v1/requests/{subject}`); [`ReplyBuilder`] answers one by publishing to its inbox.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bus_proto::ErrorCode;
use bytes::Bytes;
use hyper::Method;

use crate::client::{Body, Client, encode};
use crate::consumer::millis_param;
use crate::error::{ApiError, Error, ErrorKind, PublishError, RequestError};
use crate::publish::{event_headers, set_event_headers};

/// The event header that makes a reply an error reply; its value is the message.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) {
/// use bus_client::{ERROR_HEADER, ErrorKind};
/// if let Err(e) = client.request("rpc.user.get", r#"{"id":7}"#).await {
///     if e.kind() == &ErrorKind::ReplyError {
///         eprintln!("the responder said: {:?}", e.reply_headers().get(ERROR_HEADER));
///     }
/// }
/// # }
/// ```
pub const ERROR_HEADER: &str = "bus-error";
/// The broker's request timeout when none is given.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply to a request.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
/// let reply = client.request("rpc.time", "").await?;
/// println!(
///     "{} ({:?}), answering request {}",
///     String::from_utf8_lossy(&reply.payload),
///     reply.content_type,
///     reply.request_id
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The id of the stored request event.
    pub request_id: String,
    /// The reply's event headers, names in lowercase.
    pub headers: BTreeMap<String, String>,
    /// The reply's content type (`application/octet-stream` when the responder gave none).
    pub content_type: Option<String>,
    /// The reply's payload.
    pub payload: Bytes,
}

impl Reply {
    /// The payload as text, when it is UTF-8.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
    /// let reply = client.request("rpc.echo", "hello").await?;
    /// assert_eq!(reply.text(), Some("hello"));
    /// # Ok(()) }
    /// ```
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The payload decoded from JSON.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Deserialize)]
    /// struct User {
    ///     name: String,
    /// }
    /// let user: User = client.request("rpc.user.get", r#"{"id":7}"#).await?.json()?;
    /// println!("{}", user.name);
    /// # Ok(()) }
    /// ```
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// One request, built by [`Client::request`]; `.await` it to send.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
/// let reply = client
///     .request("rpc.user.get", r#"{"id":7}"#)
///     .header("trace", "abc")
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a request does nothing until awaited"]
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    subject: String,
    payload: Bytes,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, subject: String, payload: Bytes) -> RequestBuilder {
        RequestBuilder {
            client,
            subject,
            payload,
            headers: Vec::new(),
            content_type: None,
            timeout: None,
        }
    }

    /// Adds an event header to the request. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
    /// let reply = client
    ///     .request("rpc.user.get", r#"{"id":7}"#)
    ///     .header("tenant", "acme")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> RequestBuilder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the request payload's content type. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
    /// let reply = client
    ///     .request("rpc.user.get", r#"{"id":7}"#)
    ///     .content_type("application/json")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn content_type(mut self, content_type: impl Into<String>) -> RequestBuilder {
        self.content_type = Some(content_type.into());
        self
    }

    /// How long to wait for the reply (1 ms to 5 min, in whole milliseconds rounded up).
    /// Default: the broker's, 5 s.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
    /// use std::time::Duration;
    /// use bus_client::ErrorKind;
    /// match client.request("rpc.report", "q3").timeout(Duration::from_secs(30)).await {
    ///     Ok(reply) => println!("{:?}", reply.text()),
    ///     Err(e) if e.kind() == &ErrorKind::Timeout => eprintln!("no reply within 30 s"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> RequestBuilder {
        self.timeout = Some(timeout);
        self
    }

    async fn send(self) -> Result<Reply, RequestError> {
        let subject = self.subject.clone();
        let fail = |e| RequestError::new(subject.clone(), e, BTreeMap::new(), None);
        let mut path = format!("/v1/requests/{}", encode(&self.subject));
        let wait = self.timeout.unwrap_or(DEFAULT_REPLY_TIMEOUT);
        if let Some(t) = self.timeout {
            path.push_str(&format!("?timeout={}", millis_param(t)));
        }
        let mut req = self
            .client
            .http_request(Method::POST, &path, Body::new(self.payload))
            .map_err(fail)?;
        set_event_headers(
            req.headers_mut(),
            &self.headers,
            self.content_type.as_deref(),
        )
        .map_err(fail)?;
        // The broker answers within the reply timeout; the request timeout covers the rest.
        let limit = self.client.options().request_timeout_value() + wait;
        let (status, headers, body) = self.client.exchange(req, limit).await.map_err(fail)?;
        let request_id = headers
            .get("bus-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let reply_headers = event_headers(&headers);
        if !status.is_success() {
            let api = ApiError::from_response(status.as_u16(), &body);
            let kind = match api.error_code().filter(|c| c.status() == status.as_u16()) {
                Some(ErrorCode::NoResponders) => Some(ErrorKind::NoResponders),
                Some(ErrorCode::Timeout) => Some(ErrorKind::Timeout),
                Some(ErrorCode::ReplyError) => Some(ErrorKind::ReplyError),
                _ => None,
            };
            let e = match kind {
                Some(k) => Error::api_as(k, api),
                None => Error::api(api),
            };
            return Err(RequestError::new(subject, e, reply_headers, request_id));
        }
        let request_id = request_id.ok_or_else(|| {
            fail(Error::new(
                ErrorKind::Protocol,
                "the broker's answer has no Bus-Request-Id",
            ))
        })?;
        Ok(Reply {
            request_id,
            headers: reply_headers,
            content_type: headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            payload: body,
        })
    }
}

impl IntoFuture for RequestBuilder {
    type Output = Result<Reply, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// One reply, built by [`Client::reply`]; `.await` it to send.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client, m: bus_client::Message) -> Result<(), bus_client::PublishError> {
/// if let Some(inbox) = &m.reply_to {
///     client
///         .reply(inbox, r#"{"ok":true}"#)
///         .content_type("application/json")
///         .await?;
/// }
/// # Ok(()) }
/// ```
#[must_use = "a reply does nothing until awaited"]
#[derive(Debug)]
pub struct ReplyBuilder {
    client: Client,
    inbox: String,
    payload: Bytes,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
}

impl ReplyBuilder {
    pub(crate) fn new(client: Client, inbox: String, payload: Bytes) -> ReplyBuilder {
        ReplyBuilder {
            client,
            inbox,
            payload,
            headers: Vec::new(),
            content_type: None,
        }
    }

    /// Adds an event header to the reply; the requester gets it as `Bus-Header-<name>`.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client, m: bus_client::Message) -> Result<(), bus_client::PublishError> {
    /// if let Some(inbox) = &m.reply_to {
    ///     client.reply(inbox, "42").header("cache", "miss").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ReplyBuilder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the reply payload's content type. Default: none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client, m: bus_client::Message) -> Result<(), bus_client::PublishError> {
    /// if let Some(inbox) = &m.reply_to {
    ///     client.reply(inbox, "<p>42</p>").content_type("text/html").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn content_type(mut self, content_type: impl Into<String>) -> ReplyBuilder {
        self.content_type = Some(content_type.into());
        self
    }

    /// Makes this an error reply: the requester gets `502 reply_error` with `message`
    /// ([`ErrorKind::ReplyError`]). The message must be an HTTP header value (visible ASCII).
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client, m: bus_client::Message) -> Result<(), bus_client::PublishError> {
    /// if let Some(inbox) = &m.reply_to {
    ///     client.reply(inbox, "").error("user 7 not found").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn error(self, message: impl Into<String>) -> ReplyBuilder {
        self.header(ERROR_HEADER, message)
    }

    async fn send(self) -> Result<(), PublishError> {
        let inbox = self.inbox.clone();
        let inner = async {
            let path = format!("/v1/events/{}", encode(&self.inbox));
            let mut req = self
                .client
                .http_request(Method::POST, &path, Body::new(self.payload))?;
            set_event_headers(
                req.headers_mut(),
                &self.headers,
                self.content_type.as_deref(),
            )?;
            let timeout = self.client.options().request_timeout_value();
            self.client.call(req, timeout).await?;
            Ok(())
        };
        inner.await.map_err(|e| PublishError::new(inbox, false, e))
    }
}

impl IntoFuture for ReplyBuilder {
    type Output = Result<(), PublishError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
