//! Server-Sent Events written as [`Bytes`] pieces: an event's frame, encoded once and shared
//! by every subscriber it goes to, is written beside the few bytes that are the subscriber's
//! own (its `id:` line), and keep-alive comments fill the silences.
//!
//! A frame's pieces go out as one body chunk when they are small (up to
//! [`COALESCE_BYTES`]: copying a few hundred bytes costs less than the chunk headers and
//! write calls of separate pieces), and as they are, uncopied, when larger.
//!
//! Frames are built by [`frame`] (named events: `subscribed`, `gap`, `error`, `shutdown`) and
//! [`event`] (a delivery); [`response`] turns a stream of frames into the streaming response.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::live::RoutedEvent;

/// The comment sent after `heartbeat` without a frame.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Frames up to this size are written as one chunk (their pieces copied together); larger
/// ones as their pieces, the shared ones uncopied.
pub const COALESCE_BYTES: usize = 4096;

/// How long `EventSource` waits before reconnecting, sent with `subscribed`.
pub const RETRY_MS: u64 = 1000;

/// A frame that is a named event with one line of `data` (JSON, so no newline in it), and
/// the `retry:` field when `retry` is set.
pub fn frame(name: &str, data: &str, retry: bool) -> Vec<Bytes> {
    let mut s = String::with_capacity(name.len() + data.len() + 32);
    s.push_str("event: ");
    s.push_str(name);
    if retry {
        s.push_str("\nretry: ");
        s.push_str(&RETRY_MS.to_string());
    }
    s.push_str("\ndata: ");
    s.push_str(data);
    s.push_str("\n\n");
    vec![Bytes::from(s)]
}

/// The frame of a delivery: `id: <id>` (the subscriber's own) and the event's shared
/// `data:` frame, with `delivery_count` spliced in when given. Up to [`COALESCE_BYTES`] it is
/// one piece, written in one go; past it the shared frame is passed on uncopied.
pub fn event(id: &str, e: &RoutedEvent, delivery_count: Option<u32>) -> Vec<Bytes> {
    const COUNT_BYTES: usize = 32;
    let size = "id: \n".len() + id.len() + e.data_frame_len() + COUNT_BYTES;
    if size <= COALESCE_BYTES {
        let mut out = BytesMut::with_capacity(size);
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n");
        e.copy_data_frame(&mut out, delivery_count);
        return vec![out.freeze()];
    }
    let mut pieces = Vec::with_capacity(4);
    pieces.push(Bytes::from(format!("id: {id}\n")));
    pieces.extend(e.data_frame(delivery_count));
    pieces
}

/// The streaming response writing `frames`, with a keep-alive comment after every
/// `heartbeat` without one. Ends when `frames` ends.
pub fn response(
    frames: impl Stream<Item = Vec<Bytes>> + Send + 'static,
    heartbeat: Duration,
) -> Response {
    let body = async_stream::stream! {
        let mut frames = std::pin::pin!(frames);
        // One timer, moved on after each frame (cheaper than a new one per frame).
        let silence = tokio::time::sleep(heartbeat);
        let mut silence = std::pin::pin!(silence);
        loop {
            // The frame stream keeps its own state between polls: a keep-alive in between
            // cancels nothing of it.
            let next = tokio::select! {
                f = frames.next() => f,
                () = &mut silence => {
                    silence.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                    yield Ok::<_, Infallible>(Bytes::from_static(KEEP_ALIVE));
                    continue;
                }
            };
            let Some(pieces) = next else { break };
            silence.as_mut().reset(tokio::time::Instant::now() + heartbeat);
            let size: usize = pieces.iter().map(Bytes::len).sum();
            if pieces.len() > 1 && size <= COALESCE_BYTES {
                yield Ok(Bytes::from(pieces.concat()));
            } else {
                for p in pieces {
                    yield Ok(p);
                }
            }
        }
    };
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // Proxies must not buffer the stream.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(payload: usize) -> RoutedEvent {
        RoutedEvent::new(
            "user".into(),
            crate::storage::Event {
                sequence: 1,
                id: "user-1-00000001".into(),
                subject: "user.a".into(),
                time_ns: 0,
                headers: vec![],
                reply_to: None,
                msg_id: None,
                content_type: None,
                payload: Bytes::from(vec![b'x'; payload]),
            },
        )
    }

    #[test]
    fn a_small_delivery_is_one_piece_a_large_one_keeps_the_shared_frame() {
        let e = routed(10);
        let json = crate::event::to_json(&e.event, "user", Some(2));
        let small = event("c-1", &e, Some(2));
        assert_eq!(small.len(), 1);
        assert_eq!(small[0], format!("id: c-1\ndata: {json}\n\n").as_bytes());
        let e = routed(2 * COALESCE_BYTES);
        let large = event("c-1", &e, None);
        assert_eq!(large[0], &b"id: c-1\n"[..]);
        assert_eq!(
            large[1].as_ptr(),
            e.data_frame(None)[0].as_ptr(),
            "shared, not copied"
        );
    }

    #[test]
    fn named_frames_are_one_piece_in_the_sse_form() {
        let f = frame("subscribed", "{\"a\":1}", true).concat();
        assert_eq!(f, b"event: subscribed\nretry: 1000\ndata: {\"a\":1}\n\n");
        let f = frame("shutdown", "{}", false).concat();
        assert_eq!(f, b"event: shutdown\ndata: {}\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn silences_get_keep_alives_and_frames_pass_as_they_are() {
        use http_body_util::BodyExt as _;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(4);
        let frames = async_stream::stream! {
            while let Some(f) = rx.recv().await {
                yield f;
            }
        };
        let heartbeat = Duration::from_secs(5);
        let mut body = response(frames, heartbeat).into_body();
        let mut next = async || {
            let f = body.frame().await?.expect("infallible");
            Some(f.into_data().expect("data"))
        };
        let started = tokio::time::Instant::now();
        // A small frame goes out as one chunk.
        tx.send(vec![
            Bytes::from_static(b"id: 1\n"),
            Bytes::from_static(b"data: {}\n\n"),
        ])
        .await
        .unwrap();
        assert_eq!(next().await.as_deref(), Some(&b"id: 1\ndata: {}\n\n"[..]));
        // A large one as its pieces, the shared one not copied.
        let shared = Bytes::from(format!("data: \"{}\"\n\n", "x".repeat(COALESCE_BYTES)));
        tx.send(vec![Bytes::from_static(b"id: 2\n"), shared.clone()])
            .await
            .unwrap();
        assert_eq!(next().await.as_deref(), Some(&b"id: 2\n"[..]));
        let piece = next().await.unwrap();
        assert_eq!(
            piece.as_ptr(),
            shared.as_ptr(),
            "the shared frame is not copied"
        );
        assert_eq!(next().await.as_deref(), Some(KEEP_ALIVE));
        assert_eq!(started.elapsed(), heartbeat);
        drop(tx);
        assert_eq!(next().await, None, "the response ends with its frames");
    }
}
