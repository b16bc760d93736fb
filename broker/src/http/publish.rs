//! `POST /v1/events/{subject}` (one event, the body is the payload) and `POST /v1/events`
//! (a batch, JSON array or NDJSON).

use std::borrow::Cow;

use axum::Extension;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde_json::value::RawValue;

use super::query::{NoParams, Params, Query};
use crate::auth::Caller;
use crate::broker::{Broker, CheckedPublish, MAX_BATCH_ITEMS, Publish};
use crate::error::{Error, ErrorCode};
use crate::storage::Receipt;
use crate::subject::Subject;
use crate::units::format_rfc3339;

/// Header prefix of event headers.
pub const HEADER_PREFIX: &str = "bus-header-";
/// Slack above the payload limit allowed for a single publish's body.
const BODY_SLACK_BYTES: usize = 64 * 1024;
/// Body limit of a batch.
pub const MAX_BATCH_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A receipt on the wire ([`bus_proto::Receipt`]: `duplicate` only when true), serialised
/// straight into the response (never through a `serde_json::Value`: that tree cost more than
/// the append itself for a batch).
pub fn receipt_wire(r: &Receipt, subject: &str) -> bus_proto::Receipt {
    let mut wire = bus_proto::Receipt::new(
        r.id(),
        r.namespace.to_string(),
        r.sequence,
        subject.to_owned(),
        format_rfc3339(r.time_ns),
    );
    wire.duplicate = r.duplicate;
    wire
}

/// The borrowed form of a stored receipt, for writing it.
fn receipt_ref<'a>(r: &'a Receipt, subject: &'a str) -> bus_proto::ReceiptRef<'a> {
    bus_proto::ReceiptRef {
        id: r.id_ref(),
        subject,
        time_ns: r.time_ns,
        duplicate: r.duplicate,
    }
}

/// A JSON answer already written.
fn json_answer(status: StatusCode, body: impl Into<Body>) -> Response {
    // Built directly: a tuple's `IntoResponse` converts each header through `TryInto`,
    // with an error answer for a header that does not convert.
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A publish's answer: its receipt, written directly ([`bus_proto::ReceiptRef::write_json`]).
fn receipt_answer(status: StatusCode, r: &Receipt, subject: &str) -> Response {
    json_answer(status, receipt_ref(r, subject).to_json_bytes())
}

/// A batch's answer: `{"receipts": [...]}`, one receipt per item in order, written into one
/// buffer sized up front. The buffer is the body as it is: only the receipt writers write
/// to it, and they write UTF-8, so it is not checked again.
fn batch_answer(stored: &[Receipt], subjects: &[Subject]) -> Response {
    let text: usize = stored
        .iter()
        .zip(subjects)
        .map(|(r, s)| {
            receipt_ref(r, s.as_str()).text_len() + bus_proto::receipt::RECEIPT_FIXED_BYTES
        })
        .sum();
    let mut out: Vec<u8> = Vec::with_capacity(16 + text);
    out.extend_from_slice(b"{\"receipts\":[");
    for (i, (r, s)) in stored.iter().zip(subjects).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        receipt_ref(r, s.as_str()).write_json(&mut out);
    }
    out.extend_from_slice(b"]}");
    json_answer(StatusCode::CREATED, out)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Error> {
    super::body::read(body, limit, "the request body").await
}

/// `Bus-Msg-Id`: a single publish's dedup id.
const BUS_MSG_ID: HeaderName = HeaderName::from_static("bus-msg-id");
/// `Bus-Reply-To`: a single publish's reply subject.
const BUS_REPLY_TO: HeaderName = HeaderName::from_static("bus-reply-to");

/// Header `name`'s first value, `value`, as text.
fn header_str(name: &HeaderName, value: Option<&HeaderValue>) -> Result<Option<String>, Error> {
    match value {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.to_owned())).map_err(|_| {
            Error::new(
                ErrorCode::InvalidHeader,
                format!("header {name} is not visible ASCII"),
            )
        }),
    }
}

/// Most consumers a publish can wait for.
pub const MAX_CONFIRM: usize = 1000;
/// Default wait for confirmations.
pub const DEFAULT_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest wait for confirmations.
pub const MAX_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `confirm=N` and `timeout=<duration>`: (N, timeout) when confirmation is asked for.
/// Query parameters of `POST /v1/events/{subject}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// Consumers whose acks the publish waits for.
    confirm: Option<String>,
    /// Longest wait for them.
    timeout: Option<String>,
}

impl Params for PublishParams {
    const ACCEPTED: &'static [&'static str] = &["confirm", "timeout"];
}

fn confirm_params(q: &PublishParams) -> Result<Option<(usize, std::time::Duration)>, Error> {
    let Some(n) = q.confirm.as_deref() else {
        if q.timeout.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidParameter,
                "timeout is only meaningful with confirm=N",
            ));
        }
        return Ok(None);
    };
    let n = n
        .parse::<usize>()
        .ok()
        .filter(|c| (1..=MAX_CONFIRM).contains(c) && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("confirm must be 1 to {MAX_CONFIRM}, got {n:?}"),
            )
        })?;
    let timeout = match q.timeout.as_deref() {
        None => DEFAULT_CONFIRM_TIMEOUT,
        Some(t) => crate::units::parse_duration(t)
            .ok()
            .filter(|d| !d.is_zero() && *d <= MAX_CONFIRM_TIMEOUT)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidParameter,
                    format!("timeout must be a duration from 1ms to 5m, got {t:?}"),
                )
            })?,
    };
    Ok(Some((n, timeout)))
}

/// Subjects of this prefix are replies: handed to the waiting request, never stored.
const INBOX_PREFIX: &str = "_inbox.";

/// Whether `id` (after `_inbox.`) is what the broker opens: 32 lowercase hex digits.
fn is_inbox_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One event as a single publish or a request carries it: `subject` from the path, the
/// payload from the body, event headers from `Bus-Header-*`, the dedup id from `Bus-Msg-Id`,
/// the reply subject from `Bus-Reply-To`, the content type from `Content-Type`.
pub(crate) async fn read_publish(
    broker: &Broker,
    subject: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Publish, Error> {
    let limit = broker.config().log.max_payload_bytes;
    let payload = read_body(body, limit + BODY_SLACK_BYTES).await?;
    if payload.len() > limit {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "payload of {} bytes exceeds the limit of {limit} bytes",
                payload.len()
            ),
        ));
    }
    // One pass over the headers finds the event's own and the first value of each named
    // one (as `HeaderMap::get` would, which hashes the name for each look-up).
    let mut event_headers = Vec::new();
    let (mut msg_id, mut reply_to, mut content_type) = (None, None, None);
    for (name, value) in headers {
        if *name == header::CONTENT_TYPE {
            content_type.get_or_insert(value);
        } else if *name == BUS_MSG_ID {
            msg_id.get_or_insert(value);
        } else if *name == BUS_REPLY_TO {
            reply_to.get_or_insert(value);
        } else if let Some(n) = name.as_str().strip_prefix(HEADER_PREFIX) {
            if n.is_empty() {
                return Err(Error::new(
                    ErrorCode::InvalidHeader,
                    "empty event header name",
                ));
            }
            let v = value.to_str().map_err(|_| {
                Error::new(
                    ErrorCode::InvalidHeader,
                    format!("header {name} is not visible ASCII"),
                )
            })?;
            event_headers.retain(|(k, _): &(String, String)| k != n);
            event_headers.push((n.to_owned(), v.to_owned()));
        }
    }
    Ok(Publish {
        subject,
        headers: event_headers,
        msg_id: header_str(&BUS_MSG_ID, msg_id)?.filter(|s| !s.is_empty()),
        reply_to: header_str(&BUS_REPLY_TO, reply_to)?.filter(|s| !s.is_empty()),
        content_type: header_str(&header::CONTENT_TYPE, content_type)?,
        payload,
        dedup_scope: None,
    })
}

/// `POST /v1/events/{subject}`; to an inbox (`_inbox.…`), a reply to a waiting request.
pub async fn publish_one(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Query<PublishParams>,
    req: Request,
) -> Result<Response, Error> {
    // The request itself, not a `HeaderMap` extractor, which copies every header.
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let Path(subject) = subject.map_err(super::error::bad_path)?;
    let confirm = confirm_params(&q)?;
    if let Some(id) = subject.strip_prefix(INBOX_PREFIX) {
        if !is_inbox_id(id) {
            return Err(Error::new(
                ErrorCode::ReservedNamespace,
                format!(
                    "{subject:?} is not an inbox (_inbox.<32 lowercase hex digits>): the _inbox namespace is reserved"
                ),
            ));
        }
        if confirm.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidParameter,
                "a reply cannot wait for confirmations",
            ));
        }
        let p = read_publish(&broker, subject.clone(), headers, body).await?;
        broker.reply_as(p, &caller)?;
        let body = serde_json::json!({ "subject": subject, "replied": true });
        return Ok((StatusCode::OK, axum::Json(body)).into_response());
    }
    let checked = Broker::check_subject(&subject)?;
    caller.check_publish(&checked, "publish to")?;
    let mut p = read_publish(&broker, subject.clone(), headers, body).await?;
    p.dedup_scope = caller.dedup_scope();
    broker.admit_namespace(&checked, &caller).await?;
    let p = CheckedPublish::with_subject(checked, p)?;
    if let Some((required, timeout)) = confirm {
        let (r, confirmed) = broker.publish_confirmed(p, required, timeout).await?;
        let mut body = receipt_wire(&r, &subject);
        let status = match confirmed {
            None => StatusCode::OK,
            Some(k) => {
                body.confirmed = Some(k as u64);
                body.required = Some(required as u64);
                if k >= required {
                    StatusCode::CREATED
                } else {
                    StatusCode::ACCEPTED
                }
            }
        };
        return Ok((status, axum::Json(body)).into_response());
    }
    let r = broker.publish_checked(p).await?;
    let status = if r.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(receipt_answer(status, &r, &subject))
}

/// One item of a batch, borrowing from the request body where it can (its subject and
/// payload are copied once, into the event).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem<'a> {
    #[serde(borrow)]
    subject: Cow<'a, str>,
    /// Kept as its exact text: a JSON payload is stored as given, never re-serialised.
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    msg_id: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
}

/// A JSON string payload's text (`None` for any other JSON value).
fn string_payload(i: usize, raw: &RawValue) -> Result<Option<Cow<'_, str>>, Error> {
    let r = raw.get();
    if !r.starts_with('"') {
        Ok(None)
    } else if memchr::memchr(b'\\', r.as_bytes()).is_none() {
        // The parser checked it is a JSON string: without escapes, its text is the string
        // between the quotes.
        Ok(r.get(1..r.len() - 1).map(Cow::Borrowed))
    } else {
        serde_json::from_str::<String>(r)
            .map(|s| Some(Cow::Owned(s)))
            .map_err(|e| batch_error(i, e))
    }
}

/// The bytes of `s`, copied only when borrowed.
fn owned_bytes(s: Cow<'_, str>) -> Bytes {
    match s {
        Cow::Borrowed(b) => Bytes::copy_from_slice(b.as_bytes()),
        Cow::Owned(o) => Bytes::from(o),
    }
}

fn batch_error(i: usize, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::InvalidBatch, format!("item {i}: {what}"))
}

fn to_publish(i: usize, item: BatchItem<'_>, limit: usize) -> Result<Publish, Error> {
    // A JSON string payload is decoded; any other JSON value is kept as its exact text.
    let text = |raw| string_payload(i, raw);
    let (payload, default_ct) = match (item.payload, item.encoding.as_deref()) {
        (None, _) => (Bytes::new(), None),
        (Some(raw), Some("base64")) => {
            let s =
                text(raw)?.ok_or_else(|| batch_error(i, "a base64 payload must be a string"))?;
            let b = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| batch_error(i, format!("payload is not valid base64: {e}")))?;
            (Bytes::from(b), Some("application/octet-stream"))
        }
        (_, Some(other)) => {
            return Err(batch_error(
                i,
                format!("unknown encoding {other:?} (only \"base64\")"),
            ));
        }
        (Some(raw), None) => match text(raw)? {
            Some(s) => (owned_bytes(s), Some("text/plain; charset=utf-8")),
            None => (
                Bytes::copy_from_slice(raw.get().as_bytes()),
                Some("application/json"),
            ),
        },
    };
    if payload.len() > limit {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "item {i}: payload of {} bytes exceeds the limit of {limit} bytes",
                payload.len()
            ),
        ));
    }
    // Validated and lowercased as the single publish does; a later duplicate name wins.
    let mut headers: Vec<(String, String)> = Vec::new();
    for (k, v) in item.headers.unwrap_or_default() {
        if k.is_empty() {
            return Err(batch_error(i, "empty header name"));
        }
        let k = k.to_ascii_lowercase();
        headers.retain(|(n, _)| *n != k);
        headers.push((k, v));
    }
    Ok(Publish {
        subject: item.subject.into_owned(),
        headers,
        msg_id: item.msg_id.filter(|s| !s.is_empty()),
        reply_to: item.reply_to.filter(|s| !s.is_empty()),
        content_type: item.content_type.or(default_ct.map(str::to_owned)),
        payload,
        dedup_scope: None,
    })
}

/// The lines of `text`, exactly as [`str::lines`] gives them (split after each `\n`, one
/// `\r` before it dropped), found with `memchr`: `str::lines` searched byte by byte, about
/// 800 instructions per NDJSON batch item under callgrind.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let line = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                line.strip_suffix('\r').unwrap_or(line)
            }
            None => std::mem::take(&mut rest),
        };
        Some(line)
    })
}

/// The fewest bytes an NDJSON item takes: `{"subject":"a"}` and its line end.
const MIN_ITEM_BYTES: usize = 16;

/// How many items an NDJSON body likely holds, to size their vector once: as many as lines
/// as long as its first, never more than its bytes allow, nor than a batch may have. An
/// item is about 160 bytes, and growing the vector item by item copied each of them about
/// twice; a wrong guess only costs that growth back.
fn ndjson_items_guess(text: &str) -> usize {
    let first = memchr::memchr(b'\n', text.as_bytes()).map_or(text.len(), |end| end + 1);
    (text.len() / first.max(MIN_ITEM_BYTES))
        .min(text.len() / MIN_ITEM_BYTES + 1)
        .clamp(1, MAX_BATCH_ITEMS)
}

/// `POST /v1/events`.
pub async fn publish_batch(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    _: Query<NoParams>,
    body: Body,
) -> Result<Response, Error> {
    let body = read_body(body, MAX_BATCH_BODY_BYTES).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::new(ErrorCode::InvalidBatch, "body is not UTF-8"))?;
    let trimmed = text.trim_start();
    let items: Vec<BatchItem> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed)
            .map_err(|e| Error::new(ErrorCode::InvalidBatch, format!("invalid JSON array: {e}")))?
    } else {
        let mut v = Vec::with_capacity(ndjson_items_guess(text));
        for (line_no, line) in lines(text)
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            if v.len() >= MAX_BATCH_ITEMS {
                let msg = format!("more than {MAX_BATCH_ITEMS} items");
                return Err(Error::new(ErrorCode::InvalidBatch, msg));
            }
            v.push(serde_json::from_str(line).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidBatch,
                    format!("line {}: {e}", line_no + 1),
                )
            })?);
        }
        v
    };
    if items.is_empty() {
        return Err(Error::new(ErrorCode::InvalidBatch, "empty batch"));
    }
    if items.len() > MAX_BATCH_ITEMS {
        return Err(Error::new(
            ErrorCode::InvalidBatch,
            format!("more than {MAX_BATCH_ITEMS} items"),
        ));
    }
    let limit = broker.config().log.max_payload_bytes;
    // Every item is decoded and its right checked before anything is stored: a batch is
    // atomic. Each subject is parsed once, here; the publisher takes it checked.
    let scope = caller.dedup_scope();
    let mut checked = Vec::with_capacity(items.len());
    let mut subjects = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at_item = |e| crate::publisher::at_item(e, i);
        let mut p = to_publish(i, item, limit)?;
        p.dedup_scope = scope.clone();
        let c = CheckedPublish::new(p).map_err(at_item)?;
        caller
            .check_publish(c.subject(), "publish to")
            .map_err(at_item)?;
        subjects.push(c.subject().clone());
        checked.push(c);
    }
    if let Some(s) = subjects.first() {
        broker.admit_namespace(s, &caller).await?;
    }
    let stored = broker.publish_batch_checked(checked).await?;
    Ok(batch_answer(&stored, &subjects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ndjson_guess_follows_the_first_line_within_bounds() {
        let line = "{\"subject\":\"bench.pub\",\"payload\":\"x\"}\n";
        assert_eq!(ndjson_items_guess(&line.repeat(100)), 100);
        assert_eq!(ndjson_items_guess(line.trim_end()), 1);
        assert_eq!(ndjson_items_guess(""), 1);
        // A blank first line cannot make the guess pass what the bytes can hold.
        let odd = format!("\n{}", "x".repeat(1600));
        assert_eq!(ndjson_items_guess(&odd), 1601 / MIN_ITEM_BYTES);
        let huge = line.repeat(3 * MAX_BATCH_ITEMS);
        assert_eq!(ndjson_items_guess(&huge), MAX_BATCH_ITEMS);
    }

    proptest::proptest! {
        #[test]
        fn lines_are_those_of_str_lines(text in "[a\r\n ]{0,16}") {
            let ours: Vec<&str> = lines(&text).collect();
            let std: Vec<&str> = text.lines().collect();
            proptest::prop_assert_eq!(ours, std);
        }
    }
}
