//! [`JsConsumers`] and [`JsConsumer`]: [`ServerConsumers`] on JetStream durable pull
//! consumers, one per bus durable consumer filtering one namespace, on that namespace's
//! stream and under the same name.
//!
//! The consumer is explicit-ack, replays at full speed, and has bus's ack wait, backoff and
//! max-in-flight (as `max_ack_pending`). Everything goes through the JetStream API subjects
//! with JSON bodies, as the server documents them:
//!
//! - create, update, info and delete: `$JS.API.CONSUMER.{CREATE,INFO,DELETE}.<stream>.<name>`;
//! - [`ServerConsumer::fetch`]: one pull request (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>`)
//!   with `no_wait` and `expires`, which the server answers once: it waits until `expires`
//!   for a first message, sends what else is there up to the batch, then a terminating status,
//!   so that no message is ever sent to a request nobody reads any more;
//! - settling: the verbs (`+ACK`, `-NAK {"delay":ns}`, `+WPI`, `+TERM`) sent to the
//!   delivery's ack subject. An ack and a term are sent as requests (the server answers once
//!   it recorded them). Without this node's own handle (an ack for a delivery another node
//!   or an earlier run made), the ack subject is rebuilt from the sequence: the server goes
//!   by the stream sequence in it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::codec;
use super::log::{JetStreamLog, remote};
use crate::storage::{
    ServerConsumer, ServerConsumerConfig, ServerConsumerState, ServerConsumers, ServerMessage,
    ServerStart, Settle, StorageError,
};

/// Margin past a pull request's `expires` after which this node stops waiting for the
/// server's terminating status.
const FETCH_MARGIN: Duration = Duration::from_secs(5);
/// Pause after the server ended a pull request early with no message (another request of
/// the same consumer is waiting, from a second bus node), so that the caller does not spin.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);
/// JetStream's error code for a consumer that does not exist.
const CONSUMER_NOT_FOUND: u64 = 10014;

/// The namespaces' logs, shared with the engine.
pub type Logs = Arc<RwLock<std::collections::BTreeMap<String, Arc<JetStreamLog>>>>;

/// The engine's server-side consumers.
pub struct JsConsumers {
    client: async_nats::Client,
    logs: Logs,
    replicas: usize,
    timeout: Duration,
}

impl JsConsumers {
    /// Consumers on the streams of `logs`, reached through `client`.
    pub fn new(client: async_nats::Client, logs: Logs, replicas: usize, timeout: Duration) -> Self {
        JsConsumers {
            client,
            logs,
            replicas,
            timeout,
        }
    }

    fn log(&self, namespace: &str) -> Result<Arc<JetStreamLog>, StorageError> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
            .ok_or_else(|| StorageError::Remote(format!("namespace {namespace:?} is not open")))
    }
}

/// One JSON request to the JetStream API; its answer, or the server's error.
async fn api(
    client: &async_nats::Client,
    timeout: Duration,
    subject: String,
    body: Value,
) -> Result<Value, ApiError> {
    let reply = tokio::time::timeout(
        timeout,
        client.request(subject.clone(), body.to_string().into()),
    )
    .await
    .map_err(|_| ApiError::Other(remote(&subject, "no answer in time")))?
    .map_err(|e| ApiError::Other(remote(&subject, e)))?;
    let v: Value =
        serde_json::from_slice(&reply.payload).map_err(|e| ApiError::Other(remote(&subject, e)))?;
    if let Some(err) = v.get("error") {
        let code = err["err_code"].as_u64().unwrap_or(0);
        let text = err["description"]
            .as_str()
            .unwrap_or("unknown error")
            .to_owned();
        return Err(if code == CONSUMER_NOT_FOUND {
            ApiError::NotFound
        } else {
            ApiError::Other(remote(&subject, text))
        });
    }
    Ok(v)
}

enum ApiError {
    NotFound,
    Other(StorageError),
}

impl From<ApiError> for StorageError {
    fn from(e: ApiError) -> StorageError {
        match e {
            ApiError::NotFound => {
                StorageError::Remote("the JetStream consumer does not exist".into())
            }
            ApiError::Other(e) => e,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The JetStream consumer configuration for `c`.
fn config_json(c: &ServerConsumerConfig, replicas: usize) -> Value {
    let mut v = json!({
        "durable_name": c.name,
        "name": c.name,
        "ack_policy": "explicit",
        "replay_policy": "instant",
        "filter_subject": c.filter,
        "ack_wait": nanos(c.ack_wait),
        "max_deliver": c.max_deliver.map_or(-1, i64::from),
        "max_ack_pending": c.max_ack_pending,
        "num_replicas": replicas,
        "metadata": {"bus.consumer": c.name},
    });
    if !c.backoff.is_empty() {
        v["backoff"] = json!(c.backoff.iter().map(|d| nanos(*d)).collect::<Vec<_>>());
    }
    match c.start {
        ServerStart::Oldest => v["deliver_policy"] = json!("all"),
        ServerStart::Newest => v["deliver_policy"] = json!("new"),
        ServerStart::Sequence(s) => {
            v["deliver_policy"] = json!("by_start_sequence");
            v["opt_start_seq"] = json!(s.max(1));
        }
        ServerStart::Time(t) => {
            v["deliver_policy"] = json!("by_start_time");
            v["opt_start_time"] = json!(super::reader::rfc3339(t));
        }
    }
    v
}

impl ServerConsumers for JsConsumers {
    fn open(
        &self,
        config: ServerConsumerConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn ServerConsumer>, StorageError>> {
        Box::pin(async move {
            let log = self.log(&config.namespace)?;
            let stream = log.stream().to_owned();
            let info = format!("$JS.API.CONSUMER.INFO.{stream}.{}", config.name);
            let create = match api(&self.client, self.timeout, info, json!({})).await {
                Ok(v) => {
                    let c = &v["config"];
                    let fits = c["filter_subject"].as_str() == Some(config.filter.as_str())
                        && c["ack_policy"].as_str() == Some("explicit")
                        && c.get("deliver_subject").is_none_or(Value::is_null);
                    if !fits {
                        // Not this consumer's (another filter, a push consumer, or one a
                        // deleted namespace's consumer left): made anew.
                        tracing::warn!(stream = %stream, consumer = %config.name, "replacing a JetStream consumer whose configuration is not this durable's");
                        let delete = format!("$JS.API.CONSUMER.DELETE.{stream}.{}", config.name);
                        match api(&self.client, self.timeout, delete, json!({})).await {
                            Ok(_) | Err(ApiError::NotFound) => {}
                            Err(ApiError::Other(e)) => return Err(e),
                        }
                    }
                    !fits
                }
                Err(ApiError::NotFound) => true,
                Err(ApiError::Other(e)) => return Err(e),
            };
            if create {
                let body = json!({
                    "stream_name": stream,
                    "config": config_json(&config, self.replicas),
                    "action": "create",
                });
                let create = format!("$JS.API.CONSUMER.CREATE.{stream}.{}", config.name);
                api(&self.client, self.timeout, create, body).await?;
            }
            Ok(Arc::new(JsConsumer {
                client: self.client.clone(),
                log,
                stream,
                name: config.name.clone(),
                replicas: self.replicas,
                timeout: self.timeout,
                consumer_seq: AtomicU64::new(0),
            }) as Arc<dyn ServerConsumer>)
        })
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            // By the stream's name, so that it goes also where this node never opened the
            // namespace.
            let stream = format!("{}{namespace}", super::options::STREAM_PREFIX);
            let subject = format!("$JS.API.CONSUMER.DELETE.{stream}.{name}");
            match api(&self.client, self.timeout, subject, json!({})).await {
                Ok(_) | Err(ApiError::NotFound) => Ok(()),
                Err(ApiError::Other(e)) => Err(e),
            }
        })
    }
}

/// One JetStream durable pull consumer.
pub struct JsConsumer {
    client: async_nats::Client,
    log: Arc<JetStreamLog>,
    stream: String,
    name: String,
    replicas: usize,
    timeout: Duration,
    /// The highest consumer sequence seen in a delivery (a rebuilt ack subject needs one the
    /// server accepts for a nak).
    consumer_seq: AtomicU64,
}

/// What an ack subject says of its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AckInfo {
    delivered: u32,
    stream_seq: u64,
    consumer_seq: u64,
    time_ns: u64,
}

/// Reads `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` and its
/// newer form with a domain and account hash before the stream (and a token after).
fn ack_info(subject: &str) -> Option<AckInfo> {
    let t: Vec<&str> = subject.split('.').collect();
    if t.len() < 9 || t[0] != "$JS" || t[1] != "ACK" {
        return None;
    }
    let at = if t.len() == 9 { 4 } else { 6 };
    let n = |i: usize| t.get(at + i).and_then(|s| s.parse::<u64>().ok());
    Some(AckInfo {
        delivered: n(0)?.min(u32::MAX as u64) as u32,
        stream_seq: n(1)?,
        consumer_seq: n(2)?,
        time_ns: n(3)?,
    })
}

impl JsConsumer {
    fn rebuilt_token(&self, sequence: u64) -> String {
        let cseq = self.consumer_seq.load(Ordering::Relaxed).max(1);
        format!(
            "$JS.ACK.{}.{}.1.{sequence}.{cseq}.0.0",
            self.stream, self.name
        )
    }

    /// The delivery `msg` is; an error (with the ack subject, when it has one) for one that
    /// is no event.
    #[allow(clippy::result_large_err)]
    fn message(
        &self,
        msg: async_nats::Message,
    ) -> Result<Option<ServerMessage>, (StorageError, Option<String>)> {
        let Some(reply) = msg.reply.as_ref().map(|r| r.to_string()) else {
            return Ok(None);
        };
        let Some(info) = ack_info(&reply) else {
            let e = StorageError::Remote(format!(
                "a delivery of {} with ack subject {reply:?}",
                self.name
            ));
            return Err((e, None));
        };
        self.consumer_seq
            .fetch_max(info.consumer_seq, Ordering::Relaxed);
        let empty = async_nats::HeaderMap::new();
        let headers = msg.headers.as_ref().unwrap_or(&empty);
        let event = match codec::decode_delivered(
            headers,
            info.stream_seq,
            msg.subject.to_string(),
            Some(info.time_ns),
            msg.payload.clone(),
            |s| self.log.id(s),
        ) {
            Ok(e) => e,
            Err(e) => {
                let e = StorageError::Remote(format!("stream {}: {e}", self.stream));
                return Err((e, Some(reply)));
            }
        };
        Ok(Some(ServerMessage {
            event,
            delivered: info.delivered,
            token: reply,
        }))
    }
}

impl ServerConsumer for JsConsumer {
    fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<ServerMessage>, StorageError>> {
        Box::pin(async move {
            let inbox = self.client.new_inbox();
            let mut sub = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| remote("subscribing for a pull request", e))?;
            let wait = wait.max(Duration::from_millis(1));
            let request = json!({"batch": max.max(1), "expires": nanos(wait), "no_wait": true});
            self.client
                .publish_with_reply(
                    format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", self.stream, self.name),
                    inbox,
                    request.to_string().into(),
                )
                .await
                .map_err(|e| remote("sending a pull request", e))?;
            let started = tokio::time::Instant::now();
            let deadline = started + wait + FETCH_MARGIN;
            let mut out = Vec::new();
            loop {
                let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
                    Ok(Some(m)) => m,
                    // Connection closed: what came is this node's to hand out.
                    Ok(None) if !out.is_empty() => break,
                    Ok(None) => return Err(StorageError::Closed),
                    // The server never ended the request: take what came.
                    Err(_) => break,
                };
                if let Some(status) = msg.status {
                    match status.as_u16() {
                        // Idle heartbeat.
                        100 => continue,
                        // 404 no messages, 408 expired: the request is over.
                        404 | 408 | 409 => {
                            let text = msg.description.unwrap_or_default().to_ascii_lowercase();
                            if text.contains("deleted") {
                                return Err(StorageError::Remote(format!(
                                    "consumer {} was deleted on the server",
                                    self.name
                                )));
                            }
                            // Ended early with nothing (another request of the consumer
                            // waits, or it is at its max ack pending): do not spin.
                            if out.is_empty() && started.elapsed() < wait {
                                tokio::time::sleep(REFUSED_PAUSE).await;
                            }
                            break;
                        }
                        code => {
                            return Err(StorageError::Remote(format!(
                                "pull request on {} > {} answered {code} {}",
                                self.stream,
                                self.name,
                                msg.description.unwrap_or_default()
                            )));
                        }
                    }
                }
                match self.message(msg) {
                    Ok(Some(m)) => {
                        out.push(m);
                        if out.len() >= max {
                            break;
                        }
                    }
                    Ok(None) => {}
                    // A message that cannot be an event (another NATS client stored it with
                    // a bad `Bus-Time`): it would come back forever. Ended here, logged; the
                    // rest of the batch goes on.
                    Err((e, token)) => {
                        tracing::error!(stream = %self.stream, consumer = %self.name, error = %e, "ending a delivery that is no event");
                        if let Some(t) = token {
                            let _ = self.client.publish(t, "+TERM".into()).await;
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    fn settle<'a>(
        &'a self,
        sequence: u64,
        token: Option<&'a str>,
        how: Settle,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let subject = token.map_or_else(|| self.rebuilt_token(sequence), str::to_owned);
            let body: String = match how {
                Settle::Ack => "+ACK".into(),
                Settle::Term => "+TERM".into(),
                Settle::Progress => "+WPI".into(),
                Settle::Nak(None) => "-NAK".into(),
                Settle::Nak(Some(d)) => format!("-NAK {}", json!({"delay": nanos(d)})),
            };
            match how {
                Settle::Ack | Settle::Term => {
                    tokio::time::timeout(self.timeout, self.client.request(subject, body.into()))
                        .await
                        .map_err(|_| remote("acknowledging", "no answer from the server in time"))?
                        .map_err(|e| remote("acknowledging", e))?;
                }
                Settle::Nak(_) | Settle::Progress => {
                    self.client
                        .publish(subject, body.into())
                        .await
                        .map_err(|e| remote("acknowledging", e))?;
                }
            }
            Ok(())
        })
    }

    fn newest(&self) -> u64 {
        *self.log.tail().borrow()
    }

    fn wait_past(&self, seen: u64, at_most: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut tail = self.log.tail();
            let grew = tokio::time::timeout(at_most, async {
                tail.wait_for(|n| *n > seen).await.is_ok()
            })
            .await;
            if grew.is_err() {
                // Another writer's events: the figures (one STREAM.INFO a second, shared)
                // bump the newest sequence.
                self.log.refresh_cached().await;
            }
        })
    }

    fn state(&self) -> BoxFuture<'_, Result<ServerConsumerState, StorageError>> {
        Box::pin(async move {
            let subject = format!("$JS.API.CONSUMER.INFO.{}.{}", self.stream, self.name);
            let v = api(&self.client, self.timeout, subject, json!({})).await?;
            let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            self.consumer_seq
                .fetch_max(n("/delivered/consumer_seq"), Ordering::Relaxed);
            Ok(ServerConsumerState {
                delivered: n("/delivered/stream_seq"),
                ack_floor: n("/ack_floor/stream_seq"),
                ack_pending: n("/num_ack_pending"),
                redelivered: n("/num_redelivered"),
                unread: n("/num_pending"),
            })
        })
    }

    fn update(&self, config: ServerConsumerConfig) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            // The server refuses to change where a consumer starts: send the one it has.
            let info = format!("$JS.API.CONSUMER.INFO.{}.{}", self.stream, self.name);
            let current = api(&self.client, self.timeout, info, json!({})).await?;
            let mut cfg = config_json(&config, self.replicas);
            for key in ["deliver_policy", "opt_start_seq", "opt_start_time"] {
                match current["config"].get(key) {
                    Some(v) => cfg[key] = v.clone(),
                    None => {
                        if let Some(o) = cfg.as_object_mut() {
                            o.remove(key);
                        }
                    }
                }
            }
            let body = json!({"stream_name": self.stream, "config": cfg, "action": "update"});
            let subject = format!("$JS.API.CONSUMER.CREATE.{}.{}", self.stream, self.name);
            api(&self.client, self.timeout, subject, body).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms_of_ack_subjects() {
        assert_eq!(
            ack_info("$JS.ACK.BUS_user.c.2.17.40.1700000000000000000.3"),
            Some(AckInfo {
                delivered: 2,
                stream_seq: 17,
                consumer_seq: 40,
                time_ns: 1_700_000_000_000_000_000
            })
        );
        assert_eq!(
            ack_info("$JS.ACK._.ACCHASH.BUS_user.c.1.5.6.99.0.tok")
                .map(|i| (i.delivered, i.stream_seq)),
            Some((1, 5))
        );
        assert_eq!(ack_info("$JS.ACK.BUS_user.c.x.5.6.99.0"), None);
        assert_eq!(ack_info("_INBOX.abc"), None);
    }
}
