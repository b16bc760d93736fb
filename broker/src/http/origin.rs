//! The `Origin` check, which stops cross-site request forgery: a web page on
//! `https://evil.example` can make a browser POST to a broker on 127.0.0.1, and the browser
//! says so in `Origin`. A request that changes state — publishing, acking, consumer
//! management, request/reply (every method but `GET`, `HEAD` and `OPTIONS`), and a
//! `GET /v1/stream` that attaches to a consumer (`durable`, `group` or `ack`) — is refused
//! `403 forbidden_origin` when its `Origin` is neither the broker's own (the same host and
//! port as the request's `Host`: its `/ui` pages) nor one of `--cors-origin`. Requests
//! without `Origin` (services, curl) and read-only requests pass.
//!
//! The scheme is not compared, only host and port (a default port counts as given), so that
//! a broker behind a TLS-terminating proxy recognises its own pages.

use axum::extract::{Query, Request};
use axum::http::Method;

use crate::connection::ConnInfo;
use crate::error::{Error, ErrorCode};

/// The origins allowed besides the broker's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// `--cors-origin` values, without a trailing slash, lowercase.
    allowed: Vec<String>,
    /// `--cors-origin '*'`.
    any: bool,
}

impl OriginPolicy {
    /// The policy for the `--cors-origin` values.
    pub fn new(cors_origins: &[String]) -> OriginPolicy {
        OriginPolicy {
            allowed: cors_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any: cors_origins.iter().any(|o| o == "*"),
        }
    }

    /// Whether `origin` may change state on a request for `host` over a connection that is
    /// TLS (`tls`) or not.
    pub fn allows(&self, origin: &str, host: Option<&str>, tls: bool) -> bool {
        if self.any {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        let (Some(own), Some(host)) = (origin_authority(&origin), host) else {
            return false;
        };
        own == authority(&host.to_ascii_lowercase(), if tls { 443 } else { 80 })
    }
}

/// `host[:port]` of an `http` or `https` origin, with the scheme's default port left out.
fn origin_authority(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some(authority(rest, default))
}

/// `host[:port]` with `:default` left out.
fn authority(hostport: &str, default: u16) -> String {
    let host = super::host::strip_port(hostport);
    let port = hostport[host.len()..].strip_prefix(':');
    match port.and_then(|p| p.parse::<u16>().ok()) {
        Some(p) if p != default => format!("{host}:{p}"),
        _ => host.to_owned(),
    }
}

/// Whether the request changes state (see the module docs).
fn changes_state(req: &Request) -> bool {
    match *req.method() {
        Method::GET | Method::HEAD => {
            if req.uri().path() != "/v1/stream" {
                return false;
            }
            // Refuse what cannot be read as a query: the handler would refuse it too.
            let Ok(Query(params)) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()) else {
                return true;
            };
            params
                .iter()
                .any(|(k, v)| k == "durable" || k == "group" || (k == "ack" && v != "none"))
        }
        Method::OPTIONS => false,
        _ => true,
    }
}

/// The check: `403 forbidden_origin` for a state-changing request from a foreign page.
pub fn check_origin(policy: &OriginPolicy, req: &Request) -> Result<(), Error> {
    if let Some(origin) = req.headers().get(axum::http::header::ORIGIN)
        && changes_state(req)
    {
        let tls = req.extensions().get::<ConnInfo>().is_some_and(|c| c.tls);
        let host = super::host::request_host(req);
        let ok = origin.to_str().is_ok_and(|o| policy.allows(o, host, tls));
        if !ok {
            let shown: String = String::from_utf8_lossy(origin.as_bytes())
                .chars()
                .take(100)
                .collect();
            return Err(Error::new(
                ErrorCode::ForbiddenOrigin,
                format!(
                    "a page of origin {shown:?} may not change state on this broker; allow it with --cors-origin"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pages_and_listed_origins_pass_others_do_not() {
        let p = OriginPolicy::new(&["https://app.example".into()]);
        let host = Some("localhost:2021");
        assert!(p.allows("http://localhost:2021", host, false));
        assert!(p.allows("https://app.example", host, false));
        assert!(p.allows("https://APP.example", host, false));
        assert!(!p.allows("https://evil.example", host, false));
        assert!(!p.allows("http://localhost:2022", host, false));
        assert!(!p.allows("null", host, false));
        assert!(!p.allows("http://localhost:2021", None, false));
        // Default ports count as given, and behind a TLS proxy the scheme differs.
        assert!(p.allows("https://bus.example.com", Some("bus.example.com"), false));
        assert!(p.allows("http://bus.example.com", Some("bus.example.com:80"), false));
        assert!(p.allows("https://bus.example.com", Some("bus.example.com:443"), true));
        assert!(p.allows("http://[::1]:2021", Some("[::1]:2021"), false));
        assert!(OriginPolicy::new(&["*".into()]).allows("https://evil.example", host, false));
    }

    #[test]
    fn consumer_streams_change_state_plain_ones_do_not() {
        let req = |m: Method, uri: &str| {
            Request::builder()
                .method(m)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(!changes_state(&req(
            Method::GET,
            "/v1/stream?pattern=a.%3E"
        )));
        assert!(!changes_state(&req(
            Method::GET,
            "/v1/stream?pattern=a.%3E&ack=none"
        )));
        assert!(!changes_state(&req(
            Method::GET,
            "/v1/events?pattern=a.%3E"
        )));
        assert!(changes_state(&req(
            Method::GET,
            "/v1/stream?pattern=a&durable=d"
        )));
        assert!(changes_state(&req(
            Method::GET,
            "/v1/stream?pattern=a&%67roup=g"
        )));
        assert!(changes_state(&req(
            Method::GET,
            "/v1/stream?pattern=a&ack=manual"
        )));
        assert!(changes_state(&req(Method::POST, "/v1/events/a.b")));
        assert!(changes_state(&req(Method::DELETE, "/v1/consumers/c")));
        assert!(!changes_state(&req(Method::OPTIONS, "/v1/events/a.b")));
    }
}
