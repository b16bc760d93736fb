//! Assertions and small shapes of the HTTP API that several suites check: receipts and
//! times, event payloads, Prometheus samples, consumer deliveries.

use serde_json::Value;

use crate::server::TestServer;
use crate::sse::{SseMessage, SseReader};

/// The payload field of each event, as text (panics when one is not a string).
pub fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["payload"]
                .as_str()
                .unwrap_or_else(|| panic!("payload is not a string in {e}"))
                .to_owned()
        })
        .collect()
}

/// Parses the JSON data of each SSE message.
pub fn jsons(messages: &[SseMessage]) -> Vec<Value> {
    messages.iter().map(SseMessage::json).collect()
}

/// Asserts `s` is an RFC 3339 UTC time with nanoseconds: `2026-11-23T13:22:11.123456789Z`.
#[track_caller]
pub fn assert_time(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 30
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            29 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "{s:?} is not RFC 3339 UTC with nanoseconds");
}

/// Asserts `v` is a publish receipt for `subject` and returns its sequence.
#[track_caller]
pub fn assert_receipt(v: &Value, subject: &str) -> u64 {
    assert_eq!(v["subject"], subject, "receipt {v}");
    let ns = subject.split('.').next().expect("namespace");
    assert_eq!(v["namespace"], ns, "receipt {v}");
    assert!(
        v["id"].as_str().is_some_and(|s| !s.is_empty()),
        "receipt id {v}"
    );
    assert_time(v["time"].as_str().expect("receipt time"));
    v["sequence"].as_u64().expect("receipt sequence")
}

/// The value of the Prometheus sample whose name-and-labels part is exactly `series`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// Consumer deliveries, for the delivery and consumer tests.

/// `(payload, delivery_count)` of a consumer delivery; also checks that its SSE id is the
/// event id.
pub fn delivery(m: &SseMessage) -> (String, u64) {
    let e = m.json();
    assert_eq!(
        m.id.as_deref(),
        e["id"].as_str(),
        "a consumer delivery's SSE id is the event id: {m:?}"
    );
    (
        e["payload"]
            .as_str()
            .unwrap_or_else(|| panic!("text payload in {e}"))
            .to_owned(),
        e["delivery_count"]
            .as_u64()
            .unwrap_or_else(|| panic!("delivery_count in {e}")),
    )
}

/// The next delivery as `(payload, delivery_count)`.
pub async fn next(st: &mut SseReader) -> (String, u64) {
    delivery(&st.expect_event().await)
}

/// The next `n` deliveries as `(payload, delivery_count)`.
pub async fn next_n(st: &mut SseReader, n: usize) -> Vec<(String, u64)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(st).await);
    }
    out
}

/// `(payload, count)`, the shape [`next`] returns, for expectations.
pub fn d(payload: &str, count: u64) -> (String, u64) {
    (payload.to_owned(), count)
}

/// Publishes `payload` on `subject` and returns the event id.
pub async fn put(s: &TestServer, subject: &str, payload: &str) -> String {
    s.publish(subject, payload).await["id"]
        .as_str()
        .expect("receipt id")
        .to_owned()
}

/// The consumer a `subscribed` message names.
pub fn name_of(hello: &Value) -> String {
    hello["consumer"]
        .as_str()
        .expect("consumer name")
        .to_owned()
}
