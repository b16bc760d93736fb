//! Human units at the edges (sizes, durations, RFC 3339 times): moved to [`bus_proto::units`],
//! re-exported here so that `bus_broker::units` paths keep working.

pub use bus_proto::units::*;
