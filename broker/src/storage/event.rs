//! The event as the log stores it: [`NewEvent`] goes in, [`Event`] comes out, and an append
//! answers with a [`Receipt`] per event.

use std::sync::Arc;

use bytes::Bytes;

use super::{EventIdRef, event_id};

/// An event to append. The log assigns its sequence number, id and time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEvent {
    /// The subject, already validated by the caller (the log only checks its length).
    pub subject: String,
    /// Headers as (lowercase name, value) pairs, in the order given.
    pub headers: Vec<(String, String)>,
    /// Subject a reply should be published to (request/reply), if any.
    pub reply_to: Option<String>,
    /// Publisher-chosen dedup id: a repeat within the dedup window stores nothing.
    pub msg_id: Option<String>,
    /// The payload's media type as the publisher gave it.
    pub content_type: Option<String>,
    /// The payload: any bytes, empty allowed.
    pub payload: Bytes,
}

impl NewEvent {
    /// An event with just a subject and a payload.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        NewEvent {
            subject: subject.into(),
            payload: payload.into(),
            ..NewEvent::default()
        }
    }
}

/// A stored event, as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The namespace's sequence number: starts at 1, strictly increasing, no gaps.
    pub sequence: u64,
    /// The opaque, unique event id.
    pub id: String,
    /// The subject.
    pub subject: String,
    /// Creation time in nanoseconds since the Unix epoch; never decreases within a namespace.
    pub time_ns: u64,
    /// Headers as (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// Reply subject, if any.
    pub reply_to: Option<String>,
    /// The publisher's dedup id, if any.
    pub msg_id: Option<String>,
    /// The payload's media type, if given.
    pub content_type: Option<String>,
    /// The payload.
    pub payload: Bytes,
}

/// The answer to one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The namespace, shared with its log (a receipt is made per event appended).
    pub namespace: Arc<str>,
    /// The sequence number.
    pub sequence: u64,
    /// The namespace's incarnation, which the event id carries.
    pub incarnation: u32,
    /// Creation time in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// True when the dedup id was seen within the window: nothing was stored and this is the
    /// original event's receipt.
    pub duplicate: bool,
}

impl Receipt {
    /// The event id, not yet written.
    pub fn id_ref(&self) -> EventIdRef<'_> {
        EventIdRef {
            namespace: &self.namespace,
            sequence: self.sequence,
            incarnation: self.incarnation,
        }
    }

    /// The event id.
    pub fn id(&self) -> String {
        event_id(&self.namespace, self.sequence, self.incarnation)
    }
}
