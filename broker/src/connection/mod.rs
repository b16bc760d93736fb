//! One connection, from accept to close: [`serve`].
//!
//! Flow: from a trusted proxy, a PROXY protocol header may name the client
//! (`proxy_protocol.rs`); the client's slot is taken (`client_limits.rs`; past the limit the
//! connection is closed, a plain one after a best-effort `429 too_many_connections`); TLS is
//! negotiated when configured (`crate::tls`); then HTTP/1.1 or HTTP/2 is served, every
//! request carrying a [`ConnInfo`] and counted ([`counted`]), while the watchdog
//! ([`activity::watch`]) closes the connection once it is silent, idle or stalled past its
//! timeout. Closing gives back the slot of `--max-connections` the listener took, which is
//! what lets a waiting client in.
//!
//! Bound: the PROXY header and the TLS handshake must be done within the header timeout of
//! the accept, like the first request head.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::http::App;
use crate::trusted_proxies::TrustedProxies;

pub mod activity;
pub mod client_limits;
pub mod counted;
pub mod first_head;
pub mod proxy_protocol;
pub mod response_writer;
pub mod rewind;
pub mod watched_io;

use activity::{Activity, Timeouts};
use client_limits::ClientLimits;
use first_head::{FirstHead, Read};
use response_writer::{Outcome, ResponseWriter};
use rewind::Rewind;
use watched_io::WatchedIo;

/// What a request knows of its connection, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The socket's peer.
    pub peer: SocketAddr,
    /// The client: the peer, or the address a trusted proxy's PROXY header named.
    pub client: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the peer is a trusted proxy that sent no PROXY header, so that
    /// `X-Forwarded-For` names the client of each request.
    pub from_proxy: bool,
}

/// What every connection of one server shares.
pub struct Shared {
    /// The application.
    pub app: App,
    /// The HTTP/1.1 and HTTP/2 settings.
    pub builder: Builder<TokioExecutor>,
    /// TLS, when configured.
    pub tls: Option<crate::tls::Tls>,
    /// When to close a silent, idle or stalled connection.
    pub timeouts: Timeouts,
    /// Whose PROXY header is believed.
    pub trusted: TrustedProxies,
    /// Connections per client.
    pub client_limits: Arc<ClientLimits>,
    /// Cancelled when the server begins its graceful shutdown: a response written on the
    /// direct path then closes its connection, as hyper's do.
    pub closing: tokio_util::sync::CancellationToken,
}

/// Serves one accepted connection until it closes; `slot` is its `--max-connections` slot.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
) {
    let accepted = Instant::now();
    let deadline = activity::deadline_after(accepted, shared.timeouts.header);
    let activity = Arc::new(Activity::new(accepted, shared.timeouts));
    let mut stream = stream;
    let trusted = shared.trusted.contains(peer.ip());
    // The PROXY header is read from the socket itself, before the watched IO: what the
    // connection's activity sniffs first (an HTTP/2 preface) must be the client's own bytes.
    let (proxied, prefix) = if trusted {
        // Boxed, for trusted proxies only: no other connection's task holds its buffer.
        let read = Box::pin(proxy_protocol::read_header(&mut stream));
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "closing connection");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "closing connection: nothing within the header timeout");
                return;
            }
        }
    } else {
        (None, Vec::new())
    };
    let client = proxied.unwrap_or(peer);
    let from_proxy = trusted && proxied.is_none();
    // A proxy's own connections carry many clients; those are limited per request.
    let permit = if from_proxy {
        None
    } else {
        match shared.client_limits.try_acquire(client.ip()) {
            Some(p) => Some(p),
            None => {
                tracing::debug!(%client, "closing connection: too many connections from this client");
                if shared.tls.is_none() {
                    refuse(&stream, shared.client_limits.max());
                }
                return;
            }
        }
    };
    let info = ConnInfo {
        peer,
        client,
        tls: shared.tls.is_some(),
        from_proxy,
    };
    let io = WatchedIo::new(Rewind::new(prefix, stream), activity.clone());
    match &shared.tls {
        // Boxed: the TLS state is large, and a plain connection's task must not be sized
        // for it.
        Some(tls) => {
            Box::pin(tls_http(
                &shared, tls, io, activity, info, watcher, deadline,
            ))
            .await
        }
        None => http(&shared, io, activity, info, watcher, true).await,
    }
    drop(permit);
    drop(slot);
}

/// Negotiates TLS on `io` (by `deadline`), then serves HTTP on it.
async fn tls_http<I>(
    shared: &Shared,
    tls: &crate::tls::Tls,
    io: I,
    activity: Arc<Activity>,
    info: ConnInfo,
    watcher: Watcher,
    deadline: Instant,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = info.client;
    let stream = match tokio::time::timeout_at(deadline, tls.acceptor().accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%client, "closing connection: no TLS handshake within the header timeout");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        activity.set_h2();
    }
    http(shared, stream, activity, info, watcher, !h2).await;
}

/// Serves HTTP on `io` until the connection ends or the watchdog closes it. With `direct`
/// (HTTP/1, or not yet known), a first request for a stream is answered on the direct path
/// ([`direct`]); everything else, and what follows a kept connection, is hyper's.
async fn http<I>(
    shared: &Shared,
    io: I,
    activity: Arc<Activity>,
    info: ConnInfo,
    watcher: Watcher,
    direct: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = counted::Counted::new(shared.app.clone(), activity.clone(), info);
    let serve = async move {
        // The watcher is held while the direct path answers, so that a graceful shutdown
        // waits for its response too.
        let (io, read) = if direct {
            match self::direct(io, &service, shared).await {
                Outcome::KeepAlive(io, read) => (io, read),
                Outcome::Closed => return,
            }
        } else {
            (io, Vec::new())
        };
        let conn = shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(Rewind::new(read, io)), service)
            .into_owned();
        // Boxed: a connection on the direct path never holds hyper's state in its task.
        let conn = Box::pin(watcher.watch(conn));
        if let Err(e) = conn.await {
            tracing::debug!(client = %info.client, error = %e, "connection ended with an error");
        }
    };
    tokio::select! {
        () = serve => {}
        reason = activity::watch(&activity) => {
            tracing::debug!(client = %info.client, reason = reason.as_str(), "closing connection");
        }
    }
}

/// The direct path: reads the first request head with a small buffer; a stream request
/// ([`first_head`]) is run through the same application and its response written by
/// [`ResponseWriter`], holding none of hyper's buffers while the stream is open. Anything
/// else comes back as [`Outcome::KeepAlive`] with the bytes read, for hyper.
async fn direct<I>(mut io: I, service: &counted::Counted, shared: &Shared) -> Outcome<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let FirstHead {
        request,
        keep_alive,
        rest,
    } = match tokio::select! {
        read = FirstHead::read(&mut io) => read,
        // A connection that has not sent its first head when shutdown begins is closed, as
        // hyper closes one with no request under way: otherwise the graceful drain would
        // wait for it until the header timeout.
        () = shared.closing.cancelled() => return Outcome::Closed,
    } {
        Read::Other(read) => return Outcome::KeepAlive(io, read),
        Read::Stream(head) => *head,
    };
    let version = request.version();
    let resp = service.call_direct(request).await;
    let writer = ResponseWriter {
        version,
        keep_alive,
        closing: shared.closing.is_cancelled(),
    };
    match writer.write(io, resp, rest).await {
        // A stream that ended with the server's shutdown closes its connection.
        Outcome::KeepAlive(mut io, _) if shared.closing.is_cancelled() => {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
            Outcome::Closed
        }
        outcome => outcome,
    }
}

/// Tells a client over its limit why, if the socket takes it at once (never waits).
fn refuse(stream: &TcpStream, max: usize) {
    let body = serde_json::to_string(&bus_proto::error::ErrorBody::new(
        crate::error::ErrorCode::TooManyConnections,
        format!("this client has {max} connections open already"),
    ))
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}
