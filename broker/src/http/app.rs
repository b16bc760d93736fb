//! [`App`]: the HTTP application a server runs, as the connection's service calls it. The
//! broker's is its routes behind the guard ([`Guarded`]), with CORS, when configured, in
//! front of both, so that a refusal carries CORS headers too and a preflight is answered
//! before any check; `bus bench`'s baseline is a bare router.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures::future::Either;
use tower::{Layer, Service};
use tower_http::cors::{self, Cors, CorsLayer};

use super::guard::{Guarded, GuardedFuture};

/// The application; cheap to clone (every part is shared).
#[derive(Clone)]
pub struct App(Kind);

/// What the application is made of.
#[derive(Clone)]
enum Kind {
    /// Routes only.
    Bare(Router),
    /// Routes behind the guard.
    Guarded(Guarded),
    /// Routes behind the guard, behind CORS (shared: the connection clones the application
    /// for every request, and CORS's settings are large).
    Cors(Arc<Cors<Guarded>>),
}

impl App {
    /// `routes` alone, with no guard (the bench's baseline).
    pub fn bare(routes: Router) -> App {
        App(Kind::Bare(routes))
    }

    /// `guarded`, with `cors` in front when given.
    pub fn guarded(guarded: Guarded, cors: Option<CorsLayer>) -> App {
        match cors {
            Some(cors) => App(Kind::Cors(Arc::new(cors.layer(guarded)))),
            None => App(Kind::Guarded(guarded)),
        }
    }
}

/// An answer from [`App`], whichever it is made of.
type AppFuture =
    Either<RouteFuture<Infallible>, Either<GuardedFuture, cors::ResponseFuture<GuardedFuture>>>;

impl<B> Service<axum::http::Request<B>> for App
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    /// Always ready: the router, the guard and CORS all are.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> AppFuture {
        let req = req.map(Body::new);
        match &mut self.0 {
            Kind::Bare(routes) => Either::Left(routes.call(req)),
            Kind::Guarded(guarded) => Either::Right(Either::Left(guarded.call(req))),
            Kind::Cors(cors) => Either::Right(Either::Right(Cors::clone(cors).call(req))),
        }
    }
}
