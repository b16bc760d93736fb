//! [`Guards`]: every check that stands in front of every route, run by one service in front
//! of the router ([`Guarded`]) in a fixed order, so that a request pays for one step instead
//! of one layer per check. In order:
//! 1. [`host`](super::host): `421 misdirected_request` for a `Host` this broker does not answer
//!    (DNS rebinding);
//! 2. the request head's limits ([`check_head`]): `414 uri_too_long`, `431 headers_too_large`;
//! 3. [`forwarded`](super::forwarded): behind a trusted proxy, the forwarded client's slot
//!    (`429 too_many_connections`), held until the response body is done;
//! 4. shutdown: `503 shutting_down` once shutdown began (streams already open end by
//!    themselves);
//! 5. [`origin`](super::origin): `403 forbidden_origin` for a state-changing request from a
//!    foreign page;
//! 6. [`body_deadline`](super::body_deadline): the body's `--body-timeout`;
//! 7. [`authenticate`](super::authenticate): who the caller is (each handler then checks its
//!    right), and afterwards the count of handlers' `403 forbidden`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::forwarded::Forwarded;
use super::host::HostPolicy;
use super::origin::OriginPolicy;
use crate::auth::{Auth, AuthError};
use crate::connection::client_limits::ClientPermit;
use crate::error::{Error, ErrorCode};
use crate::server::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};

/// What the checks need, shared by every request of one router.
pub struct Guards {
    /// The hosts answered.
    pub hosts: HostPolicy,
    /// The origins allowed to change state.
    pub origins: OriginPolicy,
    /// The per-client limit behind a trusted proxy.
    pub forwarded: Forwarded,
    /// The request body's deadline (`--body-timeout`).
    pub body_timeout: Duration,
    /// Credentials and rights, with `--auth`.
    pub auth: Option<Arc<Auth>>,
    /// Cancelled when the broker's shutdown begins.
    pub shutdown: CancellationToken,
}

/// The guard: runs the checks in order, then the routes. It is a service in front of the
/// whole router rather than a layer on each route, which would put a boxed copy of itself
/// on every route and clone it for every request.
#[derive(Clone)]
pub struct Guarded {
    /// The checks.
    guards: Arc<Guards>,
    /// The routes behind them.
    routes: Router,
}

impl Guarded {
    /// `routes` behind `guards`.
    pub fn new(guards: Arc<Guards>, routes: Router) -> Guarded {
        Guarded { guards, routes }
    }
}

impl Service<Request> for Guarded {
    type Response = Response;
    type Error = Infallible;
    type Future = GuardedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> GuardedFuture {
        match self.guards.admit(req) {
            Ok((req, permit)) => GuardedFuture::Admitted {
                route: self.routes.call(req),
                permit,
                auth: self.guards.auth.clone(),
            },
            Err(Refusal::Check(e)) => GuardedFuture::Refused(Some(e.into_response())),
            Err(Refusal::Auth(e)) => GuardedFuture::Refused(Some(super::authenticate::refusal(&e))),
        }
    }
}

/// A guarded request's answer: the refusal, or the route's response, which then holds the
/// forwarded client's slot until its body is done (and counts a handler's `403` under
/// `--auth`).
// The admitted variant, the large one, is the common one: boxing it would cost every
// request an allocation.
#[allow(clippy::large_enum_variant)]
pub enum GuardedFuture {
    /// Refused by a check (taken when polled).
    Refused(Option<Response>),
    /// Admitted: the route's answer to come.
    Admitted {
        /// The route.
        route: RouteFuture<Infallible>,
        /// The forwarded client's slot, behind a trusted proxy (taken when answered).
        permit: Option<ClientPermit>,
        /// Where a handler's `403` is counted, with `--auth`.
        auth: Option<Arc<Auth>>,
    },
}

impl Future for GuardedFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            // Polled again after its answer (which a caller must not do): an empty 200
            // rather than a panic.
            GuardedFuture::Refused(refusal) => Poll::Ready(Ok(refusal.take().unwrap_or_default())),
            GuardedFuture::Admitted {
                route,
                permit,
                auth,
            } => {
                let response = match std::task::ready!(Pin::new(route).poll(cx)) {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if let Some(auth) = auth {
                    super::authenticate::count_refusal(auth, &response);
                }
                Poll::Ready(Ok(Forwarded::hold(response, permit.take())))
            }
        }
    }
}

/// Why [`Guards::admit`] refused a request.
enum Refusal {
    /// A check's JSON error.
    Check(Error),
    /// No valid credential (`401`, with `WWW-Authenticate`).
    Auth(AuthError),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Check(e)
    }
}

impl Guards {
    /// Checks `req`; returns it (its body under a deadline, its caller in its extensions)
    /// with the forwarded client's slot to hold, or the refusal to send.
    fn admit(&self, req: Request) -> Result<(Request, Option<ClientPermit>), Refusal> {
        let mut req = req;
        super::host::check_host(&self.hosts, &req)?;
        check_head(&req)?;
        let permit = self.forwarded.admit(&mut req)?;
        if self.shutdown.is_cancelled() {
            return Err(Error::new(ErrorCode::ShuttingDown, "the broker is shutting down").into());
        }
        super::origin::check_origin(&self.origins, &req)?;
        let mut req = super::body_deadline::limit_body_time(req, self.body_timeout);
        super::authenticate::authenticate(self.auth.as_deref(), &mut req).map_err(Refusal::Auth)?;
        Ok((req, permit))
    }
}

/// The broker's limits on the request head, answered with the JSON error body (the HTTP
/// library's own limits are set past these in `server.rs`).
pub fn check_head(req: &Request) -> Result<(), Error> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(Error::new(
            ErrorCode::UriTooLong,
            format!("the path and query are {uri_len} bytes; at most {MAX_URI_BYTES} are taken"),
        ));
    }
    let count = req.headers().len();
    if count > MAX_HEADERS {
        return Err(Error::new(
            ErrorCode::HeadersTooLarge,
            format!("{count} request headers; at most {MAX_HEADERS} are taken"),
        ));
    }
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(Error::new(
            ErrorCode::HeadersTooLarge,
            format!("{bytes} bytes of request headers; at most {MAX_HEADER_BYTES} are taken"),
        ));
    }
    Ok(())
}
