//! The per-client limit behind a trusted proxy: a connection from a proxy of
//! `--trusted-proxies` that sent no PROXY header carries many clients, told apart by
//! `X-Forwarded-For` ([`TrustedProxies::forwarded_client`]). Each such client may have
//! `--max-connections-per-client` requests open at once (an SSE stream counts while it is
//! open); past it, `429 too_many_connections`. From any other peer the header is ignored.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;

use super::holding_body::HoldingBody;
use crate::connection::ConnInfo;
use crate::connection::client_limits::{ClientLimits, ClientPermit};
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

impl Forwarded {
    /// Admits a request: behind a trusted proxy, names its forwarded client in the
    /// extensions and takes that client's slot, which the caller holds until the response
    /// body is done ([`Forwarded::hold`]); `None` when the request is not counted.
    pub fn admit(&self, req: &mut Request) -> Result<Option<ClientPermit>, Error> {
        let Some(info) = req.extensions().get::<ConnInfo>().copied() else {
            return Ok(None);
        };
        if !info.from_proxy {
            return Ok(None);
        }
        let values = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let Some(client) = self.trusted.forwarded_client(info.peer.ip(), values) else {
            return Ok(None);
        };
        req.extensions_mut()
            .insert(super::authenticate::ForwardedClient(client));
        match self.limits.try_acquire(client) {
            Some(permit) => Ok(Some(permit)),
            None => Err(Error::new(
                ErrorCode::TooManyConnections,
                format!(
                    "client {client} has {} requests open through the proxy already",
                    self.limits.max()
                ),
            )),
        }
    }

    /// Keeps `permit` until `response`'s body is done (an SSE stream counts while open).
    pub fn hold(response: Response, permit: Option<ClientPermit>) -> Response {
        match permit {
            Some(permit) => response.map(|body| HoldingBody::wrap(body, permit)),
            None => response,
        }
    }
}
