//! Consumers as the broker reports them: [`ConsumerKind`] and [`ConsumerInfo`], the JSON of
//! `GET /v1/consumers` and `GET /v1/consumers/{name}` (also the answer of a seek and of a
//! settings change).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ack::AckMode;

/// What kind of consumer a subscription belongs to.
///
/// ```
/// use bus_proto::ConsumerKind;
/// let k: ConsumerKind = serde_json::from_str(r#""durable""#).unwrap();
/// assert_eq!(k.as_str(), "durable");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ConsumerKind {
    /// Named with `durable`; its state is persisted and survives disconnects and restarts.
    Durable,
    /// Named with `group`; in memory, dropped when its last member leaves.
    Group,
    /// An unnamed manual-ack subscription (a group of one, named `~s-<n>`).
    Subscription,
    /// A kind this crate does not know (a later protocol version); never sent by this
    /// broker.
    #[serde(other)]
    Other,
}

impl ConsumerKind {
    /// `durable`, `group`, `subscription` (or `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerKind::Durable => "durable",
            ConsumerKind::Group => "group",
            ConsumerKind::Subscription => "subscription",
            ConsumerKind::Other => "other",
        }
    }
}

/// A consumer as `GET /v1/consumers` lists it. Durations are written as whole milliseconds
/// (`"30000ms"`) and read with any unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// Its name (`~s-<n>` for an unnamed manual-ack subscription).
    pub name: String,
    /// Durable, group or subscription.
    pub kind: ConsumerKind,
    /// The filter pattern.
    pub pattern: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The ack mode.
    pub ack: AckMode,
    /// The redelivery wait.
    #[serde(with = "crate::durations::millis")]
    pub ack_wait: Duration,
    /// Deliveries before dead-lettering; `None`: unlimited (written as `null`).
    #[serde(default)]
    pub max_deliver: Option<u32>,
    /// Successive redelivery waits (empty: `ack_wait` every time).
    #[serde(default, with = "crate::durations::millis_list")]
    pub backoff: Vec<Duration>,
    /// Bound on unacknowledged deliveries.
    pub max_in_flight: u64,
    /// Next sequence to read, per namespace read so far.
    #[serde(default)]
    pub positions: BTreeMap<String, u64>,
    /// Delivered and not acknowledged.
    #[serde(default)]
    pub pending: u64,
    /// Redeliveries made since the broker started.
    #[serde(default)]
    pub redelivered: u64,
    /// Live member streams.
    #[serde(default)]
    pub members: u64,
    /// Events in the namespaces the filter touches not yet read (an upper bound: events not
    /// matching the filter count too).
    #[serde(default)]
    pub lag: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_reencodes_a_listed_consumer() {
        let json = r#"{"name":"orders","kind":"durable","pattern":"order.>","created":"2026-11-23T13:22:11.123456789Z",
            "ack":"manual","ack_wait":"30000ms","max_deliver":5,"backoff":["1000ms","1m"],"max_in_flight":1000,
            "positions":{"order":43},"pending":2,"redelivered":1,"members":1,"lag":0,"future":true}"#;
        let c: ConsumerInfo = serde_json::from_str(json).unwrap();
        assert_eq!(c.kind, ConsumerKind::Durable);
        assert_eq!(c.ack, AckMode::Manual);
        assert_eq!(c.ack_wait, Duration::from_secs(30));
        assert_eq!(c.backoff, [Duration::from_secs(1), Duration::from_secs(60)]);
        assert_eq!(c.max_deliver, Some(5));
        assert_eq!(c.positions["order"], 43);
        assert_eq!((c.pending, c.redelivered, c.members), (2, 1, 1));
        let again: ConsumerInfo =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        // Unlimited deliveries may come as null or be absent; unknown kinds are tolerated.
        let c: ConsumerInfo = serde_json::from_str(
            r#"{"name":"~s-4","kind":"mirror","pattern":">","created":"x","ack":"manual","ack_wait":"5s","max_deliver":null,"max_in_flight":1}"#,
        )
        .unwrap();
        assert_eq!((c.kind, c.max_deliver), (ConsumerKind::Other, None));
        assert!(c.backoff.is_empty());
    }

    #[test]
    fn writes_the_broker_listing_form() {
        let c = ConsumerInfo {
            name: "mailer".into(),
            kind: ConsumerKind::Group,
            pattern: "user.>".into(),
            created: "2026-11-23T13:22:11.000000000Z".into(),
            ack: AckMode::Manual,
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
            backoff: vec![Duration::from_secs(1), Duration::from_millis(2500)],
            max_in_flight: 1000,
            positions: BTreeMap::from([("user".to_owned(), 7)]),
            pending: 1,
            redelivered: 0,
            members: 2,
            lag: 3,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"name":"mailer","kind":"group","pattern":"user.>","created":"2026-11-23T13:22:11.000000000Z","ack":"manual","ack_wait":"30000ms","max_deliver":null,"backoff":["1000ms","2500ms"],"max_in_flight":1000,"positions":{"user":7},"pending":1,"redelivered":0,"members":2,"lag":3}"#
        );
    }
}
