//! [`Query`]: the one query-string extractor. Each endpoint names its parameters in a serde
//! struct (`#[serde(deny_unknown_fields)]`, every field an `Option<String>`) and the list
//! [`Params::ACCEPTED`]; the extractor refuses, with the JSON error body:
//!
//! - a parameter the endpoint does not take: `400 unknown_parameter`, naming it and listing
//!   the accepted ones (a typo such as `form=oldest` is never silently ignored);
//! - a parameter given twice: `400 invalid_parameter` (which one would win is not obvious);
//! - an empty value, or one with leading or trailing white space: `400 invalid_parameter`
//!   (`400 invalid_start` for start positions), since no value of the grammar is either.
//!
//! `_` (a cache-buster) is accepted by every endpoint and ignored. Values are
//! percent-decoded first, and `+` is a space, as in HTML forms.

use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::request::Parts;
use axum::http::uri::InvalidUri;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorCode};

/// An endpoint's query parameters.
pub trait Params: DeserializeOwned {
    /// The parameter names the endpoint takes (`_` aside), in the order the docs list them.
    const ACCEPTED: &'static [&'static str];
}

/// The cache-buster every endpoint accepts and ignores.
const CACHE_BUSTER: &str = "_";

/// Parameters holding a start position: refused as `invalid_start`, like their bad values.
const START_PARAMS: &[&str] = &["from", "to", "lastEventId"];

/// The query string parsed into `T`, or the JSON error.
#[derive(Debug)]
pub struct Query<T>(pub T);

/// The query string's (name, value) pairs, percent-decoded, in order: axum's own query
/// decoder (serde_urlencoded) asked for the raw pairs, on the request's URI as it came.
fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, Error> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("the query string does not decode: {}", e.body_text()),
            )
        })
}

/// A query string parsed into `T`, as [`Query`] parses a request's.
pub fn parse<T: Params>(query: &str) -> Result<T, Error> {
    let uri: Uri = format!("/?{query}").parse().map_err(|e: InvalidUri| {
        Error::new(
            ErrorCode::InvalidParameter,
            format!("the query string does not decode: {e}"),
        )
    })?;
    parse_uri(&uri)
}

/// Checks the names and values of `uri`'s query against `T`'s list, then deserialises them.
fn parse_uri<T: Params>(uri: &Uri) -> Result<T, Error> {
    let mut seen: Vec<(String, String)> = Vec::new();
    if uri.query().is_none_or(str::is_empty) {
        // Most requests carry none: nothing to decode or check.
        return from_pairs(seen);
    }
    for (name, value) in pairs(uri)? {
        if name == CACHE_BUSTER {
            continue;
        }
        if !T::ACCEPTED.contains(&name.as_str()) {
            let accepted = if T::ACCEPTED.is_empty() {
                "this endpoint takes none (besides _)".to_owned()
            } else {
                format!("accepted: {}", T::ACCEPTED.join(", "))
            };
            return Err(Error::new(
                ErrorCode::UnknownParameter,
                format!("unknown query parameter {name:?}; {accepted}"),
            ));
        }
        if seen.iter().any(|(n, _)| *n == name) {
            return Err(Error::new(
                ErrorCode::InvalidParameter,
                format!("query parameter {name:?} is given more than once"),
            ));
        }
        let code = if START_PARAMS.contains(&name.as_str()) {
            ErrorCode::InvalidStart
        } else {
            ErrorCode::InvalidParameter
        };
        if value.is_empty() {
            return Err(Error::new(
                code,
                format!("query parameter {name:?} is empty"),
            ));
        }
        if value.trim() != value {
            return Err(Error::new(
                code,
                format!("query parameter {name:?} has white space around its value {value:?}"),
            ));
        }
        seen.push((name, value));
    }
    from_pairs(seen)
}

/// `T` from checked (name, value) pairs.
fn from_pairs<T: Params>(seen: Vec<(String, String)>) -> Result<T, Error> {
    let map: serde_json::Map<String, serde_json::Value> = seen
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| Error::new(ErrorCode::InvalidParameter, e.to_string()))
}

impl<T: Params, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parse_uri(&parts.uri).map(Query)
    }
}

/// An endpoint that takes no parameters (besides `_`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Params for NoParams {
    const ACCEPTED: &'static [&'static str] = &[];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        pattern: Option<String>,
        from: Option<String>,
    }
    impl Params for P {
        const ACCEPTED: &'static [&'static str] = &["pattern", "from"];
    }

    #[test]
    fn accepts_the_listed_names_and_the_cache_buster() {
        let p: P = parse("pattern=user.%3E&from=oldest&_=123").unwrap();
        assert_eq!(p.pattern.as_deref(), Some("user.>"));
        assert_eq!(p.from.as_deref(), Some("oldest"));
        let p: P = parse("").unwrap();
        assert!(p.pattern.is_none() && p.from.is_none());
    }

    #[test]
    fn refuses_what_is_outside_the_grammar() {
        for (q, code) in [
            ("form=oldest", ErrorCode::UnknownParameter),
            ("pattern=a&pattern=b", ErrorCode::InvalidParameter),
            ("pattern=", ErrorCode::InvalidParameter),
            ("pattern", ErrorCode::InvalidParameter),
            ("from=", ErrorCode::InvalidStart),
            ("from=%20oldest", ErrorCode::InvalidStart),
            ("from=+oldest", ErrorCode::InvalidStart),
            ("from=oldest%20", ErrorCode::InvalidStart),
        ] {
            let e = parse::<P>(q).unwrap_err();
            assert_eq!(e.code, code, "{q}: {}", e.message);
        }
        let e = parse::<P>("form=oldest").unwrap_err();
        assert!(
            e.message.contains("\"form\"") && e.message.contains("pattern, from"),
            "{}",
            e.message
        );
    }
}
