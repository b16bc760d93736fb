//! Durations in JSON as the broker writes them: a string of whole milliseconds (`"30000ms"`),
//! read back with any unit of [`parse_duration`](crate::units::parse_duration) (`"30s"`,
//! `"1m"`). For `#[serde(with = ...)]` on the wire types.

/// One duration: `"30000ms"`.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `"<ms>ms"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    /// Reads a duration string with any unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::units::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A list of durations (`["1000ms","5000ms"]`); `null` or absent reads as empty.
pub mod millis_list {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `["<ms>ms", ...]`.
    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| format!("{}ms", d.as_millis())))
    }

    /// Reads a list of duration strings with any unit, `null` as empty.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
        v.iter()
            .map(|s| crate::units::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// An optional duration: `"30000ms"` or `null`.
pub mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Writes `"<ms>ms"` or `null`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a duration string with any unit, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => crate::units::parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super::millis")]
        one: Duration,
        #[serde(default, with = "super::millis_list")]
        list: Vec<Duration>,
        #[serde(default, with = "super::millis_opt")]
        opt: Option<Duration>,
    }

    #[test]
    fn writes_milliseconds_and_reads_any_unit() {
        let t = T {
            one: Duration::from_secs(30),
            list: vec![Duration::from_millis(1500)],
            opt: None,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"one":"30000ms","list":["1500ms"],"opt":null}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        let t: T = serde_json::from_str(r#"{"one":"1m","list":null,"opt":"2s"}"#).unwrap();
        assert_eq!(t.one, Duration::from_secs(60));
        assert!(t.list.is_empty());
        assert_eq!(t.opt, Some(Duration::from_secs(2)));
        assert!(serde_json::from_str::<T>(r#"{"one":"5"}"#).is_err());
    }
}
