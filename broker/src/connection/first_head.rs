//! [`FirstHead`]: the first request head of an HTTP/1 connection, read with a small buffer to
//! tell a long-lived stream request (`GET /v1/stream`), which the broker answers itself
//! (`direct.rs`), from everything else, which goes to hyper with the bytes replayed.
//!
//! Check, then parse: [`FirstHead::parse`] looks at the bytes read so far and says
//! [`Parsed::Partial`] (read more), [`Parsed::Stream`] (a request the direct path answers
//! exactly) or [`Parsed::Other`] (anything else: another route or method, HTTP/2, a head
//! past [`DIRECT_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers, a request with a
//! body, `Expect`, `Upgrade`, an HTTP/1.0 request with a `Connection` header, bytes that are
//! not HTTP, or any head whose parts the `http` types refuse). What hyper would do with an
//! `Other` head is what happens to it, since hyper gets it byte for byte.
//!
//! Bound: the buffer grows to at most [`DIRECT_HEAD_BYTES`] (a head that is not whole by then
//! goes to hyper, whose own limit is far larger) and is dropped before the response starts.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::server::MAX_HEADERS;

/// Longest first head the direct path reads; past it the bytes go to hyper. Heads of
/// `EventSource`, `curl` and `bus-client` streams are a few hundred bytes, a browser's with
/// cookies a few KiB.
pub const DIRECT_HEAD_BYTES: usize = 8 * 1024;

/// The first read's buffer; grown (doubled) up to [`DIRECT_HEAD_BYTES`] when a head is longer.
const FIRST_READ_BYTES: usize = 1024;

/// The paths answered on the direct path: the routes whose successful response is a
/// long-lived SSE stream.
pub const STREAM_PATHS: &[&str] = &["/v1/stream"];

/// What the bytes read so far are.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet, and still below [`DIRECT_HEAD_BYTES`].
    Partial,
    /// A stream request, with what it asks of the connection (boxed: it is large and
    /// lives only until the router takes it).
    Stream(Box<FirstHead>),
    /// Not for the direct path: replay the bytes to hyper.
    Other,
}

/// A stream request's head, as the router takes it, and the bytes read past it.
#[derive(Debug)]
pub struct FirstHead {
    /// The request, with an empty body.
    pub request: Request<Body>,
    /// Whether the client wants the connection kept open after the response (HTTP/1.1
    /// without `Connection: close`).
    pub keep_alive: bool,
    /// Bytes after the head (a pipelined next request), replayed to hyper afterwards.
    pub rest: Vec<u8>,
}

/// How a head read from a socket ended.
#[derive(Debug)]
pub enum Read {
    /// A stream request.
    Stream(Box<FirstHead>),
    /// Something else; these bytes were read and must be replayed.
    Other(Vec<u8>),
}

impl FirstHead {
    /// Reads from `io` until the bytes are a whole head or cannot be one the direct path
    /// answers. A read error or end of input hands what was read on (hyper then sees the
    /// same end). The caller bounds the time (the header timeout).
    pub async fn read<I: AsyncRead + Unpin>(io: &mut I) -> Read {
        let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ_BYTES);
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.capacity());
            }
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Read::Other(buf),
                Ok(_) => {}
            }
            match FirstHead::parse(&buf) {
                Parsed::Partial => {}
                Parsed::Stream(head) => return Read::Stream(head),
                Parsed::Other => return Read::Other(buf),
            }
        }
    }

    /// What `buf`, the bytes read so far, is.
    pub fn parse(buf: &[u8]) -> Parsed {
        // A head with more headers than the broker takes fails to parse here, and goes to
        // hyper (then to the router's `431 headers_too_large`).
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < DIRECT_HEAD_BYTES => {
                return Parsed::Partial;
            }
            _ => return Parsed::Other,
        };
        if len > DIRECT_HEAD_BYTES || req.method != Some("GET") {
            return Parsed::Other;
        }
        let Some(target) = req.path else {
            return Parsed::Other;
        };
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        if !STREAM_PATHS.contains(&path) {
            return Parsed::Other;
        }
        let version = match req.version {
            Some(1) => Version::HTTP_11,
            Some(0) => Version::HTTP_10,
            _ => return Parsed::Other,
        };
        let mut headers = HeaderMap::with_capacity(req.headers.len());
        let mut close = false;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                // hyper reads a zero-length body as none; any other length is its business.
                if h.value != b"0" {
                    return Parsed::Other;
                }
            } else if ["transfer-encoding", "expect", "upgrade"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                return Parsed::Other;
            } else if name.eq_ignore_ascii_case("connection") {
                if version == Version::HTTP_10 {
                    return Parsed::Other;
                }
                close |= has_token(h.value, "close");
            }
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) else {
                return Parsed::Other;
            };
            headers.append(name, value);
        }
        let Ok(uri) = target.parse::<Uri>() else {
            return Parsed::Other;
        };
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Parsed::Other;
        }
        let mut request = Request::new(Body::empty());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        Parsed::Stream(Box::new(FirstHead {
            request,
            keep_alive: version == Version::HTTP_11 && !close,
            rest: buf[len..].to_vec(),
        }))
    }
}

/// Whether the comma-separated header value `value` holds `token` (ASCII case ignored).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(head: &str) -> FirstHead {
        match FirstHead::parse(head.as_bytes()) {
            Parsed::Stream(h) => *h,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    fn is_other(head: &[u8]) -> bool {
        matches!(FirstHead::parse(head), Parsed::Other)
    }

    #[test]
    fn a_stream_request_is_taken_with_its_headers_and_the_bytes_after_it() {
        let h = stream(
            "GET /v1/stream?pattern=a.%3E HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\nX: 1\r\nX: 2\r\n\r\nGET /",
        );
        assert_eq!(h.request.uri(), "/v1/stream?pattern=a.%3E");
        assert_eq!(h.request.version(), Version::HTTP_11);
        assert_eq!(h.request.headers()["last-event-id"], "7");
        assert_eq!(h.request.headers().get_all("x").iter().count(), 2);
        assert!(h.keep_alive);
        assert_eq!(h.rest, b"GET /");
    }

    #[test]
    fn connection_close_and_http_1_0_do_not_keep_the_connection() {
        assert!(!stream("GET /v1/stream HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        let h = stream("GET /v1/stream HTTP/1.0\r\n\r\n");
        assert_eq!(h.request.version(), Version::HTTP_10);
        assert!(!h.keep_alive);
    }

    #[test]
    fn a_partial_head_asks_for_more_until_the_limit() {
        assert!(matches!(
            FirstHead::parse(b"GET /v1/stream HTTP/1.1\r\nHost"),
            Parsed::Partial
        ));
        let mut long = b"GET /v1/stream HTTP/1.1\r\nX: ".to_vec();
        long.resize(DIRECT_HEAD_BYTES, b'a');
        assert!(is_other(&long));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        for head in [
            "HEAD /v1/stream HTTP/1.1\r\n\r\n".to_owned(),
            "POST /v1/stream HTTP/1.1\r\n\r\n".to_owned(),
            "GET /v1/events?pattern=a HTTP/1.1\r\n\r\n".to_owned(),
            "GET /v1/streams HTTP/1.1\r\n\r\n".to_owned(),
            "GET http://x/v1/stream HTTP/1.1\r\n\r\n".to_owned(),
            "GET /v1/stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_owned(),
            "GET /v1/stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            "GET /v1/stream HTTP/1.1\r\nExpect: 100-continue\r\n\r\n".to_owned(),
            "GET /v1/stream HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n".to_owned(),
            "GET /v1/stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_owned(),
            format!("GET /v1/stream HTTP/1.1\r\n{many}\r\n"),
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
            "GET /v1/stream HTTP/1.1\r\nBad Name: x\r\n\r\n".to_owned(),
            "\x16\x03\x01\x00".to_owned(),
        ] {
            assert!(is_other(head.as_bytes()), "{head:?}");
        }
        assert!(matches!(
            FirstHead::parse(b"GET /v1/stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Parsed::Stream(_)
        ));
    }

    #[tokio::test]
    async fn read_returns_what_it_read_when_the_head_is_not_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"POST /v1/events/a HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        match FirstHead::read(&mut a).await {
            Read::Other(bytes) => assert_eq!(bytes, b"POST /v1/events/a HTTP/1.1\r\n\r\n"),
            Read::Stream(h) => panic!("{h:?}"),
        }
    }
}
