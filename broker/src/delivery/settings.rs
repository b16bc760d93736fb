//! [`ConsumerSettings`]: how a consumer acknowledges and is redelivered to, with the
//! documented defaults and bounds, parsed from a subscription's query parameters; and the
//! grammar of consumer names.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, ErrorCode};
use crate::units::parse_duration;

/// Default time a delivery may stay unacknowledged before it is redelivered.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Shortest ack wait (and backoff step) accepted.
pub const MIN_ACK_WAIT: Duration = Duration::from_millis(1);
/// Longest ack wait, backoff step or nack delay accepted.
pub const MAX_ACK_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Default bound on a consumer's unacknowledged deliveries.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// Largest `max_in_flight` accepted (it bounds the consumer's memory and state size).
pub const MAX_MAX_IN_FLIGHT: usize = 100_000;
/// Most steps in a backoff list.
pub const MAX_BACKOFF_STEPS: usize = 32;
/// Longest consumer name.
pub const MAX_NAME_BYTES: usize = 64;

/// How deliveries are acknowledged (`none` or `manual`): the protocol's, from `bus-proto`.
pub use bus_proto::AckMode;

/// A consumer's delivery settings; fixed when the consumer is created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerSettings {
    /// Ack mode.
    pub ack: AckMode,
    /// Wait before an unacknowledged delivery is redelivered (when `backoff` is empty).
    #[serde(with = "millis")]
    pub ack_wait: Duration,
    /// Deliveries of one event before it goes to the dead-letter subject; `None`: unlimited.
    pub max_deliver: Option<u32>,
    /// `backoff[i]` is the ack wait after delivery `i + 1`, the last value repeating.
    #[serde(with = "millis_list")]
    pub backoff: Vec<Duration>,
    /// Bound on unacknowledged deliveries, across all members.
    pub max_in_flight: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            ack: AckMode::None,
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: None,
            backoff: Vec::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidParameter, message)
}

fn bounded_duration(name: &str, v: &str) -> Result<Duration, Error> {
    let d = parse_duration(v).map_err(|e| invalid(format!("{name}: {e}")))?;
    if !(MIN_ACK_WAIT..=MAX_ACK_WAIT).contains(&d) {
        return Err(invalid(format!(
            "{name} must be between 1ms and 24h, got {v:?}"
        )));
    }
    Ok(d)
}

/// Parses a delay (`nack` with delay): 0 up to [`MAX_ACK_WAIT`].
pub fn parse_delay(v: &str) -> Result<Duration, Error> {
    let d = parse_duration(v).map_err(|e| invalid(format!("delay: {e}")))?;
    if d > MAX_ACK_WAIT {
        return Err(invalid(format!("delay must be at most 24h, got {v:?}")));
    }
    Ok(d)
}

/// Whether `v` is a plain whole number (no sign, no space): what `parse` alone lets by.
fn is_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `max_in_flight`.
pub fn parse_max_in_flight(v: &str) -> Result<usize, Error> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_MAX_IN_FLIGHT).contains(n) && is_digits(v))
        .ok_or_else(|| {
            invalid(format!(
                "max_in_flight must be 1 to {MAX_MAX_IN_FLIGHT}, got {v:?}"
            ))
        })
}

impl ConsumerSettings {
    /// The settings named by query parameters `ack`, `ack_wait`, `max_deliver`, `backoff`
    /// (comma-separated durations) and `max_in_flight`; absent ones take their defaults.
    pub fn from_query(q: &HashMap<String, String>) -> Result<ConsumerSettings, Error> {
        ConsumerSettings::default().with_query(q)
    }

    /// These settings with the ones named in `q` changed (same names and grammar as
    /// [`ConsumerSettings::from_query`]).
    pub fn with_query(mut self, q: &HashMap<String, String>) -> Result<ConsumerSettings, Error> {
        let s = &mut self;
        if let Some(v) = q.get("ack") {
            s.ack = v
                .parse()
                .map_err(|e: bus_proto::ack::AckModeParseError| invalid(e.to_string()))?;
        }
        if let Some(v) = q.get("ack_wait") {
            s.ack_wait = bounded_duration("ack_wait", v)?;
        }
        if let Some(v) = q.get("max_deliver") {
            s.max_deliver = Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1 && is_digits(v))
                    .ok_or_else(|| {
                        invalid(format!(
                            "max_deliver must be a whole number from 1, got {v:?}"
                        ))
                    })?,
            );
        }
        if let Some(v) = q.get("backoff") {
            let steps: Vec<&str> = v.split(',').map(str::trim).collect();
            if steps.len() > MAX_BACKOFF_STEPS {
                return Err(invalid(format!(
                    "backoff has {} steps; at most {MAX_BACKOFF_STEPS} are accepted",
                    steps.len()
                )));
            }
            s.backoff = steps
                .into_iter()
                .map(|step| bounded_duration("backoff", step))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = q.get("max_in_flight") {
            s.max_in_flight = parse_max_in_flight(v)?;
        }
        Ok(self)
    }

    /// The ack wait after delivery number `count` (1 for the first).
    pub fn wait_after(&self, count: u32) -> Duration {
        if self.backoff.is_empty() {
            return self.ack_wait;
        }
        let i = (count.max(1) as usize - 1).min(self.backoff.len() - 1);
        self.backoff[i]
    }

    /// Whether an event delivered `count` times has used up its deliveries.
    pub fn exhausted(&self, count: u32) -> bool {
        self.max_deliver.is_some_and(|m| count >= m)
    }
}

/// Checks a durable or group name: 1 to 64 ASCII letters, digits, `_` and `-`. A group
/// name may also hold `.`, `*` and `>`, so that a pattern can name the group of its
/// responders (`bus reply rpc.>`): groups live in memory only, while durable names are kept
/// in the broker's state.
pub fn check_name(kind: &str, name: &str) -> Result<(), Error> {
    let group = kind == "group";
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || b == b'-'
                || (group && matches!(b, b'.' | b'*' | b'>'))
        });
    if ok {
        Ok(())
    } else if group {
        Err(invalid(format!(
            "invalid group name {name:?}: use 1 to {MAX_NAME_BYTES} ASCII letters, digits, '_', '-', '.', '*' and '>'"
        )))
    } else {
        Err(invalid(format!(
            "invalid {kind} name {name:?}: use 1 to {MAX_NAME_BYTES} ASCII letters, digits, '_' and '-'"
        )))
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

mod millis_list {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| d.as_millis() as u64))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let ms: Vec<u64> = serde::Deserialize::deserialize(d)?;
        Ok(ms.into_iter().map(Duration::from_millis).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_parsing() {
        let s = ConsumerSettings::from_query(&q(&[])).unwrap();
        assert_eq!(s, ConsumerSettings::default());
        let s = ConsumerSettings::from_query(&q(&[
            ("ack", "manual"),
            ("ack_wait", "2s"),
            ("max_deliver", "3"),
            ("backoff", "1s, 5s,30s"),
            ("max_in_flight", "10"),
        ]))
        .unwrap();
        assert_eq!(s.ack, AckMode::Manual);
        assert_eq!(s.max_deliver, Some(3));
        assert_eq!(s.max_in_flight, 10);
        assert_eq!(s.wait_after(1), Duration::from_secs(1));
        assert_eq!(s.wait_after(2), Duration::from_secs(5));
        assert_eq!(s.wait_after(9), Duration::from_secs(30));
        assert!(s.exhausted(3) && !s.exhausted(2));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (k, v) in [
            ("ack", "auto"),
            ("ack_wait", "0s"),
            ("ack_wait", "2d"),
            ("max_deliver", "0"),
            ("backoff", "1s,,2s"),
            ("max_in_flight", "0"),
            ("max_in_flight", "+5"),
            ("max_deliver", "+5"),
            ("ack_wait", "1 s"),
            ("max_in_flight", "100001"),
        ] {
            let e = ConsumerSettings::from_query(&q(&[(k, v)])).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParameter, "{k}={v}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("durable", "orders-worker_1").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b", &"x".repeat(65)] {
            assert!(check_name("durable", bad).is_err(), "{bad:?}");
        }
        for ok in ["rpc.>", "rpc.*.get", "workers"] {
            assert!(check_name("group", ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a b", "a/b", "a%b", &"x".repeat(65)] {
            assert!(check_name("group", bad).is_err(), "{bad:?}");
        }
    }
}
