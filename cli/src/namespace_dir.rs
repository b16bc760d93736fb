//! The namespace directories `bus inspect` reads offline, from the broker's inspection API
//! ([`bus_broker::storage::inspect`]), and how its errors print.
//!
//! The listing, the checks (a sealed segment as the broker checks it when it rebuilds its
//! index, the active one as recovery at open does, on a copy) and the repair are the
//! broker's own code; this file only turns their errors into [`CliError`]s, which print as
//! `bus: cannot read <file>: <cause>`.

pub use bus_broker::storage::inspect::{
    DataDir, DirLock, InspectError, NamespaceDir, NamespaceRepair, Scanned, SegmentFile,
    segment_first_seq,
};

use crate::error::{CliError, EXIT_ERROR};

/// An inspection failure as the command reports it: its context (`cannot read <file>`) in
/// front of its cause, exit status 2.
pub fn failed(e: InspectError) -> CliError {
    CliError {
        code: EXIT_ERROR,
        error: Some(Box::new(e)),
    }
}
