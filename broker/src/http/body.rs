//! [`read`]: a request body read whole, up to a limit. Over the limit is
//! `413 payload_too_large`; a body whose framing is broken (a malformed chunked encoding, a
//! connection cut mid-body) is `400 invalid_body`: the two are told apart here, since the
//! HTTP library reports both as a read error. A body that does not arrive within the body
//! timeout (`body_deadline.rs`) is `408 request_timeout`.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{Error, ErrorCode};

/// Reads `body` whole; `what` names it in errors ("request body", "an ack batch").
pub async fn read(body: Body, limit: usize, what: &str) -> Result<Bytes, Error> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
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
