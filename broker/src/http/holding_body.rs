//! [`HoldingBody`]: a response body that holds a value (a request count, a client's slot)
//! until the body is dropped, that is until the response was written whole or its
//! connection closed. For an SSE stream, as long as the stream is open.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// `inner`, holding `held`.
pub struct HoldingBody<G> {
    /// The response's body.
    inner: Body,
    /// Dropped with the body.
    _held: G,
}

impl<G: Send + Unpin + 'static> HoldingBody<G> {
    /// `inner` as a body that drops `held` with itself.
    pub fn wrap(inner: Body, held: G) -> Body {
        Body::new(HoldingBody { inner, _held: held })
    }
}

impl<G: Unpin> hyper::body::Body for HoldingBody<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
