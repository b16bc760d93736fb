//! [`DeadLetterSink`]: where consumers put the events they give up on.
//!
//! A dead letter is an event the broker publishes itself, under `_dead.<original subject>`
//! (see [`super::DEAD_LETTER_PREFIX`]), into a reserved namespace. Consumers get this narrow
//! sink rather than the whole publish path: it can publish internal events and nothing
//! else.

use crate::error::Error;
use crate::publisher::{Publish, Publisher};
use crate::storage::Receipt;

/// Publishes dead letters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeadLetterSink {
    /// The publish path; only its internal entry is used.
    publisher: Publisher,
}

impl DeadLetterSink {
    /// A sink publishing through `publisher`.
    pub fn new(publisher: Publisher) -> DeadLetterSink {
        DeadLetterSink { publisher }
    }

    /// Stores one dead letter; resolves once durable. Its dedup id makes a repeat (after
    /// a rolled-back resolution) harmless.
    pub async fn put(&self, letter: Publish) -> Result<Receipt, Error> {
        self.publisher.publish_internal(letter).await
    }
}
