//! [`Counted`]: the connection's HTTP service. It hands each request its [`ConnInfo`] and
//! counts it open in the connection's [`Activity`] from its head until its response body is
//! dropped (written whole, or the connection closed), which is how the watchdog tells a
//! busy connection from an idle one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use hyper::{Request, Response};
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;

use super::ConnInfo;
use super::activity::Activity;
use crate::http::App;
use crate::http::holding_body::HoldingBody;

/// The service of one connection.
#[derive(Clone)]
pub struct Counted {
    /// The application.
    app: TowerToHyperService<App>,
    /// Where requests are counted.
    activity: Arc<Activity>,
    /// Given to every request.
    info: ConnInfo,
}

impl Counted {
    /// `app`, counting in `activity`, telling requests `info`.
    pub fn new(app: App, activity: Arc<Activity>, info: ConnInfo) -> Counted {
        Counted {
            app: TowerToHyperService::new(app),
            activity,
            info,
        }
    }
}

/// One open request; ends it when dropped.
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.request_ended(Instant::now());
    }
}

impl Counted {
    /// Answers a request the connection read itself (`direct.rs`'s path): the same
    /// [`ConnInfo`], count and application as a request hyper read.
    pub fn call_direct(&self, req: Request<Body>) -> impl Future<Output = Response<Body>> + Send {
        let fut = hyper::service::Service::call(self, req);
        async move {
            match fut.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    }
}

impl<B> hyper::service::Service<Request<B>> for Counted
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.info);
        self.activity.request_started();
        let open = Open(self.activity.clone());
        let fut = self.app.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| HoldingBody::wrap(body, open)))
        })
    }
}
