//! Acknowledgement on the wire: a consumer's ack mode ([`AckMode`], the `ack` query
//! parameter and listing field) and the broker's answer to one acknowledgement
//! ([`AckStatus`], the `status` of `POST /v1/consumers/{name}/events/{id}/{op}` and of each
//! entry of an ack batch). See `proto-docs/http-api.md`, "Consumers and acknowledgements".

use std::str::FromStr;

/// How a consumer's deliveries are acknowledged: `none` or `manual` on the wire.
///
/// ```
/// use bus_proto::AckMode;
/// assert_eq!("manual".parse::<AckMode>(), Ok(AckMode::Manual));
/// assert_eq!(AckMode::default().as_str(), "none");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AckMode {
    /// Every event counts as handled once sent. The default.
    #[default]
    None,
    /// Every delivery is pending until acked; unacknowledged ones are redelivered.
    Manual,
}

impl AckMode {
    /// `none` or `manual`, as the protocol spells it.
    ///
    /// ```
    /// assert_eq!(bus_proto::AckMode::Manual.as_str(), "manual");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::None => "none",
            AckMode::Manual => "manual",
        }
    }
}

/// An `ack` value that is neither `none` nor `manual`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ack must be none or manual, got {0:?}")]
pub struct AckModeParseError(pub String);

impl FromStr for AckMode {
    type Err = AckModeParseError;

    /// `none` or `manual`, exactly (no case folding, no spaces).
    fn from_str(s: &str) -> Result<AckMode, AckModeParseError> {
        match s {
            "none" => Ok(AckMode::None),
            "manual" => Ok(AckMode::Manual),
            other => Err(AckModeParseError(other.to_owned())),
        }
    }
}

/// The broker's answer to one acknowledgement.
///
/// ```
/// use bus_proto::AckStatus;
/// assert_eq!(AckStatus::parse("already_acked"), Some(AckStatus::AlreadyAcked));
/// assert_eq!(AckStatus::InProgress.as_str(), "in_progress");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckStatus {
    /// Acked now.
    Acked,
    /// It had already been acked, terminated or dead-lettered: nothing changed.
    AlreadyAcked,
    /// Nacked: it will be redelivered.
    Nacked,
    /// Its ack wait restarted.
    InProgress,
    /// Terminated: published to the dead-letter subject.
    Terminated,
}

impl AckStatus {
    /// Every status.
    pub const ALL: &'static [AckStatus] = &[
        AckStatus::Acked,
        AckStatus::AlreadyAcked,
        AckStatus::Nacked,
        AckStatus::InProgress,
        AckStatus::Terminated,
    ];

    /// The protocol's spelling: `acked`, `already_acked`, `nacked`, `in_progress`,
    /// `terminated`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Acked => "acked",
            AckStatus::AlreadyAcked => "already_acked",
            AckStatus::Nacked => "nacked",
            AckStatus::InProgress => "in_progress",
            AckStatus::Terminated => "terminated",
        }
    }

    /// The status spelled `s`; `None` for one this crate does not know.
    pub fn parse(s: &str) -> Option<AckStatus> {
        AckStatus::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_modes_parse_exactly() {
        for m in [AckMode::None, AckMode::Manual] {
            assert_eq!(m.as_str().parse(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<AckMode>(&json).unwrap(), m);
        }
        for bad in ["auto", "Manual", " none", ""] {
            assert!(bad.parse::<AckMode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ack_statuses_round_trip() {
        for &s in AckStatus::ALL {
            assert_eq!(AckStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(AckStatus::parse("deleted"), None);
    }
}
