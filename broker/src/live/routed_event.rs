//! [`RoutedEvent`]: one stored event as every subscriber it goes to shares it, with its
//! JSON encoded once.
//!
//! The live path hands the same `Arc<RoutedEvent>` to every matching subscription; a
//! subscription catching up from the log wraps what it read in one of its own. The SSE
//! frame (`data: <event JSON>\n\n`) is built on first use and kept as [`Bytes`], so writing it
//! to a thousand sockets copies no JSON and encodes it once. What differs per subscriber is
//! written beside it: the `id:` line (a cursor spanning namespaces) and, for manual-ack
//! consumers, the delivery count, spliced in as its own small piece (see
//! [`bus_proto::event::EventView::write_json_marked`]).

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::storage::Event;

/// A stored event, shared by the subscriptions it is delivered to.
#[derive(Debug)]
pub struct RoutedEvent {
    /// The namespace it is stored in.
    pub namespace: Arc<str>,
    /// The event.
    pub event: Event,
    /// The SSE data frame, built on first use.
    frame: OnceLock<Frame>,
}

/// `data: <event JSON>\n\n`, and where a delivery count would go in it.
#[derive(Debug)]
struct Frame {
    /// The whole frame, without a delivery count.
    bytes: Bytes,
    /// The offset in `bytes` at which `,"delivery_count":N` belongs.
    count_at: usize,
}

/// The bytes before the JSON in a frame.
const DATA_PREFIX: &str = "data: ";
/// The bytes after it.
const FRAME_END: &str = "\n\n";

impl RoutedEvent {
    /// Wraps `event`, stored in `namespace`.
    pub fn new(namespace: Arc<str>, event: Event) -> RoutedEvent {
        RoutedEvent {
            namespace,
            event,
            frame: OnceLock::new(),
        }
    }

    fn frame(&self) -> &Frame {
        self.frame.get_or_init(|| {
            let mut out = String::with_capacity(
                200 + self.event.id.len() + 2 * self.event.subject.len() + self.event.payload.len(),
            );
            out.push_str(DATA_PREFIX);
            let count_at =
                crate::event::view(&self.event, &self.namespace, None).write_json_marked(&mut out);
            out.push_str(FRAME_END);
            Frame {
                bytes: Bytes::from(out),
                count_at,
            }
        })
    }

    /// The event JSON (without a delivery count), shared.
    pub fn json(&self) -> Bytes {
        let f = self.frame();
        f.bytes
            .slice(DATA_PREFIX.len()..f.bytes.len() - FRAME_END.len())
    }

    /// Bytes of the SSE `data:` line and the blank line ending the frame.
    pub fn data_frame_len(&self) -> usize {
        self.frame().bytes.len()
    }

    /// Appends the SSE `data:` line and the blank line ending the frame to `out`, with
    /// `delivery_count` spliced in when given (a copy: for frames small enough that one
    /// write of them beats separate pieces).
    pub fn copy_data_frame(&self, out: &mut BytesMut, delivery_count: Option<u32>) {
        let f = self.frame();
        match delivery_count {
            None => out.extend_from_slice(&f.bytes),
            Some(n) => {
                out.extend_from_slice(&f.bytes[..f.count_at]);
                out.extend_from_slice(bus_proto::event::delivery_count_field(n).as_bytes());
                out.extend_from_slice(&f.bytes[f.count_at..]);
            }
        }
    }

    /// The SSE `data:` line and the blank line ending the frame, as pieces to write in
    /// order: one shared piece, or three when a delivery count is spliced in.
    pub fn data_frame(&self, delivery_count: Option<u32>) -> Vec<Bytes> {
        let f = self.frame();
        match delivery_count {
            None => vec![f.bytes.clone()],
            Some(n) => vec![
                f.bytes.slice(..f.count_at),
                Bytes::from(bus_proto::event::delivery_count_field(n)),
                f.bytes.slice(f.count_at..),
            ],
        }
    }
}

impl Deref for RoutedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RoutedEvent {
        RoutedEvent::new(
            "user".into(),
            Event {
                sequence: 4,
                id: "user-4-00000001".into(),
                subject: "user.created".into(),
                time_ns: 1_700_000_000_000_000_000,
                headers: vec![],
                reply_to: None,
                msg_id: None,
                content_type: Some("application/json".into()),
                payload: Bytes::from_static(b"{\"a\":1}"),
            },
        )
    }

    #[test]
    fn the_frame_holds_the_event_json_once_encoded() {
        let e = event();
        let json = crate::event::to_json(&e.event, "user", None);
        assert_eq!(e.json(), json.as_bytes());
        let frame = e.data_frame(None).concat();
        assert_eq!(frame, format!("data: {json}\n\n").as_bytes());
        // The same allocation backs every frame handed out.
        assert_eq!(
            e.data_frame(None)[0].as_ptr(),
            e.data_frame(None)[0].as_ptr()
        );
    }

    #[test]
    fn a_delivery_count_is_spliced_in_where_the_protocol_puts_it() {
        let e = event();
        let with = e.data_frame(Some(3)).concat();
        let json = crate::event::to_json(&e.event, "user", Some(3));
        assert_eq!(with, format!("data: {json}\n\n").as_bytes());
    }
}
