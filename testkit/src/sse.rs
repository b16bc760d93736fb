//! [`SseReader`]: reads a `text/event-stream` response body incrementally, for tests and
//! benches.
//!
//! The frames are parsed by the project's one SSE parser (`SseParser`, imported by the
//! single `use` below); this reader only moves bytes from the body into it, one line at a
//! time, so that messages and comments come out in the order they were sent.
//!
//! Bound: one event (its pending line plus data) may hold [`MAX_SSE_EVENT_BYTES`]; past that
//! the reader panics. Every read of the body is bounded by [`WAIT`](crate::WAIT), also while
//! keep-alive comments keep arriving.

use bus_proto::sse::SseParser;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode, Version};
use serde_json::Value;

use crate::http::{HttpClient, build_request};
use crate::wait::within;

/// Bound on the bytes of one SSE event (its pending line plus data): 64 MiB.
pub const MAX_SSE_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// Bound on the bytes of one comment kept as text: longer comments are cut there.
const MAX_COMMENT_BYTES: usize = 4096;

/// Opens an SSE stream at `url` with `client` (status and headers are read, the body is left
/// to the reader).
pub async fn sse(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> SseReader {
    let mut all: Vec<(&str, &str)> = vec![("accept", "text/event-stream")];
    all.extend_from_slice(headers);
    let what = format!("GET {url}");
    let req = build_request(Method::GET, url, &all, Bytes::new());
    let res = within(&what, client.request(req))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (parts, body) = res.into_parts();
    SseReader {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
        parser: SseParser::new(MAX_SSE_EVENT_BYTES),
        unfed: Bytes::new(),
        line: Vec::new(),
        ended: false,
        body_error: None,
        comments: Vec::new(),
    }
}

/// One dispatched SSE message.
#[derive(Debug, Clone)]
pub struct SseMessage {
    /// The `event:` field, `None` for the default type (`message`).
    pub event: Option<String>,
    /// The last event id in force when the message was dispatched (its own `id:` or an
    /// earlier message's, as a browser's `lastEventId`).
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// How many `data:` lines the message had.
    pub data_lines: usize,
}

impl SseMessage {
    /// The data as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

/// What the reader took out of the stream.
enum Item {
    /// A dispatched message.
    Message(SseMessage),
    /// A comment line (its text is the last of [`SseReader::comments`]).
    Comment,
}

/// Reads a `text/event-stream` body incrementally: lines may be split across chunks in any
/// way; `\n`, `\r\n` and `\r` end lines; comments are kept apart from messages.
pub struct SseReader {
    /// The response status.
    pub status: StatusCode,
    /// The HTTP version of the response.
    pub version: Version,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, read a frame at a time.
    body: Incoming,
    /// The parser the bytes go into.
    parser: SseParser,
    /// Bytes received and not yet given to the parser (they are fed a line at a time).
    unfed: Bytes,
    /// The start of the line being fed (up to [`MAX_COMMENT_BYTES`]), to give a comment's text.
    line: Vec<u8>,
    /// The body has ended (cleanly or not).
    ended: bool,
    /// The error that ended the body, if it did not end cleanly.
    pub body_error: Option<String>,
    /// Every comment line received (without the leading `:`).
    comments: Vec<String>,
}

impl SseReader {
    /// The value of response header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The last `retry:` value received, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.parser
            .retry()
            .map(|d| u64::try_from(d.as_millis()).expect("retry fits u64"))
    }

    /// Every comment line received so far (without the leading `:`).
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// The next message the parser has dispatched, if any.
    fn dispatched(&mut self) -> Option<SseMessage> {
        let e = self
            .parser
            .next_event()
            .unwrap_or_else(|e| panic!("SSE stream cannot be parsed: {e}"))?;
        Some(SseMessage {
            event: (e.event != "message").then_some(e.event),
            id: e.id,
            data_lines: e.data.split('\n').count(),
            data: e.data,
        })
    }

    /// Feeds the parser up to and including the next line end in `unfed` (or all of it);
    /// returns the comment that line was, if it was one.
    fn feed_line(&mut self) -> Option<Item> {
        let end = self
            .unfed
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(self.unfed.len(), |i| i + 1);
        let piece = self.unfed.split_to(end);
        let comments = self.parser.comments();
        self.parser.feed(&piece);
        let room = MAX_COMMENT_BYTES.saturating_sub(self.line.len());
        self.line.extend_from_slice(&piece[..piece.len().min(room)]);
        if !piece.ends_with(b"\n") && !piece.ends_with(b"\r") {
            return None;
        }
        let line = std::mem::take(&mut self.line);
        if self.parser.comments() == comments {
            return None;
        }
        // The comment's line, without the `\n` a split CRLF may have left at its start.
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_start_matches('\n').trim_end_matches(['\r', '\n']);
        let text = text.strip_prefix(':').unwrap_or(text);
        self.comments.push(text.to_owned());
        Some(Item::Comment)
    }

    /// The next message or comment; `None` once the body has ended.
    async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(m) = self.dispatched() {
                return Some(Item::Message(m));
            }
            if !self.unfed.is_empty() {
                if let Some(item) = self.feed_line() {
                    return Some(item);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match within("the next SSE chunk", self.body.frame()).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.unfed = data;
                    }
                }
                Some(Err(e)) => {
                    self.body_error = Some(e.to_string());
                    self.ended = true;
                }
                None => self.ended = true,
            }
        }
    }

    /// For benches: hands every line of the rest of the body (without its `\n`) to
    /// `on_line`, until it returns `false` or the body ends. No parsing and no per-read
    /// bound, so that a bench sharing the cores with the broker measures the broker rather
    /// than this reader; the caller bounds the run. A line is bounded by
    /// [`MAX_SSE_EVENT_BYTES`] (the reader panics past it).
    pub async fn for_each_line(mut self, mut on_line: impl FnMut(&[u8]) -> bool) {
        let mut buf: Vec<u8> = std::mem::take(&mut self.unfed).to_vec();
        loop {
            let mut start = 0;
            while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
                if !on_line(&buf[start..start + pos]) {
                    return;
                }
                start += pos + 1;
            }
            buf.drain(..start);
            assert!(
                buf.len() <= MAX_SSE_EVENT_BYTES,
                "an SSE line exceeds {MAX_SSE_EVENT_BYTES} bytes"
            );
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                    }
                }
                Some(Err(_)) | None => return,
            }
        }
    }

    /// The next message (of any event type), skipping comments; `None` once the stream ended.
    /// Panics when no message arrives within [`WAIT`](crate::WAIT), also while keep-alive
    /// comments do.
    pub async fn next_event(&mut self) -> Option<SseMessage> {
        within("the next SSE message", async {
            loop {
                match self.next_item().await? {
                    Item::Message(m) => return Some(m),
                    Item::Comment => {}
                }
            }
        })
        .await
    }

    /// Reads until a comment line arrives (panics on a message or the end of the stream);
    /// returns its text.
    pub async fn expect_comment(&mut self) -> String {
        match self.next_item().await {
            Some(Item::Comment) => self.comments.last().cloned().expect("comment"),
            Some(Item::Message(m)) => panic!("expected a comment, got {m:?}"),
            None => panic!("stream ended while waiting for a comment"),
        }
    }

    /// Asserts the status and framing of a stream and reads its first message, which must be
    /// `subscribed`; returns its data.
    pub async fn expect_subscribed(&mut self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "stream status");
        let ct = self.header("content-type").unwrap_or("").to_owned();
        assert!(
            ct.starts_with("text/event-stream"),
            "stream content-type {ct:?}"
        );
        let m = self
            .next_event()
            .await
            .expect("stream ended before `subscribed`");
        assert_eq!(
            m.event.as_deref(),
            Some("subscribed"),
            "first message: {m:?}"
        );
        m.json()
    }

    /// The next message, which must be an event (default type, with an `id:`); returns it.
    pub async fn expect_event(&mut self) -> SseMessage {
        let m = self
            .next_event()
            .await
            .expect("stream ended while waiting for an event");
        assert!(
            m.event.is_none(),
            "expected a default-type event, got {m:?}"
        );
        assert!(m.id.is_some(), "event without an SSE id: {m:?}");
        m
    }

    /// The next `n` events (see [`SseReader::expect_event`]).
    pub async fn expect_events(&mut self, n: usize) -> Vec<SseMessage> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.expect_event().await);
        }
        out
    }
}
