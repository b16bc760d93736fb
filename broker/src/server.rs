//! [`run`]: serve the HTTP API on a listener until a shutdown future resolves, then drain.
//!
//! Shutdown: stop accepting, let in-flight requests finish (publishes complete and are
//! answered), end every SSE stream with `event: shutdown`, answer new requests on open
//! connections `503 shutting_down`, and return once every connection has closed. The caller
//! then closes the broker (syncing the logs). Tests pass their own shutdown trigger; `bus
//! server` passes SIGINT/SIGTERM.

use std::future::Future;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::listener::LimitedListener;

/// Serves the API on `listener` until `shutdown` resolves and every connection has drained.
pub async fn run(
    listener: TcpListener,
    broker: Broker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = broker.shutdown_token();
    let app = crate::http::router(broker.clone());
    let listener = LimitedListener::new(listener, broker.config().max_connections);
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            () = token.cancelled() => {}
        }
        tracing::info!("shutting down: draining connections");
        token.cancel();
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
}
