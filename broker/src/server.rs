//! [`run`]: serve the HTTP API on a listener until a shutdown future resolves, then drain.
//!
//! Shutdown: stop accepting, let in-flight requests finish (publishes complete and are
//! answered), end every SSE stream with `event: shutdown`, answer new requests on open
//! connections `503 shutting_down`, and return once every connection has closed. The caller
//! then closes the broker (syncing the logs). Tests pass their own shutdown trigger; `bus
//! server` passes SIGINT/SIGTERM.
//!
//! Each connection is served by [`crate::connection::serve`]: timeouts for silent, idle and
//! stalled connections, per-client limits, the PROXY protocol from trusted proxies, TLS.
//!
//! Limits: the broker's own limits on the request head ([`MAX_HEADERS`],
//! [`MAX_HEADER_BYTES`], [`MAX_URI_BYTES`]) are checked by the router and answered with the
//! JSON error body. The HTTP library's limits are set past them ([`HYPER_MAX_HEADERS`],
//! [`HYPER_MAX_BUF_BYTES`]), so that only a head beyond the broker's limits, or bytes
//! that are not HTTP at all, get the library's bare answer.

use std::future::Future;

use std::sync::Arc;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::connection::Shared;
use crate::connection::activity::Timeouts;
use crate::connection::client_limits::ClientLimits;
use crate::listener::LimitedListener;
use crate::tls::Tls;

/// Most request headers the broker takes (`431 headers_too_large` past it).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request headers (names, values and their separators) the broker takes
/// (`431 headers_too_large` past it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest path and query string the broker takes (`414 uri_too_long` past it). Below
/// hyper's own fixed HTTP/1 limit of 65,534 bytes, which cannot be raised (past it, hyper
/// answers a bare 414).
pub const MAX_URI_BYTES: usize = 32 * 1024;
/// The HTTP/1 library's header count limit, set past [`MAX_HEADERS`]. Not much past it:
/// hyper allocates and initialises room for this many headers for every request it
/// parses, and at 1,000 that cost a third of the throughput of single-event publishing
/// (`BENCHMARKS.md`).
pub const HYPER_MAX_HEADERS: usize = 128;
/// The HTTP/1 library's read buffer (it bounds the whole head), and the HTTP/2 header list
/// limit, set past [`MAX_HEADER_BYTES`] + [`MAX_URI_BYTES`].
pub const HYPER_MAX_BUF_BYTES: usize = 512 * 1024;

/// Serves the API on `listener` until `shutdown` resolves and every connection has drained,
/// over TLS when the configuration names a certificate (loaded once; see [`run_with_tls`]
/// for one that can be reloaded). Fails at once when the configuration does not allow
/// listening where `listener` listens (a non-loopback address without credentials or
/// `allow_anonymous`), or when the certificate cannot be loaded.
pub async fn run(
    listener: TcpListener,
    broker: Broker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &broker.config().tls {
        Some(files) => Some(Tls::load(files).map_err(invalid)?),
        None => None,
    };
    run_with_tls(listener, broker, tls, shutdown).await
}

fn invalid(e: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

/// [`run`] with the TLS configuration given (`None`: plain HTTP), so that the caller keeps a
/// handle to [`Tls::reload`] it.
pub async fn run_with_tls(
    listener: TcpListener,
    broker: Broker,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = broker.config().clone();
    config
        .check_exposure(listener.local_addr()?)
        .map_err(invalid)?;
    let token = broker.shutdown_token();
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            () = token.cancelled() => {}
        }
        tracing::info!("shutting down: draining connections");
        token.cancel();
    };
    let app = crate::http::router(broker);
    serve_app(listener, app, &config, tls, signal).await
}

/// Serves `app` on `listener` the way the broker serves its API (the same listener limit,
/// connection handling, timeouts and HTTP settings from `config`) until `shutdown` resolves
/// and every connection has drained. `bus bench` serves its baseline with it, so that the
/// baseline differs from the broker only in what the handlers do.
pub async fn serve_app(
    listener: TcpListener,
    app: crate::http::App,
    config: &crate::config::Config,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut listener = LimitedListener::new(listener, config.max_connections);
    tokio::pin!(shutdown);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF_BYTES);
    builder
        .http2()
        .max_header_list_size(HYPER_MAX_BUF_BYTES as u32);
    let closing = tokio_util::sync::CancellationToken::new();
    let shared = Arc::new(Shared {
        app,
        builder,
        tls,
        timeouts: Timeouts {
            header: config.header_timeout,
            idle: config.idle_timeout,
            stalled: config.stalled_stream_timeout,
        },
        trusted: config.trusted_proxies.clone(),
        client_limits: ClientLimits::new(
            config.max_connections_per_client,
            config.limit_loopback_clients,
        ),
        closing: closing.clone(),
    });
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer, slot) = tokio::select! {
            () = &mut shutdown => break,
            c = listener.accept() => c,
        };
        tokio::spawn(crate::connection::serve(
            shared.clone(),
            stream,
            peer,
            graceful.watcher(),
            slot,
        ));
    }
    drop(listener);
    closing.cancel();
    graceful.shutdown().await;
    Ok(())
}
