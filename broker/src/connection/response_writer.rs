//! [`ResponseWriter`]: writes the response to a request taken on the direct path
//! ([`super::first_head`]) the way hyper's HTTP/1 server writes it, without hyper's read and
//! write buffers: an idle stream holds its socket, its body and a few bytes.
//!
//! Head: the status line (`HTTP/1.1`, or `HTTP/1.0` to an HTTP/1.0 client), the response's
//! headers in their order with lower-case names, `connection: close` added when the
//! connection will not be kept (HTTP/1.1 client that sent `Connection: close`, or the server
//! is shutting down), `content-length` or `transfer-encoding: chunked` as the body's size
//! says (known: its length; unknown: chunked, close-delimited to an HTTP/1.0 client), then
//! `date`. These are hyper 1.x's rules (`proto/h1/role.rs`, `Server::encode`) for the
//! responses a `GET` can get.
//!
//! Body: each data frame is written and flushed as it comes (chunked: `{len:X}\r\n`, the data,
//! `\r\n`; the end `0\r\n\r\n`); empty frames and trailers are skipped, as hyper skips them.
//! While it waits for a frame it reads the socket into [`PEEK_BYTES`] on the stack: the end
//! of input (or a read error) is the client gone, which drops the body (and with it the
//! subscription); bytes read are a pipelined next request, kept for hyper, up to
//! [`DIRECT_HEAD_BYTES`] (past that the socket is not read again until the response ends,
//! as hyper stops reading when its buffer is full).
//!
//! After the response: closed when the head said so, when the body ended in error, was
//! close-delimited, or the server is shutting down; otherwise the connection goes on in
//! hyper with the pipelined bytes in front ([`Outcome::KeepAlive`]).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use axum::body::{Body, HttpBody};
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Version};
use axum::response::Response;
use bytes::Bytes;
use futures::FutureExt as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::first_head::{DIRECT_HEAD_BYTES, has_token};

/// Bytes read at a time while a response is open, to see the client go away.
pub const PEEK_BYTES: usize = 16;

/// Frames that are ready together are written together, up to about this many bytes.
const BATCH_BYTES: usize = 16 * 1024;

/// Bodies of a known length up to this size are written with their head in one write.
const ONE_WRITE_BYTES: u64 = 16 * 1024;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the connection closes (HTTP/1.0, length unknown).
    Close,
}

/// An encoded response head.
#[derive(Debug)]
pub struct Head {
    /// The bytes, up to and with the blank line.
    pub bytes: Vec<u8>,
    /// How the body follows.
    pub framing: Framing,
    /// Whether the connection closes after this response.
    pub last: bool,
}

/// What became of the connection.
#[derive(Debug)]
pub enum Outcome<I> {
    /// The response is written and the connection is kept: these bytes were read past it.
    KeepAlive(I, Vec<u8>),
    /// The connection is done (closed after the response, or the client went away).
    Closed,
}

/// How to write one response on one connection.
#[derive(Debug, Clone, Copy)]
pub struct ResponseWriter {
    /// The request's version.
    pub version: Version,
    /// Whether the client wants the connection kept after the response.
    pub keep_alive: bool,
    /// Whether the server is shutting down (no keep-alive then).
    pub closing: bool,
}

impl ResponseWriter {
    /// The head of `resp`, whose body is `end_stream` (known empty) or of `exact` length
    /// (`None`: unknown), dated `date` (an HTTP-date).
    pub fn head(&self, resp: &Response, end_stream: bool, exact: Option<u64>, date: &str) -> Head {
        let status = resp.status();
        let can_have_body = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
            && !status.is_informational();
        let mut bytes = Vec::with_capacity(64 + resp.headers().len() * 32);
        if self.version == Version::HTTP_11 && status == StatusCode::OK {
            bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            bytes.extend_from_slice(if self.version == Version::HTTP_10 {
                b"HTTP/1.0 "
            } else {
                b"HTTP/1.1 "
            });
            bytes.extend_from_slice(status.as_str().as_bytes());
            bytes.push(b' ');
            bytes.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let mut last = !self.keep_alive || self.closing;
        let mut framing = None;
        let mut wrote_date = false;
        let mut headers = resp.headers().clone();
        if self.version == Version::HTTP_11 && last {
            let has_close = headers
                .get_all(header::CONNECTION)
                .iter()
                .any(|v| has_token(v.as_bytes(), "close"));
            if !has_close {
                headers.append(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let mut open_line = false;
        for (name, values) in headers
            .keys()
            .map(|k| (k, headers.get_all(k)))
            .collect::<Vec<_>>()
        {
            for (i, value) in values.iter().enumerate() {
                match *name {
                    header::CONTENT_LENGTH => {
                        if i > 0 || end_stream || framing.is_some() {
                            continue;
                        }
                        let len = match exact {
                            Some(n) => n,
                            None => match value.to_str().ok().and_then(|v| v.parse().ok()) {
                                Some(n) => n,
                                None => continue,
                            },
                        };
                        framing = Some(Framing::Length(len));
                    }
                    header::CONNECTION => {
                        last |= has_token(value.as_bytes(), "close");
                        if i > 0 {
                            bytes.extend_from_slice(b", ");
                        } else {
                            bytes.extend_from_slice(b"connection: ");
                        }
                        bytes.extend_from_slice(value.as_bytes());
                        open_line = true;
                        continue;
                    }
                    header::DATE => wrote_date = true,
                    _ => {}
                }
                bytes.extend_from_slice(name.as_str().as_bytes());
                bytes.extend_from_slice(b": ");
                bytes.extend_from_slice(value.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            if open_line {
                bytes.extend_from_slice(b"\r\n");
                open_line = false;
            }
        }
        let framing = match framing {
            _ if !can_have_body => Framing::Length(0),
            Some(f) => f,
            None if end_stream || exact == Some(0) => {
                bytes.extend_from_slice(b"content-length: 0\r\n");
                Framing::Length(0)
            }
            None => match exact {
                Some(n) => {
                    bytes.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
                    Framing::Length(n)
                }
                None if self.version == Version::HTTP_10 => Framing::Close,
                None => {
                    bytes.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Framing::Chunked
                }
            },
        };
        if !wrote_date {
            bytes.extend_from_slice(b"date: ");
            bytes.extend_from_slice(date.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        Head {
            bytes,
            last: last || framing == Framing::Close,
            framing,
        }
    }

    /// Writes `resp` on `io`; `pipelined` are bytes already read past the request's head.
    pub async fn write<I>(self, mut io: I, resp: Response, pipelined: Vec<u8>) -> Outcome<I>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let (parts, mut body) = resp.into_parts();
        let end_stream = body.is_end_stream();
        let exact = if end_stream {
            None
        } else {
            body.size_hint().exact()
        };
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let resp = Response::from_parts(parts, Body::empty());
        let Head {
            mut bytes,
            framing,
            last,
        } = self.head(&resp, end_stream, exact, &date);
        drop(resp);
        let mut pipelined = pipelined;
        if let Framing::Length(n) = framing
            && n <= ONE_WRITE_BYTES
        {
            // An error's JSON: the body is whole at once; write it with its head.
            let mut left = n;
            while left > 0 {
                match next_frame(&mut body).await {
                    Some(Ok(data)) => {
                        let take = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        bytes.extend_from_slice(&data[..take]);
                        left -= take as u64;
                    }
                    None | Some(Err(_)) => return Outcome::Closed,
                }
            }
            if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
                return Outcome::Closed;
            }
            drop(body);
            return finish(io, last, pipelined).await;
        }
        if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
            return Outcome::Closed;
        }
        drop(bytes);
        let mut left = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        loop {
            let frame = if pipelined.len() < DIRECT_HEAD_BYTES {
                let mut peek = [0u8; PEEK_BYTES];
                tokio::select! {
                    f = next_frame(&mut body) => f,
                    r = io.read(&mut peek) => match r {
                        Ok(0) | Err(_) => return Outcome::Closed,
                        Ok(n) => {
                            pipelined.extend_from_slice(&peek[..n]);
                            continue;
                        }
                    },
                }
            } else {
                next_frame(&mut body).await
            };
            let data = match frame {
                None => break,
                Some(Ok(data)) => data,
                // hyper closes a connection whose body failed, leaving the response cut.
                Some(Err(_)) => return Outcome::Closed,
            };
            // What else the body has ready goes out in the same write (a consumer catching
            // up, a burst), as hyper queues ready frames before it flushes.
            let mut ended = false;
            let mut batch: Option<Vec<u8>> = None;
            if left.is_none() {
                let mut size = data.len();
                while size < BATCH_BYTES {
                    match next_frame(&mut body).now_or_never() {
                        None => break,
                        Some(None) => {
                            ended = true;
                            break;
                        }
                        Some(Some(Err(_))) => return Outcome::Closed,
                        Some(Some(Ok(more))) => {
                            let b = batch.get_or_insert_with(|| {
                                let mut b = Vec::with_capacity(BATCH_BYTES + 2 * SIZE_LINE_BYTES);
                                encode(&mut b, framing, &data);
                                b
                            });
                            encode(b, framing, &more);
                            size += more.len();
                        }
                    }
                }
            }
            let written = match (batch, framing) {
                (Some(b), _) => io.write_all(&b).await,
                (None, Framing::Chunked) => write_chunk(&mut io, &data).await,
                (None, Framing::Close) => io.write_all(&data).await,
                (None, Framing::Length(_)) => {
                    let l = left.get_or_insert(0);
                    let take = data.len().min(usize::try_from(*l).unwrap_or(usize::MAX));
                    *l -= take as u64;
                    io.write_all(&data[..take]).await
                }
            };
            if written.is_err() || io.flush().await.is_err() {
                return Outcome::Closed;
            }
            if ended {
                break;
            }
            if left == Some(0) {
                break;
            }
        }
        drop(body);
        if framing == Framing::Chunked
            && (io.write_all(b"0\r\n\r\n").await.is_err() || io.flush().await.is_err())
        {
            return Outcome::Closed;
        }
        finish(io, last, pipelined).await
    }
}

/// After a whole response: close (shutting the write side, as hyper does) or keep.
async fn finish<I: AsyncWrite + Unpin>(mut io: I, last: bool, pipelined: Vec<u8>) -> Outcome<I> {
    if last {
        let _ = io.shutdown().await;
        return Outcome::Closed;
    }
    Outcome::KeepAlive(io, pipelined)
}

/// The next non-empty data frame of `body` (trailers are skipped).
async fn next_frame(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Err(e) => return Some(Err(e)),
            Ok(f) => match f.into_data() {
                Ok(d) if !d.is_empty() => return Some(Ok(d)),
                _ => {}
            },
        }
    }
}

/// One chunk: size line, data, CRLF, in one vectored write when the socket allows.
async fn write_chunk<I: AsyncWrite + Unpin>(io: &mut I, data: &[u8]) -> io::Result<()> {
    let mut line = [0u8; SIZE_LINE_BYTES];
    let n = size_line(data.len(), &mut line);
    let mut parts: [&[u8]; 3] = [&line[..n], data, b"\r\n"];
    let mut first = 0;
    while first < parts.len() {
        let slices = [
            io::IoSlice::new(parts[first]),
            io::IoSlice::new(parts.get(first + 1).copied().unwrap_or(&[])),
            io::IoSlice::new(parts.get(first + 2).copied().unwrap_or(&[])),
        ];
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while first < parts.len() && n >= parts[first].len() {
            n -= parts[first].len();
            first += 1;
        }
        if first < parts.len() {
            parts[first] = &parts[first][n..];
        }
    }
    Ok(())
}

/// Appends `data` framed as `framing` says (chunked: as one chunk; else as it is).
fn encode(out: &mut Vec<u8>, framing: Framing, data: &[u8]) {
    if framing == Framing::Chunked {
        let mut line = [0u8; SIZE_LINE_BYTES];
        let n = size_line(data.len(), &mut line);
        out.extend_from_slice(&line[..n]);
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Longest chunk size line: 16 hex digits and CRLF.
const SIZE_LINE_BYTES: usize = 18;

/// Writes `len` in upper-case hex with CRLF into `out` (no allocation per chunk); returns
/// the line's length.
fn size_line(len: usize, out: &mut [u8; SIZE_LINE_BYTES]) -> usize {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        *slot = HEX[(len >> (4 * (digits - 1 - i))) & 0xF];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 02 Dec 2026 20:00:00 GMT";

    fn writer(version: Version, keep_alive: bool) -> ResponseWriter {
        ResponseWriter {
            version,
            keep_alive,
            closing: false,
        }
    }

    fn json_error() -> Response {
        let mut r = Response::new(Body::from("{}"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    #[test]
    fn a_known_length_gets_content_length_after_the_headers_then_the_date() {
        let h = writer(Version::HTTP_11, true).head(&json_error(), false, Some(2), DATE);
        assert_eq!(
            String::from_utf8(h.bytes).unwrap(),
            format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: {DATE}\r\n\r\n"
            )
        );
        assert_eq!(h.framing, Framing::Length(2));
        assert!(!h.last);
    }

    #[test]
    fn a_stream_is_chunked_to_http_1_1_and_close_delimited_to_http_1_0() {
        let r = Response::new(Body::empty());
        let h = writer(Version::HTTP_11, true).head(&r, false, None, DATE);
        assert_eq!(
            String::from_utf8(h.bytes).unwrap(),
            format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: {DATE}\r\n\r\n")
        );
        assert_eq!((h.framing, h.last), (Framing::Chunked, false));
        let h = writer(Version::HTTP_10, false).head(&r, false, None, DATE);
        assert_eq!(
            String::from_utf8(h.bytes).unwrap(),
            format!("HTTP/1.0 200 OK\r\ndate: {DATE}\r\n\r\n")
        );
        assert_eq!((h.framing, h.last), (Framing::Close, true));
    }

    #[test]
    fn connection_close_is_added_when_the_connection_is_not_kept() {
        let h = writer(Version::HTTP_11, false).head(&json_error(), false, Some(2), DATE);
        let s = String::from_utf8(h.bytes).unwrap();
        assert!(
            s.contains("\r\nconnection: close\r\ncontent-length: 2\r\n"),
            "{s}"
        );
        assert!(h.last);
        let closing = ResponseWriter {
            closing: true,
            ..writer(Version::HTTP_11, true)
        };
        assert!(closing.head(&json_error(), false, Some(2), DATE).last);
    }

    #[test]
    fn an_empty_body_is_content_length_zero() {
        let h =
            writer(Version::HTTP_11, true).head(&Response::new(Body::empty()), true, None, DATE);
        assert!(
            String::from_utf8(h.bytes)
                .unwrap()
                .contains("content-length: 0\r\n")
        );
        assert_eq!(h.framing, Framing::Length(0));
    }

    #[test]
    fn chunk_size_lines_are_upper_case_hex() {
        let mut line = [0u8; SIZE_LINE_BYTES];
        for (len, want) in [
            (0, "0\r\n"),
            (10, "A\r\n"),
            (300, "12C\r\n"),
            (65536, "10000\r\n"),
            (usize::MAX, "FFFFFFFFFFFFFFFF\r\n"),
        ] {
            let n = size_line(len, &mut line);
            assert_eq!(&line[..n], want.as_bytes(), "{len}");
        }
    }

    #[tokio::test]
    async fn chunks_are_framed_and_the_end_is_written() {
        let (a, mut b) = tokio::io::duplex(4096);
        let frames = futures::stream::iter([
            Ok::<_, std::convert::Infallible>(Bytes::from_static(b"event: x\n\n")),
            Ok(Bytes::new()),
            Ok(Bytes::from(vec![b'y'; 300])),
        ]);
        let resp = Response::new(Body::from_stream(frames));
        let out = writer(Version::HTTP_11, true)
            .write(a, resp, Vec::new())
            .await;
        let Outcome::KeepAlive(a, rest) = out else {
            panic!("kept")
        };
        drop(a);
        assert!(rest.is_empty());
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let got = String::from_utf8(got).unwrap();
        let body = got.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body,
            format!(
                "A\r\nevent: x\n\n\r\n12C\r\n{}\r\n0\r\n\r\n",
                "y".repeat(300)
            )
        );
    }

    #[tokio::test]
    async fn the_client_going_away_ends_a_pending_stream() {
        let (a, b) = tokio::io::duplex(4096);
        let resp = Response::new(Body::from_stream(futures::stream::pending::<
            Result<Bytes, std::convert::Infallible>,
        >()));
        let writing = tokio::spawn(writer(Version::HTTP_11, true).write(a, resp, Vec::new()));
        let mut b = b;
        let mut head = [0u8; 17];
        b.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
        drop(b);
        assert!(matches!(writing.await.unwrap(), Outcome::Closed));
    }
}
