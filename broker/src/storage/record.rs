//! Record framing: how one event is laid out in a segment, and how it is checked.
//!
//! Decoding is two steps, check then parse (as in mini-redis `frame.rs`): the frame's length
//! is checked against the bytes available and the format limit before it is trusted, then
//! the CRC-32 over the length and the body, then the body's fields, strictly (every length
//! must fit and the fields must fill the body exactly). "Not enough bytes" is
//! [`Decoded::Incomplete`], not an error; damage is [`Decoded::Invalid`] with a reason.
//!
//! The layout, all integers little-endian (also in `proto-docs/log-format.md`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | body length `L` (bytes after this 8-byte frame header) |
//! | 4 | 4 | CRC-32 (IEEE) of bytes 0..4 followed by the body |
//! | 8 | 8 | sequence |
//! | 16 | 8 | time, ns since the Unix epoch |
//! | 24 | 4 | events that follow in the same atomic batch |
//! | 28 | 2 | flags, must be 0 |
//! | 30 | 2+n | event id (u16 length, UTF-8) |
//! | .. | 2+n | subject |
//! | .. | 2+n | reply-to (length 0: none) |
//! | .. | 2+n | dedup id (length 0: none) |
//! | .. | 2+n | content type (length 0: none) |
//! | .. | 2 | header count `H` |
//! | .. | H × (2+n, 2+n) | header name, header value |
//! | .. | 4+n | payload (u32 length) |

use bytes::Bytes;

use super::EventIdRef;
use super::event::{Event, NewEvent};

/// Bytes before the body: the length and the CRC.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Offset of the sequence within a record (from the frame's start).
pub const SEQUENCE_OFFSET: usize = 8;
/// Offset of the time within a record (from the frame's start).
pub const TIME_OFFSET: usize = 16;
/// Fixed fields of the body: sequence, time, batch count, flags.
const FIXED_BODY_BYTES: usize = 8 + 8 + 4 + 2;
/// The smallest body: fixed fields, five empty strings, no headers, an empty payload.
pub const MIN_BODY_BYTES: usize = FIXED_BODY_BYTES + 5 * 2 + 2 + 4;
/// The largest body the format allows (payload limit plus room for the other fields).
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024 + 16 * 1024 * 1024;
/// Longest string field (id, subject, reply-to, dedup id, content type, header name or value).
pub const MAX_FIELD_BYTES: usize = u16::MAX as usize;
/// Most headers per event.
pub const MAX_HEADERS: usize = u16::MAX as usize;

/// A decoded record that borrows from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Sequence number.
    pub sequence: u64,
    /// Time in ns since the Unix epoch.
    pub time_ns: u64,
    /// How many records after this one belong to the same atomic batch.
    pub batch_left: u32,
    /// Event id.
    pub id: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// Reply-to subject.
    pub reply_to: Option<&'a str>,
    /// Dedup id.
    pub msg_id: Option<&'a str>,
    /// Content type.
    pub content_type: Option<&'a str>,
    /// Headers.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl RecordView<'_> {
    /// An owned [`Event`]; `payload` is the payload bytes (possibly a zero-copy slice).
    pub fn to_event(&self, payload: Bytes) -> Event {
        let opt = |s: Option<&str>| s.map(str::to_owned);
        Event {
            sequence: self.sequence,
            id: self.id.to_owned(),
            subject: self.subject.to_owned(),
            time_ns: self.time_ns,
            headers: self
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            reply_to: opt(self.reply_to),
            msg_id: opt(self.msg_id),
            content_type: opt(self.content_type),
            payload,
        }
    }
}

/// The outcome of decoding at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, verified record and its total length (frame header included).
    Record(RecordView<'a>, usize),
    /// The buffer ends before the record does.
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

/// The encoded size of `event` (frame header included) when its id is `id_len` bytes long.
pub fn encoded_len(event: &NewEvent, id_len: usize) -> usize {
    let opts = [&event.reply_to, &event.msg_id, &event.content_type];
    size_of_fields(
        id_len,
        &event.subject,
        opts,
        &event.headers,
        event.payload.len(),
    )
}

/// The encoded size of a stored event (frame header included).
pub fn encoded_len_of(e: &Event) -> usize {
    let opts = [&e.reply_to, &e.msg_id, &e.content_type];
    size_of_fields(e.id.len(), &e.subject, opts, &e.headers, e.payload.len())
}

fn size_of_fields(
    id_len: usize,
    subject: &str,
    opts: [&Option<String>; 3],
    headers: &[(String, String)],
    payload_len: usize,
) -> usize {
    let opt: usize = opts.iter().map(|s| s.as_ref().map_or(0, String::len)).sum();
    let headers: usize = headers.iter().map(|(n, v)| 4 + n.len() + v.len()).sum();
    FRAME_HEADER_BYTES + MIN_BODY_BYTES + id_len + subject.len() + opt + headers + payload_len
}

/// Checks that an event's fields fit the format's limits; returns the reason when not.
pub fn check_limits(event: &NewEvent) -> Result<(), String> {
    let fields = [
        ("subject", Some(&event.subject)),
        ("reply-to", event.reply_to.as_ref()),
        ("dedup id", event.msg_id.as_ref()),
        ("content type", event.content_type.as_ref()),
    ];
    for (what, value) in fields {
        if let Some(v) = value
            && v.len() > MAX_FIELD_BYTES
        {
            return Err(format!(
                "{what} is {} bytes, over {MAX_FIELD_BYTES}",
                v.len()
            ));
        }
    }
    if event.subject.is_empty() {
        return Err("empty subject".into());
    }
    if event.headers.len() > MAX_HEADERS {
        return Err(format!(
            "{} headers, over {MAX_HEADERS}",
            event.headers.len()
        ));
    }
    for (n, v) in &event.headers {
        if n.len() > MAX_FIELD_BYTES || v.len() > MAX_FIELD_BYTES {
            return Err(format!("header {n:?} is over {MAX_FIELD_BYTES} bytes"));
        }
    }
    // The largest id the log makes: a 255-byte namespace, 20 digits, 8 hex digits, 2 dashes.
    let body = encoded_len(event, 285) - FRAME_HEADER_BYTES;
    if body > MAX_BODY_BYTES {
        return Err(format!(
            "event of {body} bytes exceeds the record limit of {MAX_BODY_BYTES} bytes"
        ));
    }
    Ok(())
}

/// An id [`encode`] writes into a record: the log's own ([`EventIdRef`], written without
/// the formatting machinery) or any text (tests, tools).
pub trait RecordId {
    /// Appends the id's UTF-8 bytes to `buf`.
    fn write_id(&self, buf: &mut Vec<u8>);
}

impl RecordId for EventIdRef<'_> {
    fn write_id(&self, buf: &mut Vec<u8>) {
        self.write_to(buf);
    }
}

impl RecordId for &str {
    fn write_id(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.as_bytes());
    }
}

impl RecordId for String {
    fn write_id(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.as_bytes());
    }
}

/// Appends the framed record for `event` to `buf`. The caller has checked
/// [`check_limits`] and the payload limit.
pub fn encode(
    buf: &mut Vec<u8>,
    event: &NewEvent,
    sequence: u64,
    time_ns: u64,
    batch_left: u32,
    id: impl RecordId,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    buf.extend_from_slice(&sequence.to_le_bytes());
    buf.extend_from_slice(&time_ns.to_le_bytes());
    buf.extend_from_slice(&batch_left.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
    let put_str = |buf: &mut Vec<u8>, s: &str| {
        buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    };
    // The id is written straight into the buffer (no allocation on the writer's path),
    // then its length is filled in.
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    id.write_id(buf);
    let id_len = (buf.len() - at - 2) as u16;
    buf[at..at + 2].copy_from_slice(&id_len.to_le_bytes());
    put_str(buf, &event.subject);
    put_str(buf, event.reply_to.as_deref().unwrap_or(""));
    put_str(buf, event.msg_id.as_deref().unwrap_or(""));
    put_str(buf, event.content_type.as_deref().unwrap_or(""));
    buf.extend_from_slice(&(event.headers.len() as u16).to_le_bytes());
    for (n, v) in &event.headers {
        put_str(buf, n);
        put_str(buf, v);
    }
    buf.extend_from_slice(&(event.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&event.payload);
    let body_len = (buf.len() - start - FRAME_HEADER_BYTES) as u32;
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    let crc = checksum(&buf[start..start + 4], &buf[start + FRAME_HEADER_BYTES..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The sequence number stored in a frame starting at `buf[0]`, without verifying anything.
/// Used to look for valid records after damage; `None` when too short.
pub fn peek_sequence(buf: &[u8]) -> Option<u64> {
    (buf.len() >= SEQUENCE_OFFSET + 8).then(|| le_u64(buf, SEQUENCE_OFFSET))
}

/// The time stored in a frame starting at `buf[0]`, without verifying anything (for
/// binary search by time; the record is verified when it is read).
pub fn peek_time(buf: &[u8]) -> Option<u64> {
    (buf.len() >= TIME_OFFSET + 8).then(|| le_u64(buf, TIME_OFFSET))
}

/// The length a frame at `buf[0]` claims, when it is within the format's bounds.
pub fn claimed_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let body = le_u32(buf, 0) as usize;
    (MIN_BODY_BYTES..=MAX_BODY_BYTES)
        .contains(&body)
        .then_some(FRAME_HEADER_BYTES + body)
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Decoded::Incomplete;
    }
    let body_len = le_u32(buf, 0) as usize;
    if !(MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(&body_len) {
        return Decoded::Invalid("record length out of range");
    }
    let total = FRAME_HEADER_BYTES + body_len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let stored_crc = le_u32(buf, 4);
    let body = &buf[FRAME_HEADER_BYTES..total];
    if checksum(&buf[..4], body) != stored_crc {
        return Decoded::Invalid("checksum mismatch");
    }
    match parse_body(body) {
        Ok(view) => Decoded::Record(view, total),
        Err(reason) => Decoded::Invalid(reason),
    }
}

/// A cursor over a verified body; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or("field runs past the end of the record")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        self.take(2).map(|b| le_u16(b, 0))
    }

    fn str(&mut self) -> Result<&'a str, &'static str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| "string field is not UTF-8")
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, &'static str> {
        self.str().map(|s| (!s.is_empty()).then_some(s))
    }
}

fn parse_body(body: &[u8]) -> Result<RecordView<'_>, &'static str> {
    let mut c = Cursor { buf: body, pos: 0 };
    let fixed = c.take(FIXED_BODY_BYTES)?;
    let sequence = le_u64(fixed, 0);
    let time_ns = le_u64(fixed, 8);
    let batch_left = le_u32(fixed, 16);
    if le_u16(fixed, 20) != 0 {
        return Err("unknown record flags");
    }
    if sequence == 0 {
        return Err("sequence 0");
    }
    let id = c.str()?;
    let subject = c.str()?;
    if id.is_empty() || subject.is_empty() {
        return Err("empty id or subject");
    }
    let reply_to = c.opt_str()?;
    let msg_id = c.opt_str()?;
    let content_type = c.opt_str()?;
    let count = c.u16()? as usize;
    // Each header needs at least 4 bytes: never reserve more than the body can hold.
    let mut headers = Vec::with_capacity(count.min((body.len() - c.pos) / 4));
    for _ in 0..count {
        headers.push((c.str()?, c.str()?));
    }
    let payload_len = c.take(4).map(|b| le_u32(b, 0))? as usize;
    let payload = c.take(payload_len)?;
    if c.pos != body.len() {
        return Err("trailing bytes after the payload");
    }
    Ok(RecordView {
        sequence,
        time_ns,
        batch_left,
        id,
        subject,
        reply_to,
        msg_id,
        content_type,
        headers,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewEvent {
        NewEvent {
            subject: "user.created".into(),
            headers: vec![
                ("trace".into(), "abc".into()),
                ("empty".into(), String::new()),
            ],
            reply_to: Some("_inbox.42".into()),
            msg_id: Some("m-1".into()),
            content_type: Some("application/json".into()),
            payload: Bytes::from_static(b"{\"a\":1}"),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let e = sample();
        let mut buf = Vec::new();
        encode(&mut buf, &e, 7, 99, 2, "user-7-1");
        assert_eq!(buf.len(), encoded_len(&e, 8));
        let Decoded::Record(v, n) = decode(&buf) else {
            panic!("not decoded")
        };
        assert_eq!(n, buf.len());
        assert_eq!(
            (v.sequence, v.time_ns, v.batch_left, v.id),
            (7, 99, 2, "user-7-1")
        );
        assert_eq!(v.subject, "user.created");
        assert_eq!(v.reply_to, Some("_inbox.42"));
        assert_eq!(v.msg_id, Some("m-1"));
        assert_eq!(v.content_type, Some("application/json"));
        assert_eq!(v.headers, vec![("trace", "abc"), ("empty", "")]);
        assert_eq!(v.payload, b"{\"a\":1}");
    }

    #[test]
    fn minimal_record_round_trips() {
        let e = NewEvent::new("a", Bytes::new());
        let mut buf = Vec::new();
        encode(&mut buf, &e, 1, 0, 0, "x");
        let Decoded::Record(v, _) = decode(&buf) else {
            panic!("not decoded")
        };
        assert_eq!((v.reply_to, v.msg_id, v.content_type), (None, None, None));
        assert!(v.payload.is_empty() && v.headers.is_empty());
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut buf = Vec::new();
        encode(&mut buf, &sample(), 1, 1, 0, "id");
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, &sample(), 1, 1, 0, "id");
        for i in 0..buf.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = buf.clone();
                bad[i] ^= flip;
                assert!(
                    !matches!(decode(&bad), Decoded::Record(..)),
                    "flip {flip:#x} at byte {i} passed"
                );
            }
        }
    }

    #[test]
    fn an_event_over_the_record_limit_is_refused_before_it_is_written() {
        let big = "x".repeat(MAX_FIELD_BYTES);
        let mut e = NewEvent::new("a", vec![0u8; 1024 * 1024]);
        e.headers = (0..2310)
            .map(|i| (format!("{i}{}", &big[..MAX_FIELD_BYTES - 5]), big.clone()))
            .collect();
        assert!(check_limits(&e).unwrap_err().contains("record limit"));
        e.headers.truncate(10);
        assert!(check_limits(&e).is_ok());
    }

    #[test]
    fn zeros_never_pass() {
        for n in [0, 4, 8, 64, 4096] {
            assert!(!matches!(decode(&vec![0; n]), Decoded::Record(..)));
        }
        assert_eq!(
            decode(&[0; 64]),
            Decoded::Invalid("record length out of range")
        );
    }

    #[test]
    fn huge_claimed_length_is_rejected_before_use() {
        let mut buf = vec![0xff; 16];
        buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&buf), Decoded::Invalid("record length out of range"));
    }

    #[test]
    fn header_count_beyond_body_is_invalid_not_a_big_allocation() {
        // A body whose header count claims 65535 headers but holds none: the checksum is
        // made to match, so the parser itself must refuse it.
        let mut buf = Vec::new();
        encode(&mut buf, &NewEvent::new("a", Bytes::new()), 1, 0, 0, "x");
        let at = FRAME_HEADER_BYTES + FIXED_BODY_BYTES + 2 + 1 + 2 + 1 + 2 + 2 + 2;
        buf[at..at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        let crc = checksum(&buf[..4], &buf[FRAME_HEADER_BYTES..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&buf),
            Decoded::Invalid("field runs past the end of the record")
        );
    }
}
