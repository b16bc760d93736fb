//! [`run`]: serve the HTTP API on a listener until a shutdown future resolves, then drain.
//!
//! Shutdown: stop accepting, let in-flight requests finish (publishes complete and are
//! answered), end every SSE stream with `event: shutdown`, answer new requests on open
//! connections `503 shutting_down`, and return once every connection has closed. The caller
//! then closes the broker (syncing the logs). Tests pass their own shutdown trigger; `bus
//! server` passes SIGINT/SIGTERM.
//!
//! Limits: the broker's own limits on the request head ([`MAX_HEADERS`],
//! [`MAX_HEADER_BYTES`], [`MAX_URI_BYTES`]) are checked by the router and answered with the
//! JSON error body. The HTTP library's limits are set well past them ([`HYPER_MAX_HEADERS`],
//! [`HYPER_MAX_BUF_BYTES`]), so that only a head far beyond the broker's limits, or bytes
//! that are not HTTP at all, get the library's bare answer.

use std::future::Future;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::listener::LimitedListener;

/// Most request headers the broker takes (`431 headers_too_large` past it).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request headers (names, values and their separators) the broker takes
/// (`431 headers_too_large` past it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest path and query string the broker takes (`414 uri_too_long` past it). Below
/// hyper's own fixed HTTP/1 limit of 65,534 bytes, which cannot be raised (past it, hyper
/// answers a bare 414).
pub const MAX_URI_BYTES: usize = 32 * 1024;
/// The HTTP/1 library's header count limit, set past [`MAX_HEADERS`].
pub const HYPER_MAX_HEADERS: usize = 1000;
/// The HTTP/1 library's read buffer (it bounds the whole head), and the HTTP/2 header list
/// limit, set past [`MAX_HEADER_BYTES`] + [`MAX_URI_BYTES`].
pub const HYPER_MAX_BUF_BYTES: usize = 512 * 1024;

/// Serves the API on `listener` until `shutdown` resolves and every connection has drained.
pub async fn run(
    listener: TcpListener,
    broker: Broker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = broker.shutdown_token();
    let app = crate::http::router(broker.clone());
    let mut listener = LimitedListener::new(listener, broker.config().max_connections);
    let signal = {
        let token = token.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = token.cancelled() => {}
            }
            tracing::info!("shutting down: draining connections");
            token.cancel();
        }
    };
    tokio::pin!(signal);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF_BYTES);
    builder
        .http2()
        .max_header_list_size(HYPER_MAX_BUF_BYTES as u32);
    let graceful = GracefulShutdown::new();
    loop {
        let (io, _addr) = tokio::select! {
            () = &mut signal => break,
            c = axum::serve::Listener::accept(&mut listener) => c,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
