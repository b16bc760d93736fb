//! The event JSON of a stored [`Event`]: a thin adapter over [`bus_proto::event`], which
//! defines the form (see `proto-docs/http-api.md`, "The event JSON") and writes it from a
//! view of an event's fields. The helpers are re-exported so that `bus_broker::event` paths
//! keep working.

pub use bus_proto::event::{
    EventView, is_json_content_type, push_headers, push_json_str, push_payload,
};

use crate::storage::Event;

/// The view of `e` in `namespace` that the event JSON is written from.
pub fn view<'a>(e: &'a Event, namespace: &'a str, delivery_count: Option<u32>) -> EventView<'a> {
    EventView {
        id: &e.id,
        subject: &e.subject,
        namespace,
        sequence: e.sequence,
        time_ns: e.time_ns,
        headers: &e.headers,
        reply_to: e.reply_to.as_deref(),
        msg_id: e.msg_id.as_deref().map(crate::publisher::visible_msg_id),
        content_type: e.content_type.as_deref(),
        payload: &e.payload,
        delivery_count,
    }
}

/// The event JSON of `e` in `namespace`, on one line. `delivery_count` is set for
/// manual-ack deliveries.
pub fn to_json(e: &Event, namespace: &str, delivery_count: Option<u32>) -> String {
    view(e, namespace, delivery_count).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Every field of the storage event reaches the JSON (the form itself is tested in
    /// `bus_proto::event`).
    #[test]
    fn every_field_is_passed_on() {
        let e = Event {
            sequence: 3,
            id: "user-3-00000001".into(),
            subject: "user.created".into(),
            time_ns: 1_700_000_000_000_000_000,
            headers: vec![("trace".into(), "a\"b".into())],
            reply_to: Some("_inbox.x".into()),
            msg_id: Some("order-17".into()),
            content_type: Some("text/plain".into()),
            payload: Bytes::from_static(b"hi"),
        };
        assert_eq!(
            to_json(&e, "user", Some(2)),
            r#"{"id":"user-3-00000001","subject":"user.created","namespace":"user","sequence":3,"time":"2023-11-14T22:13:20.000000000Z","headers":{"trace":"a\"b"},"reply_to":"_inbox.x","msg_id":"order-17","content_type":"text/plain","delivery_count":2,"payload":"hi"}"#
        );
    }
}
