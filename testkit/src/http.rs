//! A small HTTP client for tests: one request read in full ([`send`], [`Resp`] with the
//! documented error-body check), HTTP/2 prior knowledge ([`h2c_client`]), exchanges on a raw
//! socket for what a client cannot send ([`raw_http`]), and percent-encoding ([`enc`]).
//!
//! Every await is bounded by [`WAIT`](crate::WAIT).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::wait::within;

/// The HTTP client every test uses (HTTP/1.1, or HTTP/2 prior knowledge when asked).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds a plain HTTP/1.1 client (what [`TestServer`](crate::TestServer) uses), for a
/// test that talks to a server it did not start.
pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Builds an HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read in full.
#[derive(Debug)]
pub struct Resp {
    /// The status code.
    pub status: StatusCode,
    /// The HTTP version the response came in.
    pub version: Version,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Resp {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is the documented error response: `status`, a JSON body
    /// `{"error":{"code":code,"message":<non-empty string>}}`; returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {} {}",
            self.status,
            self.text()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error content-type {ct:?}, body {}",
            self.text()
        );
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "error body has exactly one key: {v}");
        let err = v["error"].as_object().expect("error.error is an object");
        assert_eq!(v["error"]["code"], code, "error code in {v}");
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error.message is a string in {v}"));
        assert!(!msg.is_empty(), "empty error message in {v}");
        assert!(
            err.keys().all(|k| k == "code" || k == "message"),
            "error object holds only code and message: {v}"
        );
        msg.to_owned()
    }
}

pub(crate) fn build_request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    req.body(Full::new(body)).expect("request")
}

/// Sends one request with `client` and reads the whole response.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Resp {
    let what = format!("{method} {url}");
    let req = build_request(method, url, headers, body);
    let res = within(&what, client.request(req))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (parts, body) = res.into_parts();
    let body = within(&format!("body of {what}"), body.collect())
        .await
        .unwrap_or_else(|e| panic!("body of {what}: {e:?}"))
        .to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for paths and queries.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response read off a raw connection: the status code, the header block as text, and
/// the body (what follows the blank line, not de-chunked).
#[derive(Debug)]
pub struct RawResp {
    /// The status code.
    pub status: u16,
    /// The status line and headers, as text.
    pub head: String,
    /// What follows the blank line, as text (not de-chunked).
    pub body: String,
}

impl RawResp {
    /// Asserts a JSON error body `{"error":{"code":code,...}}` with status `status`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}\n\n{}", self.head, self.body);
        let start = self
            .body
            .find('{')
            .unwrap_or_else(|| panic!("no JSON body: {}\n\n{:?}", self.head, self.body));
        let end = self.body.rfind('}').map_or(self.body.len(), |i| i + 1);
        let v: Value = serde_json::from_str(&self.body[start..end])
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body));
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}

/// Writes `bytes` on a new connection to `addr` and reads the first response until the
/// connection closes or the response is complete (by Content-Length), within [`WAIT`].
/// For requests the HTTP client cannot send: malformed framing, oversized heads.
pub async fn raw_http(addr: SocketAddr, bytes: &[u8]) -> RawResp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within("raw HTTP exchange", async {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer (and close) before it read everything: ignore write errors.
        let _ = c.write_all(bytes).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match c.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(h) = text.find("\r\n\r\n") {
                let head = &text[..h];
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                if len.is_some_and(|len| text.len() >= h + 4 + len) {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        RawResp {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    })
    .await
}
