//! [`Connection`]: one HTTP/1.1 connection of the bench's load generator, and the
//! [`Endpoint`] it connects to.
//!
//! The generator opens its connections itself (hyper's client connection, no pool), so that
//! `--connections N` means N TCP connections, each with one request at a time, against the
//! broker and the baseline alike. Plain `http://` only: the figures are the broker's, not
//! TLS's.
//!
//! Bound: every exchange, connecting included, must finish within [`REQUEST_TIMEOUT`]; an
//! answer body is read up to [`MAX_ANSWER_BYTES`].

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::CliError;

/// Longest one exchange (or connecting) may take before the bench fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read (a receipt of a 10,000-event batch is about 1.3 MB).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Where the load goes: `host:port` and the path prefix of an `http://` URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, to connect to and to send as `Host`.
    pub authority: String,
    /// The URL's path without a trailing slash (usually empty).
    pub prefix: String,
}

impl Endpoint {
    /// Parses an `http://host[:port][/prefix]` URL.
    pub fn parse(url: &str) -> Result<Endpoint, CliError> {
        let bad = |why: &str| CliError::msg(format!("invalid URL {url:?}: {why}"));
        let uri: hyper::Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "bus bench speaks plain http:// (run it next to the broker, or use --embedded)",
                ));
            }
            _ => return Err(bad("expected http://host:port")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Endpoint {
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The endpoint of a server listening on `addr`.
    pub fn local(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            authority: addr.to_string(),
            prefix: String::new(),
        }
    }

    /// `http://authority/prefix`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }
}

/// One request to send: `POST` (or `GET` with an empty body) to `path` under the endpoint.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The path (with its query), starting with `/`.
    pub path: String,
    /// The request's Content-Type, if any.
    pub content_type: Option<&'static str>,
    /// The body.
    pub body: Bytes,
}

/// One HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    endpoint: Endpoint,
}

impl Connection {
    /// Connects to `endpoint` (TCP_NODELAY on), within [`REQUEST_TIMEOUT`].
    pub async fn open(endpoint: &Endpoint) -> Result<Connection, CliError> {
        let connect = async {
            let stream = TcpStream::connect(&endpoint.authority).await?;
            stream.set_nodelay(true)?;
            hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)
        };
        let (sender, conn) = tokio::time::timeout(REQUEST_TIMEOUT, connect)
            .await
            .map_err(|_| {
                CliError::msg(format!(
                    "connecting to {} took longer than {}s",
                    endpoint.authority,
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| {
                CliError::with_cause(format!("cannot connect to {}", endpoint.url()), e)
            })?;
        // The connection's I/O runs as its own task; it ends when `sender` is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            sender,
            endpoint: endpoint.clone(),
        })
    }

    /// Sends `call` and reads the whole answer, within [`REQUEST_TIMEOUT`].
    pub async fn send(&mut self, call: Call) -> Result<(StatusCode, Bytes), CliError> {
        let path = call.path.clone();
        let exchange = async {
            let mut req = Request::builder()
                .method(call.method)
                .uri(format!("{}{}", self.endpoint.prefix, call.path))
                .header(hyper::header::HOST, &self.endpoint.authority);
            if let Some(ct) = call.content_type {
                req = req.header(hyper::header::CONTENT_TYPE, ct);
            }
            let req = req
                .body(Full::new(call.body))
                .map_err(|e| CliError::with_cause("cannot build a request", e))?;
            self.sender
                .ready()
                .await
                .map_err(|e| self.broken(&path, e))?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| self.broken(&path, e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CliError::with_cause(format!("cannot read the answer to {path}"), e))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                CliError::msg(format!(
                    "{} did not answer {path} within {}s",
                    self.endpoint.url(),
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
    }

    fn broken(&self, path: &str, e: hyper::Error) -> CliError {
        CliError::with_cause(
            format!(
                "the connection to {} failed sending {path}",
                self.endpoint.url()
            ),
            e,
        )
    }
}

/// `GET path` on a connection of its own, answered 200: the body as text.
pub async fn get_text(endpoint: &Endpoint, path: &str) -> Result<String, CliError> {
    let mut conn = Connection::open(endpoint).await?;
    let (status, body) = conn
        .send(Call {
            method: Method::GET,
            path: path.to_owned(),
            content_type: None,
            body: Bytes::new(),
        })
        .await?;
    if !status.is_success() {
        return Err(CliError::msg(format!(
            "{}{path} answered {status}: {}",
            endpoint.url(),
            excerpt(&body)
        )));
    }
    String::from_utf8(body.to_vec()).map_err(|_| {
        CliError::msg(format!(
            "{}{path} answered with bytes that are not UTF-8",
            endpoint.url()
        ))
    })
}

/// The first 200 bytes of an answer, for an error message.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_only() {
        let e = Endpoint::parse("http://127.0.0.1:2021").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("127.0.0.1:2021", "")
        );
        let e = Endpoint::parse("http://localhost/bus/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("localhost:80", "/bus")
        );
        for bad in ["https://h:1", "h:1", "ftp://h", ""] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
