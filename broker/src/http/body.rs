//! [`read`]: a request body read whole, up to a limit. Over the limit is
//! `413 payload_too_large`; a body whose framing is broken (a malformed chunked encoding, a
//! connection cut mid-body) is `400 invalid_body`: the two are told apart here, since the
//! HTTP library reports both as a read error. A body that does not arrive within the body
//! timeout (`body_deadline.rs`) is `408 request_timeout`.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{Error, ErrorCode};

/// The most [`read`] reserves ahead on a body's declared length. A client may declare a
/// length and then send nothing, on each of its connections, so the rest of a larger body is
/// reserved only as it arrives. 64 KiB holds a batch of a few hundred small events.
const MAX_RESERVE_AHEAD: usize = 64 << 10;

/// Reads `body` whole; `what` names it in errors ("request body", "an ack batch").
///
/// The chunks are copied into one buffer sized up front from the declared length (up to
/// `limit` and [`MAX_RESERVE_AHEAD`]), so a batch is not copied again each time the buffer
/// grows. They are copied even when one chunk holds the whole body: a chunk shares the
/// connection's read buffer, which a stored or routed payload would otherwise keep alive.
pub async fn read(body: Body, limit: usize, what: &str) -> Result<Bytes, Error> {
    let declared = axum::body::HttpBody::size_hint(&body)
        .exact()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::with_capacity(declared.min(limit).min(MAX_RESERVE_AHEAD));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match super::body_deadline::is_timeout(&e) {
            Some(t) => Error::new(
                ErrorCode::RequestTimeout,
                format!("{what} did not arrive within {:?}", t.0),
            ),
            None => Error::new(
                ErrorCode::InvalidBody,
                format!("{what} could not be read: {e}"),
            ),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{what} exceeds the limit of {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
