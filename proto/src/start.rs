//! [`Start`]: where reading starts, the `from` query parameter of a stream or pull (and
//! `to` of a consumer seek).
//!
//! The grammar, as the broker reads it ([`Start::parse_param`]): `oldest`, `newest` (also an
//! empty value), an RFC 3339 time (any offset, any number of fraction digits), or an event
//! id or [`Cursor`]. Surrounding whitespace is ignored. A client reads
//! the same words more leniently ([`FromStr`]): anything else is taken as a cursor, which
//! the broker checks.

use std::fmt;
use std::str::FromStr;

use crate::cursor::Cursor;
use crate::units::{format_rfc3339, parse_rfc3339};

/// Where reading starts.
///
/// ```
/// use bus_proto::Start;
/// let from: Start = "2026-11-23T13:00:00Z".parse().unwrap();
/// assert!(matches!(from, Start::Time(_)));
/// let after: Start = "user-42-9f3c2a1b".into();
/// assert_eq!(after, Start::Cursor("user-42-9f3c2a1b".into()));
/// assert_eq!(Start::Oldest.as_param(), "oldest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Start {
    /// The oldest retained event of every namespace the pattern touches.
    Oldest,
    /// Only events published after the subscription started. The default.
    #[default]
    Newest,
    /// The first event at or after this time (nanoseconds since the epoch), in every
    /// namespace.
    Time(u64),
    /// After the event with this id, or at the position this cursor records.
    Cursor(String),
}

impl Start {
    /// The query parameter value (a time as RFC 3339 UTC with nanoseconds).
    ///
    /// ```
    /// use bus_proto::Start;
    /// assert_eq!(Start::Time(0).as_param(), "1970-01-01T00:00:00.000000000Z");
    /// ```
    pub fn as_param(&self) -> String {
        match self {
            Start::Oldest => "oldest".to_owned(),
            Start::Newest => "newest".to_owned(),
            Start::Time(ns) => format_rfc3339(*ns),
            Start::Cursor(c) => c.clone(),
        }
    }

    /// Parses a `from` value as the broker does: `oldest`, `newest` or empty, an RFC 3339
    /// time, or an event id or cursor that [`Cursor::parse`] accepts.
    ///
    /// ```
    /// use bus_proto::Start;
    /// assert_eq!(Start::parse_param(""), Ok(Start::Newest));
    /// assert!(Start::parse_param("user-1-00000000").is_ok());
    /// assert!(Start::parse_param("yesterday").is_err());
    /// ```
    pub fn parse_param(s: &str) -> Result<Start, InvalidStart> {
        match s.trim() {
            "oldest" => Ok(Start::Oldest),
            "newest" | "" => Ok(Start::Newest),
            t => {
                if let Some(ns) = parse_rfc3339(t) {
                    return Ok(Start::Time(ns));
                }
                match Cursor::parse(t) {
                    Some(_) => Ok(Start::Cursor(t.to_owned())),
                    None => Err(InvalidStart(t.to_owned())),
                }
            }
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_param())
    }
}

/// A `from` value that is none of the accepted forms (the broker answers it
/// `400 invalid_start` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid start {0:?}: expected oldest, newest, an RFC 3339 time, or an event id or cursor")]
pub struct InvalidStart(pub String);

/// `from` was empty.
///
/// ```
/// use bus_proto::{Start, StartParseError};
/// assert_eq!("".parse::<Start>(), Err(StartParseError));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("empty start position: expected oldest, newest, an event id, a cursor or an RFC 3339 time")]
pub struct StartParseError;

impl FromStr for Start {
    type Err = StartParseError;

    /// `oldest`, `newest`, an RFC 3339 time, else an event id or cursor (checked by the
    /// broker).
    fn from_str(s: &str) -> Result<Start, StartParseError> {
        let s = s.trim();
        Ok(match s {
            "" => return Err(StartParseError),
            "oldest" => Start::Oldest,
            "newest" => Start::Newest,
            _ => match parse_rfc3339(s) {
                Some(ns) => Start::Time(ns),
                None => Start::Cursor(s.to_owned()),
            },
        })
    }
}

impl From<&str> for Start {
    /// Like [`FromStr`], with an empty string meaning [`Start::Newest`].
    fn from(s: &str) -> Start {
        s.parse().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_positions() {
        assert_eq!("oldest".parse(), Ok(Start::Oldest));
        assert_eq!("newest".parse(), Ok(Start::Newest));
        let t: Start = "2026-11-23T14:22:11+01:00".parse().unwrap();
        assert_eq!(t.as_param(), "2026-11-23T13:22:11.000000000Z");
        assert_eq!(
            "user-42-9f3c2a1b,rpc-0-00000000".parse(),
            Ok(Start::Cursor("user-42-9f3c2a1b,rpc-0-00000000".into()))
        );
        assert_eq!("".parse::<Start>(), Err(StartParseError));
        assert_eq!(Start::from(""), Start::Newest);
    }

    /// The broker's grammar, a table of every form and of what is outside it.
    #[test]
    fn parses_the_brokers_grammar() {
        for (s, want) in [
            ("oldest", Start::Oldest),
            (" oldest ", Start::Oldest),
            ("newest", Start::Newest),
            ("", Start::Newest),
            ("1970-01-01T00:00:00Z", Start::Time(0)),
            (
                "user-42-0000000a,order-0-000000ff",
                Start::Cursor("user-42-0000000a,order-0-000000ff".into()),
            ),
        ] {
            assert_eq!(Start::parse_param(s), Ok(want), "{s:?}");
        }
        for bad in [
            "Oldest",
            "yesterday",
            "user-1-0000000a,",
            "2026-13-01T00:00:00Z",
        ] {
            let e = Start::parse_param(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid start"), "{bad:?}: {e}");
        }
    }
}
