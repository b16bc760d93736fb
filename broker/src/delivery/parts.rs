//! [`ConsumerParts`]: what consumers need from the rest of the broker, and nothing more.
//!
//! Consumers read logs (through the namespace registry), count deliveries and acks, write
//! their state, dead-letter events and tell publishes waiting for confirmation. They get
//! exactly these parts, none of which knows the consumers or the
//! [`Broker`](crate::broker::Broker) façade, so nothing they hold points back at them.

use std::sync::Arc;

use super::confirmations::Confirmations;
use super::dead_letters::DeadLetterSink;
use crate::live::Routes;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::storage::{ServerConsumers, StateStore};

/// The parts a consumer works with. Cheap to clone (reference counts).
#[derive(Clone)]
pub struct ConsumerParts {
    /// Where the logs are.
    pub namespaces: Arc<Namespaces>,
    /// Delivery and ack counters.
    pub metrics: Arc<Metrics>,
    /// The live path, which consumers' readers join like every subscription.
    pub routes: Arc<Routes>,
    /// Where durable consumers keep their state.
    pub store: Arc<dyn StateStore>,
    /// Where given-up events go.
    pub dead_letters: DeadLetterSink,
    /// Publishes waiting for acks.
    pub confirmations: Arc<Confirmations>,
    /// Durable consumers the storage engine keeps itself (JetStream), when it has them.
    pub server_consumers: Option<Arc<dyn ServerConsumers>>,
    /// Whether new durables that qualify are made there (`--jetstream-consumers`); those
    /// made there before are served there whatever it says.
    pub create_on_server: bool,
}

impl std::fmt::Debug for ConsumerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerParts").finish_non_exhaustive()
    }
}
