//! [`ErrorCode`]: the stable error codes of the API, each with its wire spelling and its HTTP
//! status (see `proto-docs/http-api.md`, "Errors").
//!
//! The broker answers an error as `{"error": {"code": "<code>", "message": "..."}}` with the
//! code's status ([`ErrorBody`]); clients match on the code. A stream that fails sends
//! `event: error` with `{"code", "message"}` ([`ErrorDetail`]), and an ack batch answers a
//! failed entry with the same object.

/// The stable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: a subject that does not follow the grammar.
    InvalidSubject,
    /// 400: a publish subject holding `*` or `>`.
    WildcardInSubject,
    /// 400: a pattern that does not follow the grammar.
    InvalidPattern,
    /// 400: a start position that is none of the accepted forms.
    InvalidStart,
    /// 400: an empty, malformed or cross-namespace batch.
    InvalidBatch,
    /// 400: a malformed `Bus-*` header.
    InvalidHeader,
    /// 400: a malformed or out-of-range query parameter (or JSON field), or one that belongs
    /// to another mode of the endpoint.
    InvalidParameter,
    /// 400: a query parameter (or JSON field) the endpoint does not take.
    UnknownParameter,
    /// 400: a request body that is not valid HTTP framing (a malformed chunked body).
    InvalidBody,
    /// 431: more request headers, or more header bytes, than the broker takes.
    HeadersTooLarge,
    /// 414: a path or query string longer than the broker takes.
    UriTooLong,
    /// 403: publishing into a reserved namespace.
    ReservedNamespace,
    /// 403: creating a namespace past the configured bound.
    NamespaceLimit,
    /// 404: a namespace that does not exist or is not allowed.
    UnknownNamespace,
    /// 404: a start id or cursor naming an event this broker never held.
    UnknownEvent,
    /// 404: no such path.
    NotFound,
    /// 404: no consumer by that name.
    UnknownConsumer,
    /// 404: an acknowledgement for an event this consumer was never delivered.
    NotDelivered,
    /// 409: attaching to a consumer with another filter or of another kind.
    ConsumerConflict,
    /// 409: `in progress` for a delivery whose ack wait already ran out.
    NotHeld,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 413: a payload or body over its limit.
    PayloadTooLarge,
    /// 408: a request body that did not arrive within the body timeout.
    RequestTimeout,
    /// 421: a `Host` the broker does not answer for (`--allowed-hosts`; DNS rebinding).
    MisdirectedRequest,
    /// 403: a state-changing request from a web page of another origin (`--cors-origin`).
    ForbiddenOrigin,
    /// 429: a client address holding as many connections as it may already.
    TooManyConnections,
    /// 401: no credentials, or credentials that do not verify (`WWW-Authenticate` says why).
    Unauthorized,
    /// 403: the principal lacks the right the operation needs (the message names both).
    Forbidden,
    /// 429: a client address that failed authentication too often; retry after the
    /// `Retry-After` seconds.
    TooManyAuthFailures,
    /// 503: the namespace's storage failed.
    ReadOnly,
    /// 503: the namespace's log is damaged (a checksum or frame that does not verify, other
    /// than a torn last record): it is set aside, neither read nor written, until an operator
    /// stops the broker and runs `bus inspect --repair <data dir>`. The message names the
    /// file and the offset.
    NamespaceDamaged,
    /// 503: the broker is stopping.
    ShuttingDown,
    /// 503: the storage server (NATS JetStream, under `--storage nats://`) failed or could
    /// not be reached; the request may be retried. The detail is in the broker log.
    StorageUnavailable,
    /// 404: a reply to an inbox no request waits on (timed out, answered, or never opened).
    UnknownInbox,
    /// 429: too many requests wait for replies already.
    TooManyRequests,
    /// 502: the responder answered a request with an error reply.
    ReplyError,
    /// 503: no live subscription matches a request's subject.
    NoResponders,
    /// 504: no reply came before the request's timeout.
    Timeout,
    /// 500: anything else.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSubject => "invalid_subject",
            ErrorCode::WildcardInSubject => "wildcard_in_subject",
            ErrorCode::InvalidPattern => "invalid_pattern",
            ErrorCode::InvalidStart => "invalid_start",
            ErrorCode::InvalidBatch => "invalid_batch",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::UnknownParameter => "unknown_parameter",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::ReservedNamespace => "reserved_namespace",
            ErrorCode::NamespaceLimit => "namespace_limit",
            ErrorCode::UnknownNamespace => "unknown_namespace",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownConsumer => "unknown_consumer",
            ErrorCode::NotDelivered => "not_delivered",
            ErrorCode::ConsumerConflict => "consumer_conflict",
            ErrorCode::NotHeld => "not_held",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::MisdirectedRequest => "misdirected_request",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyAuthFailures => "too_many_auth_failures",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::NamespaceDamaged => "namespace_damaged",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::UnknownInbox => "unknown_inbox",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::ReplyError => "reply_error",
            ErrorCode::NoResponders => "no_responders",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidSubject
            | ErrorCode::WildcardInSubject
            | ErrorCode::InvalidPattern
            | ErrorCode::InvalidStart
            | ErrorCode::InvalidBatch
            | ErrorCode::InvalidHeader
            | ErrorCode::InvalidParameter
            | ErrorCode::UnknownParameter
            | ErrorCode::InvalidBody => 400,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::UriTooLong => 414,
            ErrorCode::ReservedNamespace
            | ErrorCode::NamespaceLimit
            | ErrorCode::ForbiddenOrigin
            | ErrorCode::Forbidden => 403,
            ErrorCode::Unauthorized => 401,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::MisdirectedRequest => 421,
            ErrorCode::UnknownNamespace
            | ErrorCode::UnknownEvent
            | ErrorCode::NotFound
            | ErrorCode::UnknownConsumer
            | ErrorCode::NotDelivered
            | ErrorCode::UnknownInbox => 404,
            ErrorCode::ConsumerConflict | ErrorCode::NotHeld => 409,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::TooManyRequests
            | ErrorCode::TooManyConnections
            | ErrorCode::TooManyAuthFailures => 429,
            ErrorCode::ReplyError => 502,
            ErrorCode::ReadOnly
            | ErrorCode::NamespaceDamaged
            | ErrorCode::ShuttingDown
            | ErrorCode::StorageUnavailable
            | ErrorCode::NoResponders => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// Every code, in the order of the enum.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidSubject,
        ErrorCode::WildcardInSubject,
        ErrorCode::InvalidPattern,
        ErrorCode::InvalidStart,
        ErrorCode::InvalidBatch,
        ErrorCode::InvalidHeader,
        ErrorCode::InvalidParameter,
        ErrorCode::UnknownParameter,
        ErrorCode::InvalidBody,
        ErrorCode::HeadersTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::ReservedNamespace,
        ErrorCode::NamespaceLimit,
        ErrorCode::UnknownNamespace,
        ErrorCode::UnknownEvent,
        ErrorCode::NotFound,
        ErrorCode::UnknownConsumer,
        ErrorCode::NotDelivered,
        ErrorCode::ConsumerConflict,
        ErrorCode::NotHeld,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::MisdirectedRequest,
        ErrorCode::ForbiddenOrigin,
        ErrorCode::TooManyConnections,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TooManyAuthFailures,
        ErrorCode::ReadOnly,
        ErrorCode::NamespaceDamaged,
        ErrorCode::ShuttingDown,
        ErrorCode::StorageUnavailable,
        ErrorCode::UnknownInbox,
        ErrorCode::TooManyRequests,
        ErrorCode::ReplyError,
        ErrorCode::NoResponders,
        ErrorCode::Timeout,
        ErrorCode::Internal,
    ];

    /// The code spelled `s` on the wire; `None` for a code this crate does not know (a later
    /// protocol version, or a foreign body).
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `{"code", "message"}` object of an error: inside an [`ErrorBody`], as the data of a
/// stream's `event: error`, and for a failed entry of an ack batch. The code is kept as text
/// so that one this crate does not know is still read ([`ErrorDetail::error_code`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorDetail {
    /// The stable code's spelling (`invalid_subject`, ...).
    pub code: String,
    /// What went wrong, for people (empty when the sender gave none).
    #[serde(default)]
    pub message: String,
}

impl ErrorDetail {
    /// The detail of an error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// The code, when it is one of the protocol's.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

/// The body of an error answer: `{"error": {"code", "message"}}`.
///
/// ```
/// use bus_proto::error::{ErrorBody, ErrorCode};
/// let body = ErrorBody::new(ErrorCode::UnknownConsumer, "no consumer named \"x\"");
/// let json = serde_json::to_string(&body).unwrap();
/// assert_eq!(json, r#"{"error":{"code":"unknown_consumer","message":"no consumer named \"x\""}}"#);
/// let back: ErrorBody = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.error.error_code(), Some(ErrorCode::UnknownConsumer));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// The body of an error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail::new(code, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_from_its_spelling() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!(seen.insert(c.as_str()), "{c} spelled twice");
            assert!((400..600).contains(&c.status()), "{c}");
        }
        assert_eq!(ErrorCode::parse("http_502"), None);
        assert_eq!(ErrorCode::parse("Invalid_Subject"), None);
    }

    #[test]
    fn reads_error_objects_with_unknown_codes_and_no_message() {
        let d: ErrorDetail = serde_json::from_str(r#"{"code":"later_code","x":1}"#).unwrap();
        assert_eq!((d.code.as_str(), d.message.as_str()), ("later_code", ""));
        assert_eq!(d.error_code(), None);
        let b: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"not_found","message":"no such path /x"}}"#)
                .unwrap();
        assert_eq!(b.error.error_code(), Some(ErrorCode::NotFound));
    }

    #[test]
    fn statuses_follow_the_protocol() {
        for (c, status) in [
            (ErrorCode::InvalidSubject, 400),
            (ErrorCode::UnknownConsumer, 404),
            (ErrorCode::NotHeld, 409),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::RequestTimeout, 408),
            (ErrorCode::MisdirectedRequest, 421),
            (ErrorCode::ForbiddenOrigin, 403),
            (ErrorCode::TooManyConnections, 429),
            (ErrorCode::TooManyRequests, 429),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::TooManyAuthFailures, 429),
            (ErrorCode::ReplyError, 502),
            (ErrorCode::NoResponders, 503),
            (ErrorCode::NamespaceDamaged, 503),
            (ErrorCode::Timeout, 504),
            (ErrorCode::Internal, 500),
        ] {
            assert_eq!(c.status(), status, "{c}");
        }
    }
}
