//! An incremental parser of Server-Sent Events (the `text/event-stream` format of the HTML
//! standard, "Parsing an event stream").
//!
//! Bytes go in as they arrive, in chunks split anywhere ([`SseParser::feed`]); complete events
//! come out ([`SseParser::next_event`]). Lines end with CRLF, LF or CR; a CRLF split across two
//! chunks counts once. A leading byte-order mark is skipped. Comment lines (`: keep-alive`)
//! are counted and otherwise ignored. A field line without a colon is a field with an empty
//! value. `data:` lines of one event are joined with LF. `id:` sets the last event id, which
//! every later event carries until another `id:` changes it. `retry:` with only digits sets
//! the reconnection delay. An event is dispatched at an empty line, and only when it has data.
//!
//! **Bound and overflow policy.** The parser holds at most `max_event_bytes` of one pending
//! line plus `max_event_bytes` of one pending event's data (and the events completed but not
//! yet taken). A line or an event's data past the bound fails the parser: events completed
//! before it are still returned, then [`SseParser::next_event`] returns
//! [`SseError::TooLarge`] for good, the buffers are freed and later input is ignored. A
//! stream that sent an oversized event cannot be resynchronised (its next line may be the
//! middle of that event), so the reader must drop the connection.
//!
//! To drive it from a test: [`SseParser::parse`] feeds a chunk and returns the events it
//! completed, or [`SseParser::parse_all`] parses a whole body at once.

use std::collections::VecDeque;
use std::time::Duration;

/// Default bound on the bytes of one event (its line and data buffers): 64 MiB.
///
/// ```
/// use bus_proto::sse::{DEFAULT_MAX_EVENT_BYTES, SseParser};
/// let parser = SseParser::new(DEFAULT_MAX_EVENT_BYTES);
/// assert_eq!(parser.max_event_bytes(), DEFAULT_MAX_EVENT_BYTES);
/// ```
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
///
/// ```
/// # fn demo(parser: &mut bus_proto::sse::SseParser) -> Result<(), bus_proto::sse::SseError> {
/// while let Some(ev) = parser.next_event()? {
///     match ev.event.as_str() {
///         "message" => println!("{} (id {:?})", ev.data, ev.id),
///         other => println!("{other}: {}", ev.data),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: the last `event:` field's value, `message` when there was none.
    pub event: String,
    /// The `data:` lines joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched (set by this event's `id:`
    /// field or an earlier one).
    pub id: Option<String>,
}

/// The parser met something it cannot go on from.
///
/// ```
/// use bus_proto::sse::{SseError, SseParser};
/// let mut parser = SseParser::new(16);
/// parser.feed(b"data: far more than sixteen bytes\n\n");
/// assert_eq!(parser.next_event(), Err(SseError::TooLarge { limit: 16 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event or line exceeded the bound.
    #[error("an SSE event exceeds {limit} bytes")]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
}

/// The incremental parser. See the module docs.
///
/// ```
/// # fn demo() -> Result<(), bus_proto::sse::SseError> {
/// use bus_proto::sse::SseParser;
/// let mut parser = SseParser::default();
/// parser.feed(b"event: greeting\nid: 7\ndata: hello\n");
/// parser.feed(b"data: world\n\n");
/// let ev = parser.next_event()?.expect("a complete event");
/// assert_eq!(ev.event, "greeting");
/// assert_eq!(ev.data, "hello\nworld");
/// assert_eq!(ev.id.as_deref(), Some("7"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SseParser {
    /// Bytes received but not yet split into lines.
    buf: Vec<u8>,
    /// How far `buf` has been scanned for a line end without finding one, so each byte is
    /// scanned once however the input is chunked.
    scanned: usize,
    /// The previous chunk ended in CR: an LF at the start of the next one ends no line.
    skip_lf: bool,
    /// Still at the start of the stream, where a BOM may be (possibly split over chunks).
    at_start: bool,
    /// The pending event's data.
    data: String,
    /// Whether a `data:` field was seen for the pending event.
    has_data: bool,
    /// The pending event's type.
    event: String,
    /// The last event id buffer.
    last_id: Option<String>,
    /// The reconnection delay, when a `retry:` field set one.
    retry: Option<Duration>,
    /// Comment lines seen.
    comments: u64,
    /// Events dispatched and not yet taken.
    ready: VecDeque<SseEvent>,
    /// The bound on one event's bytes.
    max_event_bytes: usize,
    /// Set once the bound was exceeded.
    failed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser bounding one event (and one line) to `max_event_bytes`.
    ///
    /// ```
    /// // At most 1 MiB per event.
    /// let parser = bus_proto::sse::SseParser::new(1024 * 1024);
    /// ```
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            buf: Vec::new(),
            scanned: 0,
            skip_lf: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            event: String::new(),
            last_id: None,
            retry: None,
            comments: 0,
            ready: VecDeque::new(),
            max_event_bytes,
            failed: false,
        }
    }

    /// Adds received bytes. Complete lines are processed at once; events they complete are
    /// queued for [`next_event`](Self::next_event).
    ///
    /// ```
    /// # fn demo() -> Result<(), bus_proto::sse::SseError> {
    /// let mut parser = bus_proto::sse::SseParser::default();
    /// // Chunks may split lines, even a CRLF, anywhere.
    /// parser.feed(b"data: hel");
    /// parser.feed(b"lo\r");
    /// parser.feed(b"\n\r\n");
    /// assert_eq!(parser.next_event()?.map(|e| e.data), Some("hello".to_owned()));
    /// # Ok(()) }
    /// ```
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        self.buf.extend_from_slice(chunk);
        if self.at_start {
            let n = self.buf.len().min(BOM.len());
            if self.buf[..n] != BOM[..n] {
                self.at_start = false;
            } else if n == BOM.len() {
                self.buf.drain(..BOM.len());
                self.at_start = false;
            } else {
                return; // a BOM's first bytes; wait for the rest
            }
        }
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' && i == start {
                    start = i + 1;
                    i += 1;
                    continue;
                }
            }
            if b == b'\n' || b == b'\r' {
                let line = String::from_utf8_lossy(&self.buf[start..i]).into_owned();
                self.line(&line);
                if b == b'\r' {
                    if i + 1 < self.buf.len() {
                        if self.buf[i + 1] == b'\n' {
                            i += 1;
                        }
                    } else {
                        self.skip_lf = true;
                    }
                }
                start = i + 1;
                if self.failed {
                    return;
                }
            }
            i += 1;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > self.max_event_bytes {
            self.fail();
        }
    }

    /// Feeds `chunk` ([`feed`](Self::feed)) and takes every event it completed
    /// ([`next_event`](Self::next_event) until `None`). After an overflow the events
    /// completed before it are returned first, and [`SseError::TooLarge`] from the next
    /// call on.
    ///
    /// ```
    /// # fn demo() -> Result<(), bus_proto::sse::SseError> {
    /// let mut parser = bus_proto::sse::SseParser::default();
    /// assert!(parser.parse(b"data: a\n\nda")?.len() == 1);
    /// assert_eq!(parser.parse(b"ta: b\n\n")?[0].data, "b");
    /// # Ok(()) }
    /// # demo().unwrap();
    /// ```
    pub fn parse(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.feed(chunk);
        let mut out = Vec::new();
        loop {
            match self.next_event() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return Ok(out),
                // The events before an overflow come first; the error on the next call.
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => return Ok(out),
            }
        }
    }

    /// The events of a whole stream body, with the default bound; an event still open at
    /// the end (no empty line after it) is not dispatched, as at the end of a stream. Fails
    /// with [`SseError::TooLarge`] when any event exceeds the bound.
    ///
    /// ```
    /// use bus_proto::sse::SseParser;
    /// let events = SseParser::parse_all(b"event: subscribed\ndata: {}\n\nid: c-1\ndata: x\n\n").unwrap();
    /// assert_eq!(events[1].id.as_deref(), Some("c-1"));
    /// ```
    pub fn parse_all(body: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut parser = SseParser::default();
        let events = parser.parse(body)?;
        parser.next_event()?;
        Ok(events)
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    ///
    /// ```
    /// # fn demo() -> Result<(), bus_proto::sse::SseError> {
    /// let mut parser = bus_proto::sse::SseParser::default();
    /// parser.feed(b"data: x\n");
    /// assert_eq!(parser.next_event()?, None); // no empty line yet
    /// parser.feed(b"\n");
    /// assert!(parser.next_event()?.is_some());
    /// # Ok(()) }
    /// ```
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        if let Some(e) = self.ready.pop_front() {
            return Ok(Some(e));
        }
        if self.failed {
            return Err(SseError::TooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(None)
    }

    /// The bound on one event given to [`SseParser::new`].
    ///
    /// ```
    /// let parser = bus_proto::sse::SseParser::new(4096);
    /// assert_eq!(parser.max_event_bytes(), 4096);
    /// ```
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The reconnection delay the stream asked for with `retry:`, if any.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut parser = bus_proto::sse::SseParser::default();
    /// parser.feed(b"retry: 3000\n\n");
    /// assert_eq!(parser.retry(), Some(Duration::from_millis(3000)));
    /// ```
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The last event id buffer: the value of the last `id:` field seen.
    ///
    /// ```
    /// let mut parser = bus_proto::sse::SseParser::default();
    /// parser.feed(b"id: 41\ndata: x\n\n");
    /// assert_eq!(parser.last_event_id(), Some("41"));
    /// ```
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Comment lines (keep-alives) seen so far.
    ///
    /// ```
    /// let mut parser = bus_proto::sse::SseParser::default();
    /// parser.feed(b": keep-alive\n");
    /// assert_eq!(parser.comments(), 1);
    /// ```
    pub fn comments(&self) -> u64 {
        self.comments
    }

    fn fail(&mut self) {
        self.failed = true;
        self.buf = Vec::new();
        self.data = String::new();
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    self.fail();
                    return;
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // An id holding NUL is ignored.
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            // Only digits; `parse` alone would also take a leading `+`.
            "retry" if value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {} // unknown fields, and ignored values, change nothing
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        self.ready.push_back(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c);
            while let Some(e) = p.next_event().unwrap() {
                out.push(e);
            }
        }
        out
    }

    /// Parses `input` whole, byte by byte, and split at every position; all must agree.
    fn parse_every_way(input: &[u8]) -> Vec<SseEvent> {
        let whole = parse_chunks(&[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes), whole, "byte by byte");
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(parse_chunks(&[a, b]), whole, "split at {cut}");
        }
        whole
    }

    #[test]
    fn parses_events_of_every_line_ending() {
        let want = vec![ev("message", "one", None), ev("gap", "two", Some("c-2"))];
        for nl in ["\n", "\r\n", "\r"] {
            let input = format!("data: one{nl}{nl}event: gap{nl}id: c-2{nl}data: two{nl}{nl}");
            assert_eq!(parse_every_way(input.as_bytes()), want, "{nl:?}");
        }
    }

    #[test]
    fn mixed_line_endings_and_crlf_split_across_chunks() {
        let got = parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\n", b"\r\n"]);
        assert_eq!(
            got,
            vec![ev("message", "a", None), ev("message", "b", None)]
        );
        // CR then LF in separate chunks is one line end, not an empty line.
        let got = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(got, vec![ev("message", "a\nb", None)]);
    }

    #[test]
    fn joins_multi_line_data() {
        let got = parse_every_way(b"data: {\"a\":\ndata:1}\ndata\n\n");
        assert_eq!(got, vec![ev("message", "{\"a\":\n1}\n", None)]);
    }

    #[test]
    fn skips_comments_and_counts_them() {
        let mut p = SseParser::default();
        p.feed(b": keep-alive\n\n:\ndata: x\n: mid-event\n\n");
        assert_eq!(p.next_event().unwrap(), Some(ev("message", "x", None)));
        assert_eq!(p.next_event().unwrap(), None);
        assert_eq!(p.comments(), 3);
    }

    #[test]
    fn id_persists_and_is_reset_only_by_another_id() {
        let got =
            parse_every_way(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n");
        assert_eq!(
            got,
            vec![
                ev("message", "a", Some("1")),
                ev("message", "b", Some("1")),
                ev("message", "c", Some("")),
                // An id holding NUL is ignored.
                ev("message", "d", Some("")),
            ]
        );
    }

    #[test]
    fn event_type_resets_after_each_dispatch_and_needs_data() {
        // An event with no data is not dispatched, and its type does not leak.
        let got = parse_every_way(b"event: shutdown\n\nevent: subscribed\ndata: {}\n\ndata: x\n\n");
        assert_eq!(
            got,
            vec![ev("subscribed", "{}", None), ev("message", "x", None)]
        );
        let got = parse_every_way(b"event: shutdown\ndata: {}\n\n");
        assert_eq!(got, vec![ev("shutdown", "{}", None)]);
    }

    #[test]
    fn retry_takes_only_digits() {
        let mut p = SseParser::default();
        p.feed(b"retry: 1000\n\n");
        assert_eq!(p.retry(), Some(Duration::from_millis(1000)));
        p.feed(b"retry: 5s\nretry:\n\n");
        assert_eq!(p.retry(), Some(Duration::from_millis(1000)));
        p.feed(b"retry:250\n\n");
        assert_eq!(p.retry(), Some(Duration::from_millis(250)));
        assert_eq!(p.next_event().unwrap(), None);
    }

    #[test]
    fn field_without_colon_and_value_spacing() {
        // Only one leading space is removed; a field name without colon has an empty value.
        let got = parse_every_way(b"data:  two spaces\ndata\ndata:no space\n\n");
        assert_eq!(got, vec![ev("message", " two spaces\n\nno space", None)]);
        // A field with a colon later in the value keeps it.
        let got = parse_every_way(b"data: a: b\n\n");
        assert_eq!(got, vec![ev("message", "a: b", None)]);
    }

    #[test]
    fn skips_a_leading_bom_once() {
        let got = parse_every_way(b"\xEF\xBB\xBFdata: a\n\n");
        assert_eq!(got, vec![ev("message", "a", None)]);
        // A BOM later in the stream is not skipped: the field name is then unknown.
        let got = parse_every_way(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n");
        assert_eq!(got, vec![ev("message", "a", None)]);
        // A stream that starts like a BOM but is not one keeps its bytes.
        let got = parse_chunks(&[b"\xEF", b"data: a\n\n"]);
        assert!(got.is_empty());
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        let mut p = SseParser::default();
        p.feed(b"data: a\n");
        assert_eq!(p.next_event().unwrap(), None);
        p.feed(b"data: b");
        assert_eq!(p.next_event().unwrap(), None);
        p.feed(b"\n\n");
        assert_eq!(p.next_event().unwrap(), Some(ev("message", "a\nb", None)));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let got = parse_every_way(b"data: a\xFFb\n\n");
        assert_eq!(got, vec![ev("message", "a\u{FFFD}b", None)]);
    }

    #[test]
    fn bounds_one_event() {
        let mut p = SseParser::new(16);
        p.feed(b"data: 0123456789\n");
        assert_eq!(p.next_event().unwrap(), None);
        p.feed(b"data: 0123456789\n\n");
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
        // A line that never ends is bounded too.
        let mut p = SseParser::new(16);
        p.feed(&[b'x'; 17]);
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
    }

    #[test]
    fn events_before_an_overflow_are_kept_and_later_input_is_ignored() {
        let mut p = SseParser::new(16);
        p.feed(b"data: a\n\ndata: 0123456789abcdef\n\n");
        assert_eq!(p.next_event(), Ok(Some(ev("message", "a", None))));
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
        p.feed(b"data: b\n\n");
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
        let mut p = SseParser::new(16);
        let got = p.parse(b"data: a\n\ndata: 0123456789abcdef\n\n");
        assert_eq!(got, Ok(vec![ev("message", "a", None)]));
        assert_eq!(p.parse(b""), Err(SseError::TooLarge { limit: 16 }));
    }

    #[test]
    fn parse_and_parse_all_agree_with_feed() {
        let body = b"event: subscribed\ndata: {}\n\n: keep-alive\nid: c-1\ndata: x\n\ndata: open";
        let all = SseParser::parse_all(body).unwrap();
        assert_eq!(
            all,
            vec![
                ev("subscribed", "{}", None),
                ev("message", "x", Some("c-1"))
            ]
        );
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for c in body.chunks(3) {
            got.extend(p.parse(c).unwrap());
        }
        assert_eq!(got, all);
    }
}
