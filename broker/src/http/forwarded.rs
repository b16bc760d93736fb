//! The per-client limit behind a trusted proxy: a connection from a proxy of
//! `--trusted-proxies` that sent no PROXY header carries many clients, told apart by
//! `X-Forwarded-For` ([`TrustedProxies::forwarded_client`]). Each such client may have
//! `--max-connections-per-client` requests open at once (an SSE stream counts while it is
//! open); past it, `429 too_many_connections`. From any other peer the header is ignored.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::holding_body::HoldingBody;
use crate::connection::ConnInfo;
use crate::connection::client_limits::ClientLimits;
use crate::error::{Error, ErrorCode};
use crate::trusted_proxies::TrustedProxies;

/// What the middleware needs.
#[derive(Debug)]
pub struct Forwarded {
    /// Whose header is believed.
    pub trusted: TrustedProxies,
    /// Open requests per forwarded client.
    pub limits: Arc<ClientLimits>,
}

/// The middleware.
pub async fn limit_forwarded(
    State(f): State<Arc<Forwarded>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(info) = req.extensions().get::<ConnInfo>().copied() else {
        return next.run(req).await;
    };
    if !info.from_proxy {
        return next.run(req).await;
    }
    let values = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(client) = f.trusted.forwarded_client(info.peer.ip(), values) else {
        return next.run(req).await;
    };
    let mut req = req;
    req.extensions_mut()
        .insert(super::authenticate::ForwardedClient(client));
    match f.limits.try_acquire(client) {
        Some(permit) => next
            .run(req)
            .await
            .map(|body| HoldingBody::wrap(body, permit)),
        None => Error::new(
            ErrorCode::TooManyConnections,
            format!(
                "client {client} has {} requests open through the proxy already",
                f.limits.max()
            ),
        )
        .into_response(),
    }
}
