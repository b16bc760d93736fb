//! `POST /v1/requests/{subject}`: publish a request and answer with its reply, in one call.
//!
//! The body and headers are those of a single publish (`Bus-Header-*`, `Content-Type`); the
//! answer carries the reply's payload as its body, the reply's Content-Type, its event headers
//! as `Bus-Header-*`, and the stored request's id as `Bus-Request-Id`. An error reply (event
//! header `bus-error`) answers `502 reply_error` with the responder's message, the reply's
//! headers still attached.

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::broker::Broker;
use crate::error::{Error, ErrorCode};
use crate::inboxes::Reply;
use crate::request::{DEFAULT_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT};

use super::publish::{HEADER_PREFIX, read_publish};
use super::query::{Params, Query};

/// Query parameters of `POST /v1/requests/{subject}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestParams {
    /// Longest wait for the reply.
    timeout: Option<String>,
}

impl Params for RequestParams {
    const ACCEPTED: &'static [&'static str] = &["timeout"];
}

/// `timeout=<duration>` (default 5 s, at most 5 min).
fn timeout_param(q: &RequestParams) -> Result<std::time::Duration, Error> {
    match q.timeout.as_deref() {
        None => Ok(DEFAULT_REQUEST_TIMEOUT),
        Some(t) => crate::units::parse_duration(t)
            .ok()
            .filter(|d| !d.is_zero() && *d <= MAX_REQUEST_TIMEOUT)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidParameter,
                    format!("timeout must be a duration from 1ms to 5m, got {t:?}"),
                )
            }),
    }
}

/// The reply's headers as `Bus-Header-*` response headers, plus `Bus-Request-Id`. A header
/// that cannot be an HTTP header (only possible for replies not made over HTTP) is left out.
fn reply_headers(reply: &Reply, request_id: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in &reply.headers {
        let name = HeaderName::try_from(format!("{HEADER_PREFIX}{k}"));
        match (name, HeaderValue::from_str(v)) {
            (Ok(n), Ok(v)) => {
                out.append(n, v);
            }
            _ => tracing::debug!(header = %k, "reply header not representable in HTTP; left out"),
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert("bus-request-id", v);
    }
    out
}

/// `POST /v1/requests/{subject}`.
pub async fn request(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Query<RequestParams>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();
    let Path(subject) = subject.map_err(super::error::bad_path)?;
    let timeout = timeout_param(&q)?;
    let checked = Broker::check_subject(&subject)?;
    caller.check_publish(&checked, "send a request to")?;
    let p = read_publish(&broker, subject, &parts.headers, body).await?;
    let (receipt, reply) = broker.request_as(p, timeout, &caller).await?;
    let mut out = reply_headers(&reply, &receipt.id());
    if let Some(message) = reply.error() {
        let mut response = Error::new(ErrorCode::ReplyError, message).into_response();
        response.headers_mut().extend(out);
        return Ok(response);
    }
    let ct = reply
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    out.insert(header::CONTENT_TYPE, ct);
    Ok((StatusCode::OK, out, Body::from(reply.payload)).into_response())
}
