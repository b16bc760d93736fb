//! Kept only for `disk_full.rs` (owned by the storage work, which still says
//! `mod http_common;`): the harness now lives in the `bus-testkit` crate. Delete this folder
//! once `disk_full.rs` says `use bus_testkit::*;` instead.
#![allow(unused_imports)]

pub use bus_testkit::*;
