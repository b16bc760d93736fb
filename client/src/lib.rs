//! `bus-client`: the typed async Rust client for the bus broker.
//!
//! The client arrives with the HTTP server (see the project's issues); this crate is
//! a placeholder so that the workspace layout is fixed from the start.
