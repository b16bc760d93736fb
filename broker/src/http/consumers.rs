//! `/v1/consumers`: list, inspect, seek and delete consumers, and acknowledge their
//! deliveries, one event per request or many in one batch.

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bus_proto::AckStatus;
use futures::StreamExt;

use super::query::{NoParams, Params, Query};
use super::stream::required;
use crate::auth::{Caller, ConsumerRight};
use crate::broker::Broker;
use crate::delivery::consumers::unknown;
use crate::delivery::settings::parse_delay;
use crate::delivery::{AckItem, Consumer, Outcome, Verb};
use crate::error::{Error, ErrorCode};
use crate::event::push_json_str;
use crate::subscription::StartSpec;

/// Most acknowledgements in one batch.
pub const MAX_ACK_BATCH: usize = 10_000;
/// Body limit of an acknowledgement batch.
pub const MAX_ACK_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Consumers whose figures a listing asks the storage engine for at once.
const INFO_CONCURRENCY: usize = 32;

/// The consumer `name`, if `caller` holds `right` on it: by name for named consumers
/// (checked before the lookup, so a refusal says nothing of whether it exists), by
/// ownership for a single subscription's (`~…`).
fn consumer(
    broker: &Broker,
    caller: &Caller,
    name: &str,
    right: ConsumerRight,
) -> Result<std::sync::Arc<Consumer>, Error> {
    if !name.starts_with('~') {
        caller.check_consumer(name, right)?;
    }
    let c = broker.consumers().get(name).ok_or_else(|| unknown(name))?;
    if !owns(caller, &c) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            format!(
                "principal {:?} may not {} consumer {name:?}: it belongs to another principal's subscription",
                &**caller.name(),
                right.as_str()
            ),
        ));
    }
    Ok(c)
}

/// Whether `caller` may act on `c` as far as ownership goes (always, for named consumers).
fn owns(caller: &Caller, c: &Consumer) -> bool {
    !c.name().starts_with('~')
        || caller.is_open()
        || caller.is_admin()
        || c.owner() == Some(&**caller.name())
}

/// Whether `caller` may see `c` in listings.
fn sees(caller: &Caller, c: &Consumer) -> bool {
    if c.name().starts_with('~') {
        owns(caller, c)
    } else {
        caller.sees_consumer(c.name())
    }
}

/// A consumer-management action, for the audit log (target `bus::audit`).
fn audit(caller: &Caller, action: &str, consumer: &str, outcome: &Result<Response, Error>) {
    let outcome = match outcome {
        Ok(_) => "done",
        Err(e) => e.code.as_str(),
    };
    tracing::info!(target: "bus::audit", principal = %caller.name(), action, consumer, outcome, "consumer {action}");
}

/// Query parameters of `POST /v1/consumers/{name}/seek`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeekParams {
    /// Where to move to (required).
    to: Option<String>,
}

impl Params for SeekParams {
    const ACCEPTED: &'static [&'static str] = &["to"];
}

/// Query parameters of `POST /v1/consumers/{name}/events/{id}/{op}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckParams {
    /// A nack's delay.
    delay: Option<String>,
}

impl Params for AckParams {
    const ACCEPTED: &'static [&'static str] = &["delay"];
}

/// `GET /v1/consumers`.
pub async fn list(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    _: Query<NoParams>,
) -> Response {
    let seen: Vec<_> = broker
        .consumers()
        .all()
        .into_iter()
        .filter(|c| sees(&caller, c))
        .collect();
    // Their lag counts events others may have stored.
    broker
        .refresh_stats(|n| seen.iter().any(|c| c.pattern().namespace().includes(n)))
        .await;
    // A server-backed consumer's figures take one request to the server: a bounded number
    // at once.
    let all: Vec<_> = futures::stream::iter(seen)
        .map(|c| async move { c.info().await })
        .buffered(INFO_CONCURRENCY)
        .collect()
        .await;
    axum::Json(all).into_response()
}

/// `GET /v1/consumers/{name}`.
pub async fn get(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    _: Query<NoParams>,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    if !name.starts_with('~') && !caller.sees_consumer(&name) {
        caller.check_consumer(&name, ConsumerRight::Manage)?;
    }
    let c = broker
        .consumers()
        .get(&name)
        .ok_or_else(|| unknown(&name))?;
    if !owns(&caller, &c) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            format!(
                "principal {:?} may not see consumer {name:?}: it belongs to another principal's subscription",
                &**caller.name()
            ),
        ));
    }
    broker
        .refresh_stats(|n| c.pattern().namespace().includes(n))
        .await;
    Ok(axum::Json(c.info().await).into_response())
}

/// Largest body of `PATCH /v1/consumers/{name}`.
pub const MAX_SETTINGS_BODY_BYTES: usize = 64 * 1024;
/// The settings `PATCH /v1/consumers/{name}` may change.
const PATCHABLE: &[&str] = &["ack_wait", "max_deliver", "backoff", "max_in_flight"];

/// `PATCH /v1/consumers/{name}` with a JSON object of the settings to change (all optional):
/// `ack_wait` (a duration), `max_deliver` (a whole number, `null` for unlimited), `backoff`
/// (an array of durations, `[]` for none), `max_in_flight`. The ack mode and the filter
/// cannot change. Answers the consumer's listing once the change is durable.
pub async fn update(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    q: Query<NoParams>,
    body: Body,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    let r = update_settings(&broker, &caller, &name, q, body).await;
    audit(&caller, "update", &name, &r);
    r
}

async fn update_settings(
    broker: &Broker,
    caller: &Caller,
    name: &str,
    _: Query<NoParams>,
    body: Body,
) -> Result<Response, Error> {
    let c = consumer(broker, caller, name, ConsumerRight::Manage)?;
    let bytes = super::body::read(body, MAX_SETTINGS_BODY_BYTES, "consumer settings").await?;
    let invalid = |m: String| Error::new(ErrorCode::InvalidParameter, m);
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| {
            invalid(format!(
                "consumer settings are a JSON object with any of {}: {e}",
                PATCHABLE.join(", ")
            ))
        })?;
    let mut q = std::collections::HashMap::new();
    let (mut unlimited, mut no_backoff) = (false, false);
    for (k, v) in &fields {
        let text = match (k.as_str(), v) {
            ("ack" | "pattern", _) => {
                return Err(invalid(format!(
                    "{k} cannot change; delete the consumer and create it anew"
                )));
            }
            (k, _) if !PATCHABLE.contains(&k) => {
                return Err(Error::new(
                    ErrorCode::UnknownParameter,
                    format!("unknown setting {k:?}; accepted: {}", PATCHABLE.join(", ")),
                ));
            }
            ("max_deliver", serde_json::Value::Null) => {
                unlimited = true;
                continue;
            }
            ("backoff", serde_json::Value::Array(steps)) if steps.is_empty() => {
                no_backoff = true;
                continue;
            }
            ("backoff", serde_json::Value::Array(steps)) => steps
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("backoff must be an array of durations".into()))?
                .join(","),
            ("ack_wait", serde_json::Value::String(s)) => s.clone(),
            ("max_deliver" | "max_in_flight", serde_json::Value::Number(n)) => n.to_string(),
            (k, v) => return Err(invalid(format!("{k}: unexpected value {v}"))),
        };
        q.insert(k.clone(), text);
    }
    let mut settings = c.settings().with_query(&q)?;
    if unlimited {
        settings.max_deliver = None;
    }
    if no_backoff {
        settings.backoff.clear();
    }
    Ok(axum::Json(c.update_settings(settings).await?).into_response())
}

/// `DELETE /v1/consumers/{name}`.
pub async fn delete(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    _: Query<NoParams>,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    let r = async {
        consumer(&broker, &caller, &name, ConsumerRight::Manage)?;
        broker.consumers().delete(&name).await?;
        Ok(axum::Json(serde_json::json!({"deleted": name})).into_response())
    }
    .await;
    audit(&caller, "delete", &name, &r);
    r
}

/// `POST /v1/consumers/{name}/seek?to=<start>`.
pub async fn seek(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    Query(q): Query<SeekParams>,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    let r = async {
        let start = StartSpec::parse(required(&q.to, "to")?)?;
        let c = consumer(&broker, &caller, &name, ConsumerRight::Manage)?;
        c.seek(&start).await?;
        Ok(axum::Json(c.info().await).into_response())
    }
    .await;
    audit(&caller, "seek", &name, &r);
    r
}

fn status(o: Outcome, id: &str, consumer: &str) -> Result<&'static str, Error> {
    Ok(match o {
        Outcome::Acked => AckStatus::Acked,
        Outcome::AlreadyResolved => AckStatus::AlreadyAcked,
        Outcome::Nacked => AckStatus::Nacked,
        Outcome::InProgress => AckStatus::InProgress,
        Outcome::Terminated => AckStatus::Terminated,
        Outcome::NotDelivered => {
            return Err(Error::new(
                ErrorCode::NotDelivered,
                format!("event {id:?} was never delivered to consumer {consumer:?}"),
            ));
        }
        Outcome::NotHeld => {
            return Err(Error::new(
                ErrorCode::NotHeld,
                format!(
                    "the ack wait of event {id:?} ran out before this request: it awaits redelivery"
                ),
            ));
        }
    }
    .as_str())
}

fn verb(op: &str, delay: Option<&str>) -> Result<Verb, Error> {
    let delay = delay.map(parse_delay).transpose()?;
    match (op, delay) {
        ("ack", None) => Ok(Verb::Ack),
        ("nack", d) => Ok(Verb::Nack(d)),
        ("progress" | "in_progress", None) => Ok(Verb::InProgress),
        ("term", None) => Ok(Verb::Term),
        ("ack" | "progress" | "in_progress" | "term", Some(_)) => Err(Error::new(
            ErrorCode::InvalidParameter,
            format!("only nack takes a delay, not {op}"),
        )),
        _ => Err(Error::new(
            ErrorCode::InvalidParameter,
            format!("unknown operation {op:?}: use ack, nack, progress or term"),
        )),
    }
}

/// `POST /v1/consumers/{name}/events/{id}/{op}` with `op` one of `ack`, `nack` (optional
/// `?delay=`), `progress`, `term`.
pub async fn acknowledge_one(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    Query(q): Query<AckParams>,
) -> Result<Response, Error> {
    let Path((name, id, op)) = path.map_err(super::error::bad_path)?;
    let verb = verb(&op, q.delay.as_deref())?;
    let c = consumer(&broker, &caller, &name, ConsumerRight::Ack)?;
    let item = AckItem {
        id: id.clone(),
        verb,
    };
    let outcome = c
        .acknowledge(std::slice::from_ref(&item))
        .await
        .pop()
        .ok_or_else(|| Error::internal("acknowledging", "no outcome"))??;
    let status = status(outcome, &id, &name)?;
    Ok(axum::Json(serde_json::json!({"id": id, "status": status})).into_response())
}

/// One entry of an ack batch: an event id (an ack), or `{"id", "op", "delay"}`.
enum BatchEntry {
    Id(String),
    Op {
        id: String,
        op: Option<String>,
        delay: Option<String>,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OpEntry {
    id: String,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    delay: Option<String>,
}

/// Deserialised by hand rather than as an untagged enum, which would buffer every entry
/// before trying each form: this runs for every ack a busy consumer sends.
impl<'de> serde::Deserialize<'de> for BatchEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BatchEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event id or an object {\"id\", \"op\", \"delay\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BatchEntry, E> {
                Ok(BatchEntry::Id(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<BatchEntry, E> {
                Ok(BatchEntry::Id(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BatchEntry, A::Error> {
                let e = <OpEntry as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(BatchEntry::Op {
                    id: e.id,
                    op: e.op,
                    delay: e.delay,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `POST /v1/consumers/{name}/acks`: a JSON array of event ids (acks) or of
/// `{"id", "op", "delay"}` objects; answers each in order.
pub async fn acknowledge_batch(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    _: Query<NoParams>,
    body: Body,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    let c = consumer(&broker, &caller, &name, ConsumerRight::Ack)?;
    let bytes = super::body::read(body, MAX_ACK_BODY_BYTES, "an ack batch").await?;
    let entries: Vec<BatchEntry> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorCode::InvalidBatch,
            format!("an ack batch is a JSON array of event ids or {{\"id\", \"op\", \"delay\"}} objects: {e}"),
        )
    })?;
    if entries.is_empty() || entries.len() > MAX_ACK_BATCH {
        return Err(Error::new(
            ErrorCode::InvalidBatch,
            format!(
                "an ack batch holds 1 to {MAX_ACK_BATCH} entries, got {}",
                entries.len()
            ),
        ));
    }
    // Entries that do not parse are answered in place; the rest go in one call.
    let mut parsed: Vec<(String, Result<Verb, Error>)> = Vec::with_capacity(entries.len());
    for e in entries {
        parsed.push(match e {
            BatchEntry::Id(id) => (id, Ok(Verb::Ack)),
            BatchEntry::Op { id, op, delay } => {
                let v = verb(op.as_deref().unwrap_or("ack"), delay.as_deref());
                (id, v)
            }
        });
    }
    let items: Vec<AckItem> = parsed
        .iter()
        .filter_map(|(id, v)| {
            v.as_ref().ok().map(|v| AckItem {
                id: id.clone(),
                verb: *v,
            })
        })
        .collect();
    let mut outcomes = c.acknowledge(&items).await.into_iter();
    // Written by hand: one answer per entry, for every ack a busy consumer sends.
    let mut body = String::with_capacity(32 + parsed.len() * 64);
    body.push_str("{\"results\":[");
    for (id, v) in parsed {
        let r = match v {
            Err(e) => Err(e),
            Ok(_) => outcomes
                .next()
                .unwrap_or_else(|| Err(Error::internal("acknowledging", "missing outcome")))
                .and_then(|o| status(o, &id, &name)),
        };
        if !body.ends_with('[') {
            body.push(',');
        }
        body.push_str("{\"id\":");
        push_json_str(&mut body, &id);
        match r {
            Ok(s) => {
                body.push_str(",\"status\":\"");
                body.push_str(s);
                body.push_str("\"}");
            }
            Err(e) => {
                body.push_str(",\"error\":{\"code\":\"");
                body.push_str(e.code.as_str());
                body.push_str("\",\"message\":");
                push_json_str(&mut body, &e.message);
                body.push_str("}}");
            }
        }
    }
    body.push_str("]}");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}
