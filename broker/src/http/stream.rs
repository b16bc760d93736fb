//! `GET /v1/stream`: a subscription as Server-Sent Events, and `GET /v1/events`: a pulled page.
//!
//! The stream is produced as the client consumes it (the log is the buffer), watches the
//! broker's shutdown token (sending `event: shutdown` and ending), and sends keep-alive
//! comments. Every option is a query parameter, since `EventSource` cannot set headers;
//! `Last-Event-ID` (sent by `EventSource` when it reconnects) wins over `from`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::authenticate::CredentialWatch;
use super::query::{Params, Query};
use super::sse;
use crate::auth::{Caller, ConsumerRight};
use crate::broker::{Broker, MAX_PULL_LIMIT, MAX_PULL_WAIT};
use crate::delivery::{AckMode, Attach, ConsumerSettings, Out};
use crate::error::{Error, ErrorCode};
use crate::subject::Pattern;
use crate::subscription::Delivery;
use crate::units::parse_duration;

/// A required parameter.
pub(crate) fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, Error> {
    v.as_deref().ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidParameter,
            format!("missing query parameter {name:?}"),
        )
    })
}

fn duration_param(
    v: Option<&str>,
    name: &str,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, Error> {
    let Some(v) = v else {
        return Ok(default);
    };
    let d = parse_duration(v)
        .map_err(|e| Error::new(ErrorCode::InvalidParameter, format!("{name}: {e}")))?;
    if d < min || d > max {
        return Err(Error::new(
            ErrorCode::InvalidParameter,
            format!("{name} must be between {min:?} and {max:?}, got {v:?}"),
        ));
    }
    Ok(d)
}

/// Query parameters of `GET /v1/stream`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Subscription pattern (required).
    pattern: Option<String>,
    /// Start position.
    from: Option<String>,
    /// Keep-alive interval.
    heartbeat: Option<String>,
    /// What EventSource polyfills send instead of the `Last-Event-ID` header.
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
    /// Durable consumer name.
    durable: Option<String>,
    /// Queue group name.
    group: Option<String>,
    /// Ack mode.
    ack: Option<String>,
    /// Consumer setting.
    ack_wait: Option<String>,
    /// Consumer setting.
    max_deliver: Option<String>,
    /// Consumer setting.
    backoff: Option<String>,
    /// Consumer setting.
    max_in_flight: Option<String>,
    /// This member's cap on deliveries.
    limit: Option<String>,
}

impl Params for StreamParams {
    const ACCEPTED: &'static [&'static str] = &[
        "pattern",
        "from",
        "heartbeat",
        "lastEventId",
        "durable",
        "group",
        "ack",
        "ack_wait",
        "max_deliver",
        "backoff",
        "max_in_flight",
        "limit",
    ];
}

impl StreamParams {
    /// Whether the subscription attaches to a consumer: manual acks, a durable, or a group.
    fn is_consumer_stream(&self) -> bool {
        self.durable.is_some()
            || self.group.is_some()
            || self.ack.as_deref().is_some_and(|a| a != "none")
    }

    /// The consumer settings given, by name (absent ones are not listed).
    fn settings_given(&self) -> Vec<(&'static str, &str)> {
        [
            ("ack", &self.ack),
            ("ack_wait", &self.ack_wait),
            ("max_deliver", &self.max_deliver),
            ("backoff", &self.backoff),
            ("max_in_flight", &self.max_in_flight),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// `GET /v1/stream`.
pub async fn stream(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let pattern = required(&q.pattern, "pattern")?;
    let parsed = Pattern::parse(pattern).map_err(Error::pattern)?;
    caller.check_subscribe(&parsed, "subscribe to")?;
    let heartbeat = duration_param(
        q.heartbeat.as_deref(),
        "heartbeat",
        broker.config().heartbeat,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )?;
    if q.is_consumer_stream() {
        // A consumer resumes from its own state; a new one starts at `from`. Last-Event-ID,
        // which EventSource sends on every reconnect, is ignored (delivery.md).
        let from = q.from.as_deref().unwrap_or("newest");
        return consumer_stream(broker, caller, &q, parsed, from, heartbeat).await;
    }
    for (name, given) in [
        ("ack_wait", &q.ack_wait),
        ("max_deliver", &q.max_deliver),
        ("backoff", &q.backoff),
        ("max_in_flight", &q.max_in_flight),
        ("limit", &q.limit),
    ] {
        if given.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidParameter,
                format!(
                    "{name} applies only to a consumer stream (durable=, group= or ack=manual), not to a plain stream"
                ),
            ));
        }
    }
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            Error::new(
                ErrorCode::InvalidStart,
                "Last-Event-ID is not visible ASCII",
            )
        })?),
    }
    .filter(|s| !s.is_empty());
    let from = last_id
        .or(q.last_event_id.as_deref())
        .or(q.from.as_deref())
        .unwrap_or("newest")
        .to_owned();
    let mut sub = broker.subscribe(pattern, &from).await?;
    let token = broker.shutdown_token();
    let mut watch = CredentialWatch::new(broker.config().auth.clone(), caller);
    // The cursor of where the stream starts: resuming from it before any event arrived
    // misses nothing (a `newest` start would skip what was published in between).
    let hello = serde_json::json!({
        "subscription": sub_id(&sub), "pattern": sub.pattern().as_str(), "from": from,
        "cursor": sub.cursor(),
    });
    let events = async_stream::stream! {
        yield sse::frame("subscribed", &hello.to_string(), true);
        loop {
            let next = tokio::select! {
                biased;
                _ = token.cancelled() => None,
                e = watch.ended(|c| c.check_subscribe(&parsed, "subscribe to")) => Some(Err(e)),
                d = sub.next() => Some(d),
            };
            match next {
                None | Some(Ok(None)) => {
                    yield sse::frame("shutdown", "{}", false);
                    break;
                }
                Some(Ok(Some(Delivery::Event { event, cursor }))) => {
                    yield sse::event(&cursor, &event, None);
                }
                Some(Ok(Some(Delivery::Gap { namespace, missed_from, resume_at, reason }))) => {
                    yield gap_event(bus_proto::Gap { namespace, missed_from, resume_at, reason });
                }
                Some(Err(e)) => {
                    yield error_event(&e);
                    break;
                }
            }
        }
    };
    Ok(sse::response(events, heartbeat))
}

/// `event: gap`: events `missed_from..resume_at` of `namespace` are gone (deleted by
/// retention, or lost to damage), as its reason says.
fn gap_event(gap: bus_proto::Gap) -> Vec<Bytes> {
    sse::frame("gap", &gap_json(&gap).to_string(), false)
}

/// The wire [`bus_proto::Gap`] as a JSON value (keys in the order serde_json's map keeps).
fn gap_json(gap: &bus_proto::Gap) -> serde_json::Value {
    // Strings and numbers: serialising cannot fail.
    serde_json::to_value(gap).unwrap_or_default()
}

/// `event: error`: the stream ends because of `e`.
fn error_event(e: &Error) -> Vec<Bytes> {
    let err = bus_proto::error::ErrorDetail::new(e.code, e.message.as_str());
    // Two strings: serialising cannot fail.
    let data = serde_json::to_string(&err).unwrap_or_default();
    sse::frame("error", &data, false)
}

/// A stream of a consumer's deliveries to one member. The settings given apply when the
/// consumer is created; attaching to an existing consumer with an `ack`, `ack_wait`,
/// `max_deliver` or `backoff` that differs from its own is `409 consumer_conflict`, and
/// changes nothing. `max_in_flight` on an existing consumer caps this member only.
async fn consumer_stream(
    broker: Broker,
    caller: Caller,
    q: &StreamParams,
    pattern: Pattern,
    from: &str,
    heartbeat: Duration,
) -> Result<Response, Error> {
    let name = q.durable.as_deref().or(q.group.as_deref());
    if let Some(name) = name {
        caller.check_consumer(name, ConsumerRight::Attach)?;
    }
    let given = q.settings_given();
    let map: HashMap<String, String> = given
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let settings = ConsumerSettings::from_query(&map)?;
    let member_max = q
        .max_in_flight
        .as_deref()
        .map(crate::delivery::settings::parse_max_in_flight)
        .transpose()?;
    let limit = match q.limit.as_deref() {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|n| *n >= 1 && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidParameter,
                        format!("limit must be a whole number from 1, got {v:?}"),
                    )
                })?,
        ),
    };
    // `limit` alone caps this member's deliveries in flight too, without touching the
    // consumer's settings: the member cap is min(max_in_flight, limit).
    let limit_cap = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let member_max = match (member_max, limit_cap) {
        (Some(m), Some(l)) => Some(m.min(l)),
        (m, l) => m.or(l),
    };
    let attach = Attach {
        durable: q.durable.clone(),
        group: q.group.clone(),
        settings: settings.clone(),
        member_max,
        owner: Some(caller.name().clone()),
    };
    let mut member = broker.attach(pattern.as_str(), from, attach).await?;
    if let Some(l) = limit {
        member.set_limit(l);
    }
    let have = member.consumer().settings();
    if let Some(name) = differing(&given, &settings, &have) {
        let consumer = member.consumer().name().to_owned();
        drop(member);
        return Err(Error::new(
            ErrorCode::ConsumerConflict,
            format!(
                "consumer {consumer:?} exists with another {name}; its settings are kept: attach without {name}, or with the consumer's own value (GET /v1/consumers/{consumer})"
            ),
        ));
    }
    let consumer = member.consumer().clone();
    let info = consumer.local_info();
    let manual = info.ack == AckMode::Manual;
    let hello = serde_json::json!({
        "subscription": member.subscription_id(),
        "consumer": info.name,
        "kind": info.kind,
        "pattern": info.pattern,
        "from": from,
        "ack": info.ack,
        "ack_wait": format!("{}ms", info.ack_wait.as_millis()),
        "max_deliver": info.max_deliver,
        "backoff": info.backoff.iter().map(|d| format!("{}ms", d.as_millis())).collect::<Vec<_>>(),
        "max_in_flight": info.max_in_flight,
    });
    let token = broker.shutdown_token();
    let mut watch = CredentialWatch::new(broker.config().auth.clone(), caller);
    let consumer_name = name.map(str::to_owned);
    let still_allowed = move |c: &Caller| {
        c.check_subscribe(&pattern, "subscribe to")?;
        match &consumer_name {
            Some(n) => c.check_consumer(n, ConsumerRight::Attach),
            None => Ok(()),
        }
    };
    let events = async_stream::stream! {
        yield sse::frame("subscribed", &hello.to_string(), true);
        loop {
            // Shutdown first: closing the broker also retires its consumers. A member that
            // took its `limit` waits here (holding what it has, so that it can still ack it)
            // until the client disconnects or the broker stops.
            let next = tokio::select! {
                biased;
                _ = token.cancelled() => None,
                e = watch.ended(&still_allowed) => Some(Err(e)),
                d = member.next() => Some(d),
            };
            match next {
                None | Some(Ok(None)) => {
                    yield sse::frame("shutdown", "{}", false);
                    break;
                }
                Some(Ok(Some(Out::Event { event, count }))) => {
                    yield sse::event(&event.id, &event, manual.then_some(count));
                }
                Some(Ok(Some(Out::Gap { namespace, missed_from, resume_at, reason }))) => {
                    yield gap_event(bus_proto::Gap { namespace, missed_from, resume_at, reason });
                }
                Some(Err(e)) => {
                    yield error_event(&e);
                    break;
                }
            }
        }
    };
    Ok(sse::response(events, heartbeat))
}

/// The first setting given on attach whose value differs from the consumer's own.
fn differing(
    given: &[(&'static str, &str)],
    asked: &ConsumerSettings,
    have: &ConsumerSettings,
) -> Option<&'static str> {
    given.iter().map(|(k, _)| *k).find(|k| match *k {
        "ack" => asked.ack != have.ack,
        "ack_wait" => asked.ack_wait != have.ack_wait,
        "max_deliver" => asked.max_deliver != have.max_deliver,
        "backoff" => asked.backoff != have.backoff,
        // On an existing consumer, max_in_flight caps this member only (never a conflict).
        _ => false,
    })
}

fn sub_id(sub: &crate::subscription::Subscription) -> String {
    sub.id().unwrap_or_default()
}

/// Query parameters of `GET /v1/events`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullParams {
    /// Subscription pattern (required).
    pattern: Option<String>,
    /// Start position.
    from: Option<String>,
    /// Most events returned.
    limit: Option<String>,
    /// Longest wait for the first event.
    wait: Option<String>,
}

impl Params for PullParams {
    const ACCEPTED: &'static [&'static str] = &["pattern", "from", "limit", "wait"];
}

/// `GET /v1/events`: a page of events and the cursor to continue from.
pub async fn pull(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PullParams>,
) -> Result<Response, Error> {
    let pattern = required(&q.pattern, "pattern")?;
    let parsed = Pattern::parse(pattern).map_err(Error::pattern)?;
    caller.check_subscribe(&parsed, "read")?;
    let from = q.from.as_deref().unwrap_or("newest");
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PULL_LIMIT).contains(n) && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidParameter,
                    format!("limit must be 1 to {MAX_PULL_LIMIT}, got {v:?}"),
                )
            })?,
    };
    let wait = duration_param(
        q.wait.as_deref(),
        "wait",
        Duration::ZERO,
        Duration::ZERO,
        MAX_PULL_WAIT,
    )?;
    let page = broker.pull(pattern, from, limit, wait).await?;
    let mut body: Vec<u8> = Vec::with_capacity(256 + page.events.len() * 256);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.json());
    }
    body.extend_from_slice(b"],\"cursor\":");
    body.extend_from_slice(
        serde_json::Value::String(page.cursor)
            .to_string()
            .as_bytes(),
    );
    let gaps: Vec<_> = page.gaps.iter().map(gap_json).collect();
    body.extend_from_slice(b",\"gaps\":");
    body.extend_from_slice(serde_json::Value::Array(gaps).to_string().as_bytes());
    body.push(b'}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}
