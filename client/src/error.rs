//! Errors of the client: one type per operation family, each with a [`kind`](Error::kind) to
//! match on.
//!
//! [`Error`] is returned by connecting, reading (`namespaces`, `pull`, `subscribe`), by a
//! [`Subscription`](crate::Subscription)'s items, by acknowledgements and by managing
//! consumers; [`PublishError`] by `publish` and
//! `publish_batch`, naming the subject it failed for. Their `Display` says what failed; the
//! cause (the broker's answer, the I/O error) is the [`source`](std::error::Error::source), so
//! a program printing the chain gets `cannot publish to a..b: broker answered 400
//! invalid_subject: empty token at position 2 in "a..b"`.

use std::fmt;

pub use bus_proto::ErrorCode;

/// A boxed cause.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, to branch on.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
/// use bus_client::ErrorKind;
/// match client.publish("user.created", "ada").await {
///     Ok(r) => println!("stored as {}", r.id),
///     Err(e) => match e.kind() {
///         ErrorKind::Api { status: 400, code } => eprintln!("refused ({code}): fix the input"),
///         ErrorKind::Connect | ErrorKind::Io | ErrorKind::Timeout => eprintln!("try again later"),
///         _ => return Err(e),
///     },
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL given to `connect` is not an `http://` URL with a host.
    InvalidUrl,
    /// An argument could not be sent as given (a header name that is not a valid HTTP
    /// header name, for example). Nothing was sent.
    InvalidInput,
    /// The broker could not be reached: connection refused, name not resolved, or the
    /// connection did not open within the connect timeout.
    Connect,
    /// The broker did not answer within the request timeout; for a request
    /// ([`Client::request`](crate::Client::request)), no reply came within its timeout
    /// (`504 timeout`).
    Timeout,
    /// A request found no live subscription to its subject (`503 no_responders`); nothing was
    /// stored.
    NoResponders,
    /// A request was answered with an error reply (`502 reply_error`); the responder's message
    /// is the [`ApiError`]'s.
    ReplyError,
    /// The broker answered with an error status; `code` is its stable error code
    /// (`invalid_subject`, `unknown_event`, ...). The message is in [`ApiError`], the
    /// error's source.
    Api {
        /// The HTTP status.
        status: u16,
        /// The broker's error code.
        code: String,
    },
    /// A stream reported an error (`event: error`) and ended; `code` is the broker's code.
    Stream {
        /// The broker's error code.
        code: String,
    },
    /// The connection failed after it was established (reset, closed mid-body).
    Io,
    /// The broker's answer did not follow the protocol (unparsable JSON, wrong content
    /// type, an SSE event larger than the limit).
    Protocol,
}

/// The broker's error answer: `{"error":{"code","message"}}` and the HTTP status.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) {
/// if let Err(e) = client.delete_consumer("orders").await {
///     if let Some(api) = e.api_error() {
///         eprintln!("{} {}: {}", api.status, api.code, api.message);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker answered {status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The stable error code (`invalid_subject`, ...); `http_<status>` when the body was not
    /// the broker's error JSON.
    pub code: String,
    /// The human message.
    pub message: String,
}

impl ApiError {
    /// The code as one of the protocol's stable codes; `None` for a code this client does
    /// not know (a newer broker's, or `http_<status>` for a foreign body).
    ///
    /// ```no_run
    /// use bus_client::{ApiError, ErrorCode};
    /// let body = br#"{"error":{"code":"unknown_consumer","message":"no such consumer"}}"#;
    /// let api = ApiError::from_response(404, body);
    /// assert_eq!(api.error_code(), Some(ErrorCode::UnknownConsumer));
    /// ```
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }

    /// Reads an error answer. A body that is not the documented error JSON still yields an
    /// error: its code is `http_<status>` and its message the body's start.
    ///
    /// ```no_run
    /// use bus_client::ApiError;
    /// let body = br#"{"error":{"code":"unknown_consumer","message":"no such consumer"}}"#;
    /// let api = ApiError::from_response(404, body);
    /// assert_eq!((api.status, api.code.as_str()), (404, "unknown_consumer"));
    /// ```
    pub fn from_response(status: u16, body: &[u8]) -> ApiError {
        match serde_json::from_slice::<bus_proto::error::ErrorBody>(body) {
            Ok(b) => ApiError {
                status,
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(200).collect();
                ApiError {
                    status,
                    code: format!("http_{status}"),
                    message: if text.is_empty() {
                        "(no body)".to_owned()
                    } else {
                        text
                    },
                }
            }
        }
    }
}

/// An error of connecting or reading.
///
/// ```no_run
/// # async fn demo() {
/// use std::error::Error as _;
/// if let Err(e) = bus_client::Client::connect("http://127.0.0.1:2021").await {
///     // The message says what failed, the sources why.
///     let mut text = e.to_string();
///     let mut cause = e.source();
///     while let Some(c) = cause {
///         text.push_str(&format!(": {c}"));
///         cause = c.source();
///     }
///     eprintln!("{text}");
/// }
/// # }
/// ```
pub struct Error(Box<Inner>);

/// The error's parts, boxed to keep `Result`s small.
#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
    /// The broker's answer, for [`ErrorKind::Api`] and [`ErrorKind::Stream`].
    api: Option<ApiError>,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
            api: None,
        }))
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: Some(source.into()),
            api: None,
        }))
    }

    /// The broker answered with an error status.
    pub(crate) fn api(api: ApiError) -> Error {
        Error(Box::new(Inner {
            kind: ErrorKind::Api {
                status: api.status,
                code: api.code.clone(),
            },
            message: api.to_string(),
            source: None,
            api: Some(api),
        }))
    }

    /// The broker answered with an error status that has a kind of its own.
    pub(crate) fn api_as(kind: ErrorKind, api: ApiError) -> Error {
        let e = Error::api(api);
        Error(Box::new(Inner { kind, ..*e.0 }))
    }

    /// A stream sent `event: error`.
    pub(crate) fn stream(code: String, message: String) -> Error {
        Error(Box::new(Inner {
            kind: ErrorKind::Stream { code: code.clone() },
            message: format!("the stream failed: {code}: {message}"),
            source: None,
            api: Some(ApiError {
                status: 200,
                code,
                message,
            }),
        }))
    }

    /// The same error behind `message`, which is what it displays: the kind and the
    /// broker's answer stay, and the error becomes the source.
    pub(crate) fn context(self, message: impl Into<String>) -> Error {
        let kind = self.0.kind.clone();
        let api = self.0.api.clone();
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: Some(Box::new(self)),
            api,
        }))
    }

    /// What went wrong.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::ErrorKind;
    /// match client.health().await {
    ///     Ok(()) => println!("up"),
    ///     Err(e) if matches!(e.kind(), ErrorKind::Api { status: 503, .. }) => {
    ///         println!("up, but not serving (shutting down?)");
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The broker's error answer (status, code and message), when the error is one.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) {
    /// if let Err(e) = client.consumer("orders").await {
    ///     match e.api_error() {
    ///         Some(api) => eprintln!("the broker said {}: {}", api.code, api.message),
    ///         None => eprintln!("{e}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn api_error(&self) -> Option<&ApiError> {
        self.0.api.as_ref()
    }
}

/// An error of a request ([`Client::request`](crate::Client::request)).
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
/// use bus_client::ErrorKind;
/// match client.request("rpc.user.get", r#"{"id":7}"#).await {
///     Ok(reply) => println!("{:?}", reply.text()),
///     Err(e) if e.kind() == &ErrorKind::NoResponders => eprintln!("no responder: {}", e.subject()),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("request to {subject} failed")]
pub struct RequestError {
    subject: String,
    /// For an error reply: the reply's event headers and the stored request's id.
    reply_headers: std::collections::BTreeMap<String, String>,
    request_id: Option<String>,
    #[source]
    source: Error,
}

impl RequestError {
    pub(crate) fn new(
        subject: impl Into<String>,
        source: Error,
        reply_headers: std::collections::BTreeMap<String, String>,
        request_id: Option<String>,
    ) -> RequestError {
        RequestError {
            subject: subject.into(),
            reply_headers,
            request_id,
            source,
        }
    }

    /// What went wrong: [`ErrorKind::NoResponders`], [`ErrorKind::Timeout`],
    /// [`ErrorKind::ReplyError`], or any error of reaching the broker.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
    /// use bus_client::ErrorKind;
    /// if let Err(e) = client.request("rpc.user.get", r#"{"id":7}"#).await {
    ///     match e.kind() {
    ///         ErrorKind::NoResponders => eprintln!("nothing serves it"),
    ///         ErrorKind::Timeout => eprintln!("no reply in time"),
    ///         ErrorKind::ReplyError => eprintln!("{:?}", e.api_error().map(|a| &a.message)),
    ///         _ => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        self.source.kind()
    }

    /// The broker's error answer; for [`ErrorKind::ReplyError`] its message is the
    /// responder's.
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::RequestError) {
    /// if let Some(api) = e.api_error() {
    ///     eprintln!("{} {}: {}", api.status, api.code, api.message);
    /// }
    /// # }
    /// ```
    pub fn api_error(&self) -> Option<&ApiError> {
        self.source.api_error()
    }

    /// The subject the request was sent on.
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::RequestError) {
    /// eprintln!("the request to {} failed: {:?}", e.subject(), e.kind());
    /// # }
    /// ```
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The event headers of an error reply (empty otherwise), `bus-error` among them.
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::RequestError) {
    /// for (name, value) in e.reply_headers() {
    ///     eprintln!("{name}: {value}");
    /// }
    /// # }
    /// ```
    pub fn reply_headers(&self) -> &std::collections::BTreeMap<String, String> {
        &self.reply_headers
    }

    /// The id of the stored request, when it was stored and the broker said so (error
    /// replies).
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::RequestError) {
    /// if let Some(id) = e.request_id() {
    ///     eprintln!("the request was stored as {id}");
    /// }
    /// # }
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// An error of publishing.
///
/// ```no_run
/// # async fn demo(client: bus_client::Client) {
/// if let Err(e) = client.publish("a..b", "x").await {
///     // "cannot publish to a..b: broker answered 400 invalid_subject: ..."
///     let cause = std::error::Error::source(&e).map(ToString::to_string);
///     eprintln!("{e}: {}", cause.unwrap_or_default());
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub struct PublishError {
    /// The subject (or, for a batch, the first item's subject) the publish was for.
    subject: String,
    batch: bool,
    #[source]
    source: Error,
}

impl PublishError {
    pub(crate) fn new(subject: impl Into<String>, batch: bool, source: Error) -> PublishError {
        PublishError {
            subject: subject.into(),
            batch,
            source,
        }
    }

    /// What went wrong.
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::PublishError) {
    /// use bus_client::ErrorKind;
    /// let try_later = matches!(e.kind(), ErrorKind::Connect | ErrorKind::Io | ErrorKind::Timeout);
    /// # }
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        self.source.kind()
    }

    /// The broker's error answer, when the error is one.
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::PublishError) {
    /// if e.api_error().is_some_and(|api| api.code == "invalid_subject") {
    ///     eprintln!("{} is not a valid subject", e.subject());
    /// }
    /// # }
    /// ```
    pub fn api_error(&self) -> Option<&ApiError> {
        self.source.api_error()
    }

    /// The subject the publish was for (for a batch, its first item's).
    ///
    /// ```no_run
    /// # fn demo(e: &bus_client::PublishError) {
    /// eprintln!("publishing to {} failed", e.subject());
    /// # }
    /// ```
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.batch {
            write!(f, "cannot publish batch to {}", self.subject)
        } else {
            write!(f, "cannot publish to {}", self.subject)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_error_body() {
        let body = br#"{"error":{"code":"invalid_subject","message":"empty token at position 2 in \"a..b\""}}"#;
        let api = ApiError::from_response(400, body);
        assert_eq!(api.status, 400);
        assert_eq!(api.code, "invalid_subject");
        assert_eq!(api.message, "empty token at position 2 in \"a..b\"");
        let e = Error::api(api.clone());
        assert_eq!(
            e.kind(),
            &ErrorKind::Api {
                status: 400,
                code: "invalid_subject".into()
            }
        );
        assert_eq!(e.api_error(), Some(&api));
        let p = PublishError::new("a..b", false, e);
        assert_eq!(p.to_string(), "cannot publish to a..b");
        let cause = std::error::Error::source(&p).unwrap().to_string();
        assert_eq!(
            cause,
            "broker answered 400 invalid_subject: empty token at position 2 in \"a..b\""
        );
    }

    #[test]
    fn context_keeps_the_kind_and_the_answer() {
        let api = ApiError::from_response(
            404,
            br#"{"error":{"code":"unknown_consumer","message":"no consumer named \"x\""}}"#,
        );
        let e = Error::api(api.clone()).context("cannot delete consumer x");
        assert_eq!(e.to_string(), "cannot delete consumer x");
        assert_eq!(
            e.kind(),
            &ErrorKind::Api {
                status: 404,
                code: "unknown_consumer".into()
            }
        );
        assert_eq!(e.api_error(), Some(&api));
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "broker answered 404 unknown_consumer: no consumer named \"x\""
        );
    }

    #[test]
    fn maps_a_foreign_error_body() {
        let api = ApiError::from_response(502, b"<html>bad gateway</html>\n");
        assert_eq!(api.code, "http_502");
        assert_eq!(api.message, "<html>bad gateway</html>");
        let api = ApiError::from_response(500, b"");
        assert_eq!(api.message, "(no body)");
        // Extra fields and a missing message are tolerated.
        let api = ApiError::from_response(404, br#"{"error":{"code":"not_found","x":1}}"#);
        assert_eq!((api.code.as_str(), api.message.as_str()), ("not_found", ""));
    }
}
