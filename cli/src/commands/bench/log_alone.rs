//! `bus bench pub --log-alone`: the same appends the publish run sent over HTTP, made
//! directly on the disk engine in this process, and the disk's own `fdatasync` rate, so
//! that a run reports bus as a ratio of what its storage alone does on this machine.
//!
//! The log alone runs on a fresh temporary data directory (under the system's temporary
//! folder, like `--embedded`), with the fsync policy of the run, on a runtime with as many
//! workers as the embedded broker has, with one appending task per connection, each
//! appending `--batch` events of `--size` bytes per call and awaiting its receipt before
//! the next (the closed loop of the HTTP run). It stops at the run's count or duration, and
//! at `--max-time`.
//!
//! The disk's rate is a plain loop of 4 KiB writes at the end of a file, each followed by
//! `fdatasync`, for [`DISK_WINDOW`]: what one sync costs, the yardstick of group commit.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus_broker::storage::{DiskStorage, FsyncPolicy, NewEvent, Storage, StorageOptions};
use bytes::Bytes;

use super::args::Load;
use crate::error::CliError;

/// How long the disk's `fdatasync` rate is measured.
pub const DISK_WINDOW: Duration = Duration::from_secs(2);
/// Bytes written before each `fdatasync` of the disk loop.
const DISK_WRITE_BYTES: usize = 4096;
/// The namespace the log alone appends to.
const NAMESPACE: &str = "logalone";

/// What the log alone did.
#[derive(Debug, Clone, Copy)]
pub struct LogAlone {
    /// Events acknowledged.
    pub events: u64,
    /// Events acknowledged per second.
    pub events_per_s: f64,
    /// Events per `fdatasync` the log made (0 when it made none).
    pub events_per_sync: f64,
}

/// Appends as `load` says under `fsync` until its count, its duration or `deadline`.
pub fn run(fsync: FsyncPolicy, load: &Load, deadline: Instant) -> Result<LogAlone, CliError> {
    let dir = tempfile::Builder::new()
        .prefix("bus-bench-log-")
        .tempdir()
        .map_err(|e| CliError::with_cause("cannot create a temporary directory", e))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-log")
        .enable_all()
        .build()
        .map_err(|e| CliError::with_cause("cannot start the log's runtime", e))?;
    let mut options = StorageOptions::new(dir.path());
    options.defaults.fsync = fsync;
    let (storage, _) = DiskStorage::open(options)
        .map_err(|e| CliError::with_cause("cannot open the log's data directory", e))?;
    let result = runtime.block_on(append_all(&storage, load, deadline));
    let closed = runtime.block_on(storage.close());
    let result = result?;
    closed.map_err(|e| CliError::with_cause("closing the log", e))?;
    Ok(result)
}

async fn append_all(
    storage: &DiskStorage,
    load: &Load,
    deadline: Instant,
) -> Result<LogAlone, CliError> {
    let log = storage
        .namespace(NAMESPACE, true)
        .await
        .map_err(|e| CliError::with_cause("cannot create the log", e))?
        .ok_or_else(|| CliError::msg("the log was not created"))?;
    let payload = Bytes::from(vec![b'x'; load.size as usize]);
    let subject = format!("{NAMESPACE}.pub");
    // The next call to make, taken one at a time by the appenders; call `j` appends what
    // request `j` of the HTTP run published (the last batch of a count may be short).
    let total = load.events();
    let calls = total.div_ceil(load.batch);
    let next = Arc::new(AtomicU64::new(0));
    let stop_at = load
        .duration
        .map_or(deadline, |d| (Instant::now() + d).min(deadline));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let (log, next, payload, subject) =
            (log.clone(), next.clone(), payload.clone(), subject.clone());
        let batch = load.batch;
        tasks.push(tokio::spawn(async move {
            let mut appended = 0u64;
            while Instant::now() < stop_at {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= calls {
                    break;
                }
                let n = batch.min(total - j * batch);
                let events = (0..n)
                    .map(|_| NewEvent {
                        content_type: (batch == 1).then(|| "application/octet-stream".into()),
                        ..NewEvent::new(subject.clone(), payload.clone())
                    })
                    .collect();
                appended += log.append(events).await?.len() as u64;
            }
            Ok::<u64, bus_broker::storage::StorageError>(appended)
        }));
    }
    let mut events = 0u64;
    for task in tasks {
        let appended = task
            .await
            .map_err(|e| CliError::msg(format!("an appending task failed: {e}")))?
            .map_err(|e| CliError::with_cause("appending to the log", e))?;
        events += appended;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let stats = log.stats();
    Ok(LogAlone {
        events,
        events_per_s: events as f64 / elapsed,
        events_per_sync: if stats.syncs > 0 {
            stats.appended as f64 / stats.syncs as f64
        } else {
            0.0
        },
    })
}

/// The disk's `fdatasync` rate (syncs per second) in the system's temporary folder.
pub fn disk_syncs_per_s() -> Result<f64, CliError> {
    let mut file = tempfile::tempfile()
        .map_err(|e| CliError::with_cause("cannot create a temporary file", e))?;
    let block = [0u8; DISK_WRITE_BYTES];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < DISK_WINDOW {
        file.write_all(&block)
            .and_then(|()| file.sync_data())
            .map_err(|e| CliError::with_cause("writing the disk probe file", e))?;
        syncs += 1;
    }
    Ok(syncs as f64 / started.elapsed().as_secs_f64())
}
