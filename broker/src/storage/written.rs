//! [`Written`]: a group the writer has written, on its way to readers and appenders.
//!
//! Under `interval` and `never` the writer settles a group itself right after its write;
//! under `always` it hands the group to the [`Syncer`](super::syncer::Syncer), which settles
//! it after a sync that started after the write. Settling is [`Written::publish_then`] (visible to
//! readers, appenders answered with their sequences) or [`Written::fail`] (appenders told why,
//! dedup ids forgotten).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::StorageError;
use super::answers::{Answers, Done};
use super::io::DataFile;
use super::shared::Shared;

/// Where a written group ends, and how much it wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupEnd {
    /// Encoded bytes written (0 for a group of duplicates only, which writes nothing).
    pub bytes: u64,
    /// End of the segment's written bytes after this group.
    pub end: u64,
    /// One past its newest sequence.
    pub next_seq: u64,
    /// Its newest time.
    pub last_time: u64,
}

/// A written group that waits to be made visible and answered: at once under `interval`
/// and `never`, after a sync that started after its write under `always`.
pub(crate) struct Written {
    /// The segment it was written to, which a sync must cover.
    file: Arc<dyn DataFile>,
    /// That segment's path, for errors.
    path: Arc<Path>,
    /// Where it ends and what it wrote.
    at: GroupEnd,
    /// Offsets of its records in the segment.
    offsets: Vec<u32>,
    /// Times of its records.
    times: Vec<u64>,
    /// Its requests, in order.
    done: Vec<Done>,
    /// Dedup ids it inserted, removed again if it fails.
    inserted: Vec<String>,
}

impl Written {
    /// A group written to `file` (or, with `at.bytes` 0, not written: failed or duplicates
    /// only), with its records' offsets and times and the requests it answers.
    pub(crate) fn new(
        file: Arc<dyn DataFile>,
        path: Arc<Path>,
        at: GroupEnd,
        offsets: Vec<u32>,
        times: Vec<u64>,
        done: Vec<Done>,
        inserted: Vec<String>,
    ) -> Written {
        Written {
            file,
            path,
            at,
            offsets,
            times,
            done,
            inserted,
        }
    }

    /// Whether the group wrote bytes, which a sync must cover.
    pub(crate) fn wrote(&self) -> bool {
        self.at.bytes > 0
    }

    /// `fdatasync`s the segment the group was written to.
    pub(crate) fn sync(&self, shared: &Shared) -> Result<(), StorageError> {
        shared.sync_file(&*self.file, &self.path)
    }

    /// Makes the groups (consecutive, oldest first) visible to readers and answers their
    /// appenders, running `before_answers` once the groups are visible and before their
    /// appenders are answered (retention by size: an appender that has its
    /// receipt finds retention done for the log its events made). With `here` (a step run
    /// on an appender's thread) the answers are sent on this thread ([`Answers::send_here`]).
    pub(crate) fn publish_then(
        shared: &Shared,
        groups: Vec<Written>,
        here: bool,
        before_answers: impl FnOnce(),
    ) {
        let Some(last) = groups.last() else { return };
        let GroupEnd {
            end,
            next_seq,
            last_time,
            ..
        } = last.at;
        let (mut events, mut bytes, mut writes) = (0, 0, 0);
        for g in &groups {
            events += g.offsets.len() as u64;
            bytes += g.at.bytes;
            writes += u64::from(g.wrote());
        }
        shared.show(
            groups
                .iter()
                .map(|g| (g.offsets.as_slice(), g.times.as_slice())),
            end,
            next_seq,
            last_time,
        );
        let m = shared.metrics();
        m.appended.fetch_add(events, Ordering::Relaxed);
        m.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
        m.groups.fetch_add(writes, Ordering::Relaxed);
        if events > 0 {
            shared.notify_tail(next_seq - 1);
        }
        before_answers();
        let done = groups.into_iter().flat_map(|g| g.done).collect();
        if here {
            Answers::send_here(done);
        } else {
            Answers::send(done);
        }
    }

    /// Fails every request of the groups and forgets the dedup ids they inserted.
    pub(crate) fn fail(shared: &Shared, err: &StorageError, groups: Vec<Written>) {
        {
            let mut dedup = shared.dedup();
            for m in groups.iter().flat_map(|g| &g.inserted) {
                dedup.remove(m);
            }
        }
        for d in groups.into_iter().flat_map(|g| g.done) {
            let _ = d.tx.send(Err(answer_error(shared, err)));
        }
    }
}

/// What the appenders of a failed group are told: disk full and closed as such, any other
/// failure as the namespace being read-only because of it.
fn answer_error(shared: &Shared, err: &StorageError) -> StorageError {
    match err {
        StorageError::DiskFull { path } => StorageError::DiskFull { path: path.clone() },
        StorageError::Closed => StorageError::Closed,
        StorageError::ReadOnly { namespace, cause } => StorageError::ReadOnly {
            namespace: namespace.clone(),
            cause: cause.clone(),
        },
        _ => StorageError::ReadOnly {
            namespace: shared.name().to_owned(),
            cause: err.to_string(),
        },
    }
}
