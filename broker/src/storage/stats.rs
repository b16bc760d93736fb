//! [`Metrics`], the counters a namespace's writer, syncer and readers bump as they work, and
//! [`LogStats`], the figures management and metrics read from them and from the readers' view.

use std::sync::atomic::AtomicU64;

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events appended.
    pub appended: AtomicU64,
    /// Encoded bytes appended.
    pub bytes_appended: AtomicU64,
    /// Write groups made visible (one write each; under `always` one sync covers one or
    /// more of them).
    pub groups: AtomicU64,
    /// `fdatasync` calls.
    pub syncs: AtomicU64,
    /// Total time spent in `fdatasync`, in ns.
    pub sync_ns: AtomicU64,
    /// Corrupt records reported to readers.
    pub corrupt_reads: AtomicU64,
    /// Times the namespace became writable again after a storage failure.
    pub heals: AtomicU64,
}

/// Figures of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    /// Events held.
    pub events: u64,
    /// Bytes on disk (segments).
    pub bytes: u64,
    /// Oldest sequence held (the next one when empty).
    pub first_seq: u64,
    /// Newest sequence held (0 when nothing was ever appended).
    pub last_seq: u64,
    /// Time of the newest event, ns since the epoch (0 when none).
    pub last_time_ns: u64,
    /// Segments (sealed plus the active one).
    pub segments: u64,
    /// Why the namespace is read-only, if it is.
    pub read_only: Option<String>,
    /// The damage that set the namespace aside, if a reader found one (the
    /// [`StorageError::Damaged`](super::StorageError::Damaged) message).
    pub damaged: Option<String>,
    /// Events appended since open.
    pub appended: u64,
    /// Write groups since open.
    pub groups: u64,
    /// `fdatasync` calls since open.
    pub syncs: u64,
    /// Time spent in `fdatasync` since open, ns.
    pub sync_ns: u64,
    /// Corrupt records reported to readers since open.
    pub corrupt_reads: u64,
    /// Times the namespace became writable again after a storage failure, since open.
    pub heals: u64,
}
