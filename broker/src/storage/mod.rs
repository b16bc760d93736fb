//! The durable event log, one per namespace, behind the [`Storage`] trait.
//!
//! Routing and delivery use storage only through these traits: [`Storage`] (namespaces and
//! the broker's own durable state), [`EventLog`] (append, read from a position, wait for new
//! records, look up by event id and dedup id, retention, stats) and [`StateStore`]. Three
//! engines implement them: [`DiskStorage`], the default, [`MemoryStorage`], for tests and
//! embedding, and [`JetStreamStorage`], on a NATS JetStream server or cluster for users who
//! outgrow one machine (`jetstream/`, its own module tree).
//!
//! The disk engine, file by file, each using only those listed before it (no file reaches
//! into another's fields):
//!
//! - [`io`]: the writer's file operations behind a trait ([`io::FileSystem`], [`io::StdFs`]),
//!   with a power-loss simulator for tests (`sim_fs`, `test-util` only, re-exported by
//!   `io`).
//! - `record`: how one event is framed (length, CRC-32, fields); check, then parse.
//! - `mmap`, `index`, `segment`: memory maps, the per-segment offset index format (written
//!   at seal, checked at load), segment files and their header, sealed segments (which load
//!   or rebuild their index).
//! - [`quarantine`]: where the bytes recovery cuts are kept (`<namespace>/quarantine/`),
//!   bounded to the newest few.
//! - `recovery`: scanning the active segment at open; torn tail versus corruption.
//! - `checkpoint`, `dedup`: the clean-close marker and the dedup table, so open reads no
//!   sealed segment.
//! - `answers`, `stats`, `shared`: how appenders are answered (from a task on their
//!   runtime); the counters; and the state one namespace's handle, writer, syncer and
//!   readers share (the queue, the readers' view, the failure), used through methods.
//! - `written`: a written group on its way to being visible and answered.
//! - [`fd_limit`]: the soft `RLIMIT_NOFILE` raised to the hard limit at start, and what holds
//!   a descriptor.
//! - [`open_files`]: the bound on data files open at once (idle, synced files are closed and
//!   reopened by path at their next use).
//! - [`pool`], `timers`: the bounded thread pools every namespace's writer and syncs run on
//!   (a namespace owns no thread), and the one thread that wakes writers when a sync, probe
//!   or age retention is due.
//! - `syncer`: syncs written groups under `always` on the sync pool while the writer writes on.
//! - `retention`: deleting the oldest sealed segments.
//! - `server_consumer`: [`ServerConsumers`], durable consumers an engine keeps itself.
//! - `salvage`: the records that still verify in a damaged segment (the state log's salvage,
//!   and the offline repair's).
//! - `reservation`: the mark no sequence handed out passes, synced ahead of the writer under
//!   `interval` and `never`, so a crash that loses an unsynced tail never reuses a sequence.
//! - `hole`: continuing a namespace above a high-water mark (a sealed version-2 segment holds
//!   the hole); used by open (above the reservation) and by the offline repair.
//! - `writer`: the writer job: group commit, rolling, failure and healing.
//! - `open`: opening a log: listing, recovery, dedup, starting the writer ([`OpenReport`]).
//! - `reader`: `Reader`, a cursor reading forward from a position.
//! - `log`: `Log`, the handle on one namespace and its [`EventLog`] implementation.
//! - `disk`: [`DiskStorage`]: the data directory, its lock, its namespaces.
//! - `state`: `LogStateStore`, the broker's durable key-value state, kept in a log.
//! - `memory`: [`MemoryStorage`], the same traits in memory.
//! - [`jetstream`]: [`JetStreamStorage`], the same traits on a NATS JetStream server or
//!   cluster.
//! - [`inspect`]: offline inspection for the tools (`bus inspect`, `--verify`, `--repair`):
//!   segments listed, records decoded, damage located.
//! - [`repair`]: the offline repair that salvages a damaged namespace: damaged segments
//!   rewritten as version 2 (with holes), original bytes quarantined, lost sequences named.
//!
//! **Public API.** The traits and their value types, [`DiskStorage`], [`MemoryStorage`],
//! [`JetStreamStorage`] with [`JetStreamOptions`] and [`jetstream::migrate`],
//! [`io::FileSystem`] and [`io::StdFs`] (the broker's `Config` takes a file system, for fault
//! injection), [`inspect`] and [`repair`]. Everything else is private to the crate.
//!
//! **The `test-util` feature** makes public, for this crate's own tests and benches and for
//! the CLI's tests, what they drive directly: the concrete `Log`, `Reader` and
//! `LogStateStore`, `PROBE_INTERVAL`, the `record` and `segment` modules (to damage files on
//! purpose) and `io::SimFs` with `io::FaultOp`. It is for tests only, not a stable API.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

mod answers;
mod checkpoint;
mod config;
mod dedup;
mod disk;
mod error;
mod event;
pub mod fd_limit;
mod hole;
pub(crate) mod index;
pub mod inspect;
pub mod io;
pub mod jetstream;
mod log;
mod memory;
mod mmap;
mod open;
pub mod open_files;
pub mod pool;
pub mod quarantine;
mod reader;
#[cfg(feature = "test-util")]
pub mod record;
#[cfg(not(feature = "test-util"))]
mod record;
mod recovery;
pub mod repair;
mod reservation;
mod retention;
mod salvage;
#[cfg(feature = "test-util")]
pub mod segment;
#[cfg(not(feature = "test-util"))]
mod segment;
mod server_consumer;
mod shared;
#[cfg(feature = "test-util")]
mod sim_fs;
mod state;
mod stats;
mod syncer;
mod timers;
mod writer;
mod written;

pub use config::{FsyncPolicy, LogConfig, Retention};
pub use disk::{DiskStorage, StorageOptions};
pub use error::{Corruption, StorageError};
pub use event::{Event, NewEvent, Receipt};
pub use jetstream::{JetStreamOptions, JetStreamStorage};
pub use memory::MemoryStorage;
pub use open::OpenReport;
pub use pool::ThreadPools;
pub use recovery::{Repair, TornTail};
pub use server_consumer::{
    ServerConsumer, ServerConsumerConfig, ServerConsumerState, ServerConsumers, ServerMessage,
    ServerStart, Settle,
};
pub use stats::LogStats;

/// The concrete disk engine, for tests and benches only (`test-util` feature; not a stable
/// API).
#[cfg(feature = "test-util")]
pub use {
    log::{Log, MAX_BATCH_BYTES},
    reader::{CHUNK_BYTES, Reader},
    state::LogStateStore,
    writer::PROBE_INTERVAL,
};

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The oldest retained event.
    Oldest,
    /// The next event to be written (only new events).
    Newest,
    /// The event with this sequence (a sequence below the oldest retained one yields a gap
    /// first; one beyond the newest waits for it).
    Sequence(u64),
    /// The event after the one with this id (exclusive, like SSE `Last-Event-ID`).
    AfterId(String),
    /// The first event at or after this time (ns since the Unix epoch).
    Time(u64),
}

/// What a reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadItem {
    /// The next event.
    Event(Event),
    /// Events `missed_from..resume_at` are gone: deleted by retention before they were read,
    /// or holes a repair left where records were damaged; reading resumes at `resume_at`.
    Gap {
        /// The first sequence skipped.
        missed_from: u64,
        /// The sequence reading resumes from.
        resume_at: u64,
        /// Why they are gone.
        reason: GapReason,
    },
}

/// What an event id resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdLookup {
    /// The event is in the log at this sequence.
    Found(u64),
    /// The event existed at this sequence but retention deleted it; `first_available` is the
    /// oldest sequence still held.
    Deleted {
        /// The event's sequence.
        sequence: u64,
        /// The oldest retained sequence.
        first_available: u64,
    },
    /// This log never held such an event.
    Unknown,
}

/// One namespace's log.
///
/// # Which calls may wait
///
/// Every method that an engine answering over the network (a NATS JetStream cluster) would
/// have to ask its server for returns a future: `append`, `reader`, `lookup_id`,
/// `lookup_msg_id` and `apply_retention`. The synchronous ones never wait on anything but a
/// short in-process lock:
///
/// - `name` and `id_of` are pure: an id is computed from the namespace, the sequence and the
///   incarnation the engine fixed when it opened the log.
/// - `stats` is served from figures the engine keeps in memory and updates as it writes
///   (an engine over the network keeps them from its own appends, and brings them up to
///   date from its server when [`refresh_stats`](EventLog::refresh_stats) is awaited first:
///   no engine does work per idle namespace by itself).
pub trait EventLog: Send + Sync + 'static {
    /// The namespace.
    fn name(&self) -> &str;

    /// Appends events atomically (all or none survive a crash); resolves once they are
    /// durable under the fsync policy, with one receipt per event in order. Events whose
    /// dedup id was seen within the window are not stored: their receipt is the original's,
    /// marked duplicate.
    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Vec<Receipt>, StorageError>>;

    /// A reader positioned at `start`.
    fn reader(&self, start: Start) -> BoxFuture<'_, Result<Box<dyn LogReader>, StorageError>>;

    /// Resolves an event id.
    fn lookup_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, IdLookup>;

    /// The sequence of an event this log handed out, whether or not retention has removed it
    /// since (`None`: not one of its ids). What an ack needs; an engine whose
    /// [`lookup_id`](EventLog::lookup_id) asks a server answers it from what it knows.
    fn sequence_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            match self.lookup_id(id).await {
                IdLookup::Found(s) | IdLookup::Deleted { sequence: s, .. } => Some(s),
                IdLookup::Unknown => None,
            }
        })
    }

    /// The id the event at `sequence` has (or will have); sequence 0 names the position
    /// before the first event. Used for cursors. Pure: never waits.
    fn id_of(&self, sequence: u64) -> String;

    /// The receipt of the event stored with this dedup id, if within the window.
    fn lookup_msg_id<'a>(&'a self, msg_id: &'a str) -> BoxFuture<'a, Option<Receipt>>;

    /// Applies retention now (it also runs by itself); returns the events deleted.
    fn apply_retention(&self) -> BoxFuture<'_, Result<u64, StorageError>>;

    /// Brings the figures [`stats`](EventLog::stats) answers up to date where the engine
    /// keeps them from a server (the JetStream engine: one request, whose answer serves
    /// every caller for a short while); awaited by whoever shows figures that others may
    /// have changed (namespace info, `/metrics`). Never fails: on an error the figures stay
    /// as they were. Default: nothing to do, the figures are always current.
    fn refresh_stats(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Figures for management and metrics, from what the engine keeps in memory (never
    /// waits on I/O).
    fn stats(&self) -> LogStats;

    /// Why the log is damaged, if it is ([`LogStats::damaged`] alone: every request to the
    /// namespace asks, so an engine answers it without gathering the other figures).
    fn damaged(&self) -> Option<String> {
        self.stats().damaged
    }
}

/// A cursor reading a log forward.
pub trait LogReader: Send {
    /// The next item if one is at hand now, without waiting: for the disk engine, from the
    /// mapped or buffered segment; for an engine over the network, from what the reader has
    /// already fetched. `Ok(None)` means "nothing at hand", not "the end": [`LogReader::next`]
    /// waits (and fetches).
    fn try_next(&mut self) -> Result<Option<ReadItem>, StorageError>;

    /// The next item, waiting for it without polling; `Ok(None)` once the log is closed.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<ReadItem>, StorageError>>;

    /// The sequence of the next event this reader will return.
    fn position(&self) -> u64;
}

/// The broker's own small durable state (consumer positions and such): a key-value map
/// whose writes resolve once durable, group-committed like appends. Every call may wait.
pub trait StateStore: Send + Sync + 'static {
    /// The value of `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StorageError>>;
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, StorageError>>;
    /// Sets `key`; resolves once durable.
    fn put(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), StorageError>>;
    /// Removes `key`; resolves once durable.
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StorageError>>;
    /// Why state writes are refused, if they are (after a storage failure; the engine
    /// probes and heals by itself). From memory: never waits.
    fn read_only(&self) -> Option<String> {
        None
    }
}

/// A namespace the engine set aside at open because its log is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedNamespace {
    /// Where the damage is.
    pub corruption: Corruption,
    /// What requests touching the namespace are answered: the damage and the repair command
    /// (the [`StorageError::Damaged`] message).
    pub message: String,
}

/// What opening the engine found besides each namespace's own [`OpenReport`]: the namespaces
/// set aside, and the tails recovery cut (namespaces and the state log together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Namespaces whose log is damaged, by name: never opened, never written, every request
    /// for them refused until they are repaired and the broker restarted.
    pub damaged: std::collections::BTreeMap<String, DamagedNamespace>,
    /// Torn tails cut at open.
    pub tail_cuts: u64,
    /// Bytes those cuts removed.
    pub tail_cut_bytes: u64,
}

/// A storage engine: namespaces and broker state.
///
/// The broker opens every existing namespace once at start ([`Storage::namespaces`], then
/// [`Storage::namespace`]) and keeps the logs in its namespace registry; every later
/// creation goes through that registry, which is how its view stays coherent.
pub trait Storage: Send + Sync + 'static {
    /// The log of namespace `name`; created when `create` is set, `Ok(None)` when it does
    /// not exist and `create` is not set.
    fn namespace<'a>(
        &'a self,
        name: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn EventLog>>, StorageError>>;

    /// Names of the existing namespaces, sorted (not those set aside as damaged: see
    /// [`Storage::recovery`]).
    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>>;

    /// What opening found: damaged namespaces set aside, torn tails cut. From memory: never
    /// waits. An engine with nothing to recover answers the default.
    fn recovery(&self) -> Recovery {
        Recovery::default()
    }

    /// The broker's durable state (a handle: never waits).
    fn state(&self) -> Arc<dyn StateStore>;

    /// Durable consumers the engine keeps itself, when it has them (JetStream); `None` (the
    /// default) leaves every consumer to the broker's own delivery engine.
    fn server_consumers(&self) -> Option<Arc<dyn ServerConsumers>> {
        None
    }

    /// Finishes queued appends, syncs and closes everything.
    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>>;
}

/// Checks a namespace name: one subject token (ASCII letters, digits, `_ - : @ + =`), at
/// most 255 bytes. It is also a directory name, so it can hold no `/`, `\` or `.`.
pub fn check_namespace(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-:@+=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidNamespace(name.to_owned()))
    }
}

pub use bus_proto::GapReason;
/// Event ids (`<namespace>-<sequence>-<incarnation>`): the wire grammar lives in
/// `bus-proto`, which clients and cursors share.
pub use bus_proto::event_id::{EventIdRef, event_id, parse_event_id};

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_single_tokens() {
        for ok in ["user", "rpc", "_bus_", "a-b:c@d+e=f_9"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "a/b", "..", "a b", "*", ">", "é"] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }
}
