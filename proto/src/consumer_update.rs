//! [`ConsumerUpdate`]: the body of `PATCH /v1/consumers/{name}`, the settings of a consumer
//! that change. Only the fields given are sent; the broker refuses any other field, and the
//! ack mode and filter cannot change.
//!
//! Durations are written as whole milliseconds, rounded up so that a positive duration
//! never becomes 0 (`"1500ms"`); `max_deliver` is `null` for unlimited and `backoff` `[]` for
//! none.

use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// What a `PATCH` of a consumer changes. Everything left `None` stays as it is.
///
/// ```
/// use std::time::Duration;
/// use bus_proto::ConsumerUpdate;
/// let update = ConsumerUpdate {
///     ack_wait: Some(Duration::from_secs(30)),
///     max_deliver: Some(None),
///     ..ConsumerUpdate::default()
/// };
/// assert_eq!(
///     serde_json::to_string(&update).unwrap(),
///     r#"{"ack_wait":"30000ms","max_deliver":null}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerUpdate {
    /// A new redelivery wait.
    pub ack_wait: Option<Duration>,
    /// A new bound on deliveries: `Some(None)` for unlimited.
    pub max_deliver: Option<Option<u32>>,
    /// New successive redelivery waits: `Some(vec![])` for none (`ack_wait` every time).
    pub backoff: Option<Vec<Duration>>,
    /// A new bound on unacknowledged deliveries.
    pub max_in_flight: Option<u64>,
}

impl ConsumerUpdate {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self == &ConsumerUpdate::default()
    }
}

/// Whole milliseconds, rounded up: `"1500ms"`.
fn millis_up(d: Duration) -> String {
    format!("{}ms", d.as_nanos().div_ceil(1_000_000))
}

impl Serialize for ConsumerUpdate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(w) = self.ack_wait {
            m.serialize_entry("ack_wait", &millis_up(w))?;
        }
        if let Some(n) = self.max_deliver {
            m.serialize_entry("max_deliver", &n)?;
        }
        if let Some(b) = &self.backoff {
            let steps: Vec<String> = b.iter().map(|d| millis_up(*d)).collect();
            m.serialize_entry("backoff", &steps)?;
        }
        if let Some(n) = self.max_in_flight {
            m.serialize_entry("max_in_flight", &n)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_given_are_written() {
        assert_eq!(
            serde_json::to_string(&ConsumerUpdate::default()).unwrap(),
            "{}"
        );
        assert!(ConsumerUpdate::default().is_empty());
        let all = ConsumerUpdate {
            ack_wait: Some(Duration::from_micros(1500)),
            max_deliver: Some(Some(5)),
            backoff: Some(vec![Duration::from_secs(1), Duration::from_nanos(1)]),
            max_in_flight: Some(200),
        };
        assert!(!all.is_empty());
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"ack_wait":"2ms","max_deliver":5,"backoff":["1000ms","1ms"],"max_in_flight":200}"#
        );
        let none = ConsumerUpdate {
            max_deliver: Some(None),
            backoff: Some(Vec::new()),
            ..ConsumerUpdate::default()
        };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"max_deliver":null,"backoff":[]}"#
        );
    }
}
