//! Cursors (a position per namespace, carried as SSE `id:` and pull-page `cursor`): moved to
//! [`bus_proto::cursor`], re-exported here so that `bus_broker::cursor` paths keep working.

pub use bus_proto::cursor::*;
