//! [`Log`]: the handle on one namespace's durable log, and its [`EventLog`] implementation.
//!
//! The disk engine's parts, each in its file, from the bottom up: [`Shared`](super::shared)
//! is the state they share; the [`Writer`](super::writer) thread writes groups, the
//! [`Syncer`](super::syncer) makes them durable under `always`, and both settle them as
//! [`Written`](super::written) groups; [`retention`](super::retention) deletes old
//! segments; [`open`](super::open) recovers a log and starts its writer; the
//! [`Reader`] reads it. This handle ties them together: appends are checked here, on the
//! appender's task, then queued for the writer; closing stops the writer cleanly, dropping
//! it stops the writer as a crash would. The writer and syncer are jobs on the shared
//! [`pool`](super::pool): a log owns no thread.
//!
//! **Visibility.** Readers see only records that are durable under the policy: under
//! `always` after their sync, under `interval` and `never` after their write.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use super::config::LogConfig;
use super::io::FileSystem;
use super::open::{self, OpenReport, Opened};
use super::reader::Reader;
use super::record;
use super::retention;
use super::shared::{Queued, Request, Shared, Stop};
use super::stats::LogStats;
use super::writer::WriterJob;
use super::{
    EventLog, IdLookup, LogReader, NewEvent, Receipt, Start, StorageError, event_id, now_ns,
};

/// Largest batch, in encoded bytes (record offsets within a segment are 32-bit).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024 * 1024;

/// Checks a batch for namespace `namespace` before anything of it is stored, as every engine
/// does: not empty, each payload within `max_payload_bytes` and each event within the record
/// limits, all of it within [`MAX_BATCH_BYTES`] encoded. Returns the encoded size.
pub(crate) fn check_batch(
    events: &[NewEvent],
    namespace: &str,
    max_payload_bytes: usize,
) -> Result<usize, StorageError> {
    if events.is_empty() {
        return Err(StorageError::InvalidEvent("empty batch".into()));
    }
    // An id is the namespace and at most 30 more bytes (`-<sequence>-<incarnation>`).
    let id_len = namespace.len() + 30;
    let mut bytes = 0usize;
    for e in events {
        if e.payload.len() > max_payload_bytes {
            return Err(StorageError::PayloadTooLarge {
                size: e.payload.len(),
                limit: max_payload_bytes,
            });
        }
        record::check_limits(e).map_err(StorageError::InvalidEvent)?;
        bytes += record::encoded_len(e, id_len);
    }
    if bytes > MAX_BATCH_BYTES {
        return Err(StorageError::InvalidEvent(format!(
            "batch of {bytes} bytes exceeds {MAX_BATCH_BYTES}"
        )));
    }
    Ok(bytes)
}

/// The group an append leads (see [`Shared::enqueue`]), ended when the append goes on or,
/// if it is dropped before, when it is dropped: what joined the group is never left unwritten.
struct Lead<'a>(Option<&'a Shared>);

impl Lead<'_> {
    /// Ends the group, writing it on this thread if the writer agrees.
    fn end(mut self) {
        if let Some(shared) = self.0.take() {
            shared.end_lead(true);
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.end_lead(false);
        }
    }
}

/// One namespace's log. Dropping it without [`Log::close`] stops the writer as a crash
/// would (queued appends fail, no clean checkpoint is written).
pub struct Log {
    /// What the writer, the syncer and the readers share.
    shared: Arc<Shared>,
    /// The writer job, which finishes when the log is closed or halted.
    writer: Arc<WriterJob>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("namespace", &self.shared.name())
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log of namespace `name` in directory `dir`, recovering
    /// the active segment. Reads no sealed segment after a clean close.
    pub fn open(
        dir: &Path,
        name: &str,
        config: LogConfig,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(Log, OpenReport), StorageError> {
        let Opened {
            shared,
            writer,
            report,
        } = open::open(dir, name, config, fs)?;
        Ok((Log { shared, writer }, report))
    }

    /// The number of heals so far, changing at each one (see "Healing" above).
    pub fn heals(&self) -> watch::Receiver<u64> {
        self.shared.heals()
    }

    /// Asks a read-only log to probe its disk now (space was just freed) rather than at its
    /// next [`PROBE_INTERVAL`](super::writer::PROBE_INTERVAL). The receiver's value grows by one at every heal.
    /// Returns the receiver with the heal count as it was before the probe was asked for.
    pub fn probe_now(&self) -> (watch::Receiver<u64>, u64) {
        self.shared.request_probe()
    }

    /// Finishes queued appends, syncs, writes a clean checkpoint and stops the writer.
    /// Appends after this fail with [`StorageError::Closed`].
    pub async fn close(&self) {
        self.stop(Stop::Clean);
        self.writer.finished().await;
    }

    /// Asks the writer to finish cleanly without waiting ([`Log::close`] then waits): closing
    /// many logs asks them all first, so that they finish in parallel.
    pub fn begin_close(&self) {
        self.stop(Stop::Clean);
    }

    /// Stops the writer at once, as a crash would: queued appends fail, no clean checkpoint
    /// is written, later appends fail with [`StorageError::Closed`]. Dropping the log does
    /// the same; this is for when others still hold it (tests simulating a crash).
    pub fn halt(&self) {
        self.stop(Stop::Abort);
        self.writer.wait();
    }

    fn stop(&self, how: Stop) {
        self.shared.request_stop(how);
    }

    /// The namespace's directory.
    pub fn dir(&self) -> &Path {
        self.shared.dir()
    }

    /// The namespace's settings.
    pub fn config(&self) -> &LogConfig {
        self.shared.config()
    }

    /// Deletes the sealed segments that hold only sequences below `floor` (used by the state
    /// store once a snapshot has superseded them). Returns the events deleted.
    pub fn delete_before(&self, floor: u64) -> Result<u64, StorageError> {
        retention::remove_oldest(&self.shared, floor)
    }

    /// A reader positioned at `start` (the concrete type behind [`EventLog::reader`]).
    pub fn open_reader(&self, start: Start) -> Result<Reader, StorageError> {
        Reader::new(self.shared.clone(), start)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.halt();
    }
}

impl EventLog for Log {
    fn name(&self) -> &str {
        self.shared.name()
    }

    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Vec<Receipt>, StorageError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let bytes = check_batch(&events, shared.name(), shared.config().max_payload_bytes)?;
            if let Some(e) = shared.damage_error().or_else(|| shared.read_only_error()) {
                return Err(e);
            }
            let permit = shared.acquire_room(bytes).await?;
            let (tx, rx) = oneshot::channel();
            let queued = shared.enqueue(Request {
                events,
                tx,
                permit,
                runtime: tokio::runtime::Handle::try_current().ok(),
                bytes,
            })?;
            if queued == Queued::Lead {
                // The tasks ready on this thread run first; those that append queue behind
                // this one, and the writer takes them all in one step.
                let lead = Lead(Some(&shared));
                tokio::task::yield_now().await;
                lead.end();
            }
            let stamps = rx.await.map_err(|_| StorageError::Closed)??;
            // Receipts are built here, on the appender's task, not on the writer thread.
            Ok(stamps
                .into_iter()
                .map(|s| Receipt {
                    namespace: shared.name_shared().clone(),
                    incarnation: shared.incarnation(),
                    sequence: s.sequence,
                    time_ns: s.time_ns,
                    duplicate: s.duplicate,
                })
                .collect())
        })
    }

    fn reader(&self, start: Start) -> BoxFuture<'_, Result<Box<dyn LogReader>, StorageError>> {
        let reader = self
            .open_reader(start)
            .map(|r| Box::new(r) as Box<dyn LogReader>);
        Box::pin(async move { reader })
    }

    fn lookup_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, IdLookup> {
        let found = self.shared.lookup_id(id);
        Box::pin(async move { found })
    }

    fn id_of(&self, sequence: u64) -> String {
        event_id(self.shared.name(), sequence, self.shared.incarnation())
    }

    fn lookup_msg_id<'a>(&'a self, msg_id: &'a str) -> BoxFuture<'a, Option<Receipt>> {
        let entry = self.shared.dedup().get(msg_id, now_ns());
        let receipt = entry.map(|entry| Receipt {
            namespace: self.shared.name_shared().clone(),
            incarnation: self.shared.incarnation(),
            sequence: entry.sequence,
            time_ns: entry.time_ns,
            duplicate: true,
        });
        Box::pin(async move { receipt })
    }

    fn apply_retention(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        // Deleting segments is a few unlinks: done here rather than on a blocking thread.
        let deleted = retention::apply(&self.shared);
        Box::pin(async move { deleted })
    }

    fn stats(&self) -> LogStats {
        self.shared.stats()
    }

    fn damaged(&self) -> Option<String> {
        self.shared.damage_error().map(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::answers::Stamp;
    use crate::storage::config::FsyncPolicy;
    use crate::storage::io::SimFs;

    type Answer = oneshot::Receiver<Result<Vec<Stamp>, StorageError>>;

    /// Queues event `i` as [`Log::append`] does, without its waits.
    async fn queue_one(shared: &Shared, i: u64) -> (Queued, Answer) {
        let events = vec![NewEvent::new(format!("user.e{i}"), b"x".to_vec())];
        let bytes = check_batch(&events, shared.name(), shared.config().max_payload_bytes).unwrap();
        let permit = shared.acquire_room(bytes).await.unwrap();
        let (tx, rx) = oneshot::channel();
        let req = Request {
            events,
            tx,
            permit,
            runtime: None,
            bytes,
        };
        (shared.enqueue(req).unwrap(), rx)
    }

    async fn sequence(rx: Answer) -> u64 {
        rx.await.unwrap().unwrap()[0].sequence
    }

    /// Under `never`, appends that come alone stop leading groups for a while: after a group
    /// led with fewer than four appends, the next 32 notify the writer at once; the one after
    /// leads again, and one queued while it leads joins it. Decided by the queue alone,
    /// whatever the writer is doing meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn appends_that_come_alone_stop_leading_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(dir.path(), "user", config, Arc::new(SimFs::new())).unwrap();
        let shared = &log.shared;
        let (first, rx) = queue_one(shared, 1).await;
        assert_eq!(first, Queued::Lead);
        shared.end_lead(true);
        assert_eq!(sequence(rx).await, 1);
        for i in 2..=33 {
            let (queued, rx) = queue_one(shared, i).await;
            assert_eq!(queued, Queued::Notified, "append {i}");
            assert_eq!(sequence(rx).await, i);
        }
        let (again, rx) = queue_one(shared, 34).await;
        assert_eq!(again, Queued::Lead, "leads again");
        let (joined, rx2) = queue_one(shared, 35).await;
        assert_eq!(joined, Queued::Joined);
        shared.end_lead(true);
        assert_eq!((sequence(rx).await, sequence(rx2).await), (34, 35));
    }
}
