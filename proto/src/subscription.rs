//! Subscriptions on the wire: [`SubscriptionInfo`], one entry of `GET /v1/subscriptions`, and
//! [`Subscribed`], the data of a stream's first message (`event: subscribed`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ack::AckMode;
use crate::consumer::ConsumerKind;

/// A live subscription as `GET /v1/subscriptions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// Subscription id (`s-<n>`).
    pub id: String,
    /// Its pattern.
    pub pattern: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Events delivered so far.
    pub delivered: u64,
    /// `stream` (ack mode none, no consumer) or `consumer` (a member of a consumer).
    pub kind: String,
    /// `live` when new events are routed to it in every namespace it touches, `catching_up`
    /// while it reads a log in at least one (behind the tail, or after its queue overflowed).
    /// For a member, its consumer's reader. Absent from brokers older than the field.
    #[serde(default)]
    pub state: String,
}

/// The broker's confirmation of a subscription, the data of `event: subscribed`. The
/// consumer fields are set only for a member of a consumer; they are the consumer's
/// settings, which were fixed when it was created. `cursor` is set only for a plain stream.
///
/// ```
/// let s: bus_proto::Subscribed = serde_json::from_str(
///     r#"{"subscription":"s-1","pattern":"user.>","from":"newest","cursor":"user-3-00000000"}"#,
/// ).unwrap();
/// assert_eq!((s.consumer, s.cursor.as_deref()), (None, Some("user-3-00000000")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscribed {
    /// The subscription's id on the broker (as listed by `GET /v1/subscriptions`).
    pub subscription: String,
    /// The pattern.
    pub pattern: String,
    /// The start position as the broker understood it.
    #[serde(default)]
    pub from: String,
    /// The consumer's name: the durable or group name, or `~s-<n>` for an unnamed
    /// manual-ack subscription.
    #[serde(default)]
    pub consumer: Option<String>,
    /// The consumer's kind.
    #[serde(default)]
    pub kind: Option<ConsumerKind>,
    /// The consumer's ack mode.
    #[serde(default)]
    pub ack: Option<AckMode>,
    /// The consumer's ack wait.
    #[serde(default, with = "crate::durations::millis_opt")]
    pub ack_wait: Option<Duration>,
    /// The consumer's deliveries before dead-lettering; `None`: unlimited.
    #[serde(default)]
    pub max_deliver: Option<u32>,
    /// The consumer's backoff list.
    #[serde(default, with = "crate::durations::millis_list")]
    pub backoff: Vec<Duration>,
    /// The consumer's bound on unacknowledged deliveries.
    #[serde(default)]
    pub max_in_flight: Option<u64>,
    /// Where a plain stream starts, as a cursor: what a reconnection resumes from when no
    /// event arrived yet.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_consumer_members_confirmation() {
        let s: Subscribed = serde_json::from_str(
            r#"{"subscription":"s-9","consumer":"mailer","kind":"durable","pattern":"user.>","from":"oldest",
                "ack":"manual","ack_wait":"30000ms","max_deliver":null,"backoff":["1000ms"],"max_in_flight":1000}"#,
        )
        .unwrap();
        assert_eq!(s.consumer.as_deref(), Some("mailer"));
        assert_eq!(s.kind, Some(ConsumerKind::Durable));
        assert_eq!(s.ack, Some(AckMode::Manual));
        assert_eq!(s.ack_wait, Some(Duration::from_secs(30)));
        assert_eq!(s.backoff, [Duration::from_secs(1)]);
        assert_eq!((s.max_deliver, s.max_in_flight), (None, Some(1000)));
        assert_eq!(s.cursor, None);
    }

    #[test]
    fn round_trips_a_listed_subscription() {
        let json = r#"{"id":"s-1","pattern":"user.>","started":"2026-11-23T13:22:11.000000000Z","delivered":3,"kind":"stream","state":"live"}"#;
        let s: SubscriptionInfo = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), json);
        // From a broker older than `state`.
        let old = r#"{"id":"s-1","pattern":"user.>","started":"2026-11-23T13:22:11.000000000Z","delivered":3,"kind":"stream"}"#;
        let s: SubscriptionInfo = serde_json::from_str(old).unwrap();
        assert_eq!(s.state, "");
    }
}
