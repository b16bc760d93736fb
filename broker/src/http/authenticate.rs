//! Authentication on the HTTP side: the middleware that turns what a request presents into
//! its [`Caller`], the `401`s, and the routes `POST`/`DELETE /v1/session` and
//! `GET /v1/whoami`.
//!
//! A request presents, in this order of precedence: `Authorization: Bearer <token or JWT>`;
//! the `access_token=<JWT>` query parameter (for `EventSource`, which cannot set headers;
//! taken out of the URI before anything else sees it, so it reaches no handler, log line or
//! metric label); the session cookie [`COOKIE_NAME`]. Without `--auth` every request is
//! [`Caller::open`]. `/healthz` and the console's static files (`/ui`) need no credential.
//!
//! Refusals are `401 unauthorized` with `WWW-Authenticate: Bearer error="invalid_token",
//! error_description="…"` saying why (RFC 6750), or `429 too_many_auth_failures` with
//! `Retry-After`; both counted by reason in `/metrics`, as are the handlers' `403 forbidden`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::auth::auth_error::FORBIDDEN_REASON;
use crate::auth::sessions::COOKIE_NAME;
use crate::auth::{Auth, AuthError, Caller, Presented};
use crate::connection::ConnInfo;
use crate::error::{Error, ErrorCode};
use crate::units::format_rfc3339;

/// The client address a trusted proxy named in `X-Forwarded-For` (put in the request's
/// extensions by `forwarded`).
#[derive(Debug, Clone, Copy)]
pub struct ForwardedClient(pub IpAddr);

/// The query parameter that may carry a JWT.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// The response to a failed authentication.
pub fn refusal(e: &AuthError) -> Response {
    let mut r = e.to_error().into_response();
    if let Ok(v) = HeaderValue::from_str(&e.www_authenticate()) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    if let AuthError::RateLimited(wait) = e {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
    }
    r
}

/// Takes `access_token` out of the URI's query, returning its value.
fn take_access_token(uri: &Uri) -> Option<(String, Uri)> {
    let query = uri.query().filter(|q| q.contains(ACCESS_TOKEN_PARAM))?;
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((ACCESS_TOKEN_PARAM, v)) => token = Some(v.to_owned()),
            _ if pair == ACCESS_TOKEN_PARAM => token = Some(String::new()),
            _ => kept.push(pair),
        }
    }
    let token = token?;
    let path = uri.path();
    let rebuilt = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = rebuilt.parse().ok();
    let uri = Uri::from_parts(parts).ok()?;
    // A JWT is base64url and dots: nothing in it is percent-encoded.
    Some((token, uri))
}

/// The value of the session cookie, if sent.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

fn client_ip(req: &Request) -> IpAddr {
    if let Some(ForwardedClient(ip)) = req.extensions().get::<ForwardedClient>() {
        return *ip;
    }
    req.extensions()
        .get::<ConnInfo>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.client.ip())
}

/// Puts the request's [`Caller`] in its extensions, or says why not (answered with
/// [`refusal`]). Without `--auth` every caller is [`Caller::open`]; `/healthz` and the
/// console's files need no credential.
pub fn authenticate(auth: Option<&Auth>, req: &mut Request) -> Result<(), AuthError> {
    let Some(auth) = auth else {
        req.extensions_mut().insert(Caller::open());
        return Ok(());
    };
    if req.uri().path() == "/healthz" || super::console::is_console_path(req.uri().path()) {
        return Ok(());
    }
    let query_token = match take_access_token(req.uri()) {
        Some((token, uri)) => {
            *req.uri_mut() = uri;
            Some(token)
        }
        None => None,
    };
    let bearer = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().unwrap_or("");
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim().to_owned())
                }
                _ => {
                    let e = AuthError::Malformed(
                        "the Authorization header must be `Bearer <token>`".into(),
                    );
                    auth.count(e.reason());
                    return Err(e);
                }
            }
        }
    };
    let cookie = session_cookie(req.headers()).map(str::to_owned);
    let presented = match (&bearer, &query_token, &cookie) {
        (Some(t), _, _) | (None, Some(t), _) => Presented::Bearer(t),
        (None, None, Some(c)) => Presented::Session(c),
        (None, None, None) => Presented::Nothing,
    };
    let caller = auth.authenticate(presented, client_ip(req))?;
    req.extensions_mut().insert(caller);
    Ok(())
}

/// Counts a handler's `403 forbidden` among the refusals of `/metrics`.
pub fn count_refusal(auth: &Auth, response: &Response) {
    if response.extensions().get::<ErrorCode>() == Some(&ErrorCode::Forbidden) {
        auth.count(FORBIDDEN_REASON);
    }
}

fn rfc3339(t: SystemTime) -> String {
    let ns = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .min(u64::MAX as u128) as u64;
    format_rfc3339(ns)
}

/// `GET /v1/whoami`: the principal, how it authenticated, and its grants.
pub async fn whoami(
    State(broker): State<crate::broker::Broker>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let body = bus_proto::Whoami {
        principal: caller.name().to_string(),
        credential: caller.credential().kind().to_owned(),
        auth: broker.config().auth.is_some(),
        expires_at: caller.expires().map(rfc3339),
        admin: caller.is_admin(),
        grants: caller
            .grants()
            .iter()
            .map(|g| serde_json::to_value(&g.spec).unwrap_or_default())
            .collect(),
    };
    axum::Json(body).into_response()
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("bus_session=; Max-Age=0"))
}

fn is_tls(req_info: Option<&ConnInfo>) -> bool {
    req_info.is_some_and(|c| c.tls)
}

/// `POST /v1/session`: exchanges the bearer token or JWT of this request for a session
/// cookie (`HttpOnly`, `SameSite=Lax`, `Secure` under TLS) that `EventSource` sends.
pub async fn open_session(
    State(broker): State<crate::broker::Broker>,
    Extension(caller): Extension<Caller>,
    info: Option<Extension<ConnInfo>>,
) -> Result<Response, Error> {
    let Some(auth) = broker.config().auth.clone() else {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "this broker runs without --auth: there is no session to open, every client may do everything",
        ));
    };
    match caller.credential() {
        crate::auth::caller::Credential::Token(_) | crate::auth::caller::Credential::Jwt { .. } => {
        }
        _ => {
            return Err(Error::new(
                ErrorCode::Unauthorized,
                "a session is opened with a bearer token or JWT in the Authorization header",
            ));
        }
    }
    let (value, session) = auth
        .open_session(&caller)
        .map_err(|e| Error::internal("opening a session", e))?;
    let expires = session.expires().unwrap_or(SystemTime::now());
    let max_age = expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .as_secs();
    tracing::info!(target: "bus::audit", principal = %caller.name(), action = "session.open", "session opened");
    let body = serde_json::json!({
        "principal": &**caller.name(),
        "cookie": COOKIE_NAME,
        "expires_at": rfc3339(expires),
    });
    let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&value, max_age, is_tls(info.as_deref())),
    );
    Ok(r)
}

/// `DELETE /v1/session`: closes the session of the cookie sent, and clears the cookie.
pub async fn close_session(
    State(broker): State<crate::broker::Broker>,
    headers: HeaderMap,
    info: Option<Extension<ConnInfo>>,
) -> Response {
    if let (Some(auth), Some(v)) = (&broker.config().auth, session_cookie(&headers)) {
        auth.close_session(v);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, is_tls(info.as_deref())));
    r
}

/// Ends a stream when its caller's credential stops holding: at its expiry, or at a reload
/// of the auth file that revoked it or took away the right the stream needs.
pub struct CredentialWatch {
    auth: Option<Arc<Auth>>,
    caller: Caller,
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    expiry: Option<tokio::time::Instant>,
}

impl CredentialWatch {
    /// Watches `caller` under `auth` (nothing to watch without auth).
    pub fn new(auth: Option<Arc<Auth>>, caller: Caller) -> CredentialWatch {
        let changes = auth.as_ref().map(|a| a.changes());
        let expiry = caller.expires().map(|e| {
            let left = e
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + left
        });
        CredentialWatch {
            auth,
            caller,
            changes,
            expiry,
        }
    }

    /// Resolves with the error to end the stream with; `still_allowed` re-checks the
    /// stream's own right with the caller's current grants after a reload.
    pub async fn ended(&mut self, still_allowed: impl Fn(&Caller) -> Result<(), Error>) -> Error {
        let Some(auth) = self.auth.clone() else {
            return std::future::pending().await;
        };
        loop {
            let expiry = self.expiry;
            let changes = self.changes.as_mut();
            tokio::select! {
                () = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => return AuthError::Expired.to_error(),
                changed = async {
                    match changes {
                        Some(c) => c.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    match auth.revalidate(&self.caller) {
                        Ok(fresh) => {
                            if let Err(e) = still_allowed(&fresh) {
                                return e;
                            }
                            self.caller = fresh;
                        }
                        Err(e) => return e.to_error(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_token_leaves_the_uri() {
        let uri: Uri = "/v1/stream?pattern=a.b&access_token=x.y.z&from=oldest"
            .parse()
            .unwrap();
        let (t, rest) = take_access_token(&uri).unwrap();
        assert_eq!(t, "x.y.z");
        assert_eq!(rest.to_string(), "/v1/stream?pattern=a.b&from=oldest");
        let uri: Uri = "/v1/stream?access_token=x".parse().unwrap();
        assert_eq!(take_access_token(&uri).unwrap().1.to_string(), "/v1/stream");
        let uri: Uri = "/v1/stream?pattern=a".parse().unwrap();
        assert!(take_access_token(&uri).is_none());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bus_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("bus_sessionx=1"));
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn refusals_say_why_in_www_authenticate() {
        let r = refusal(&AuthError::Expired);
        assert_eq!(r.status(), 401);
        let v = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            v.contains("error=\"invalid_token\"") && v.contains("expired"),
            "{v}"
        );
        let r = refusal(&AuthError::Missing);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"bus\""
        );
        let r = refusal(&AuthError::RateLimited(Duration::from_secs(7)));
        assert_eq!(
            (r.status().as_u16(), &r.headers()[header::RETRY_AFTER]),
            (429, &HeaderValue::from(7u64))
        );
    }
}
