//! [`OpenFiles`]: the bound on data files the disk engine keeps open at once, so that 10,000
//! idle namespaces do not hold 10,000 descriptors.
//!
//! **How.** Every log opens its segment files through [`BoundedFs`], whose files
//! ([`ReopeningFile`]) hold their descriptor only while they are used: past the bound
//! ([`max_open_files`], default [`DEFAULT_MAX_OPEN_FILES`]), opening one more closes the
//! least recently used idle one (a CLOCK sweep: each use marks a file, the sweep clears marks
//! and closes the first unmarked file it finds), and that file reopens by its path at its
//! next use. An operation in flight keeps its descriptor until it returns.
//!
//! **Never closed: a file with writes not yet synced.** Closing the descriptor would lose a
//! write-back error the next `fdatasync` must report (PostgreSQL's "fsyncgate"), so a file
//! written since its last successful sync, or whose sync failed, stays open. Under
//! `fsync = always` and `interval` every idle file is synced; under `never` an idle active
//! segment stays open until a roll or a clean close syncs it. Files in use and files not yet
//! synced may take the count past the bound (at most by the namespaces written since their
//! last sync): it is a target, not a refusal; each sync that returns closes idle files until
//! the count is back under it.
//!
//! **Not counted.** Sealed segments are memory-mapped and their descriptor closed once
//! mapped (a map counts against `vm.max_map_count`, not `RLIMIT_NOFILE`); the directory
//! lock, checkpoints and index files are opened and closed on the spot.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::io::{DataFile, FileSystem};
use crate::sync::lock;

/// Default bound on data files open at once.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1_024;

/// The process's open data files.
static OPEN_FILES: OpenFiles = OpenFiles {
    max: AtomicUsize::new(DEFAULT_MAX_OPEN_FILES),
    open: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    closed: AtomicU64::new(0),
    live: AtomicUsize::new(0),
    ring: Mutex::new(Ring {
        files: Vec::new(),
        hand: 0,
    }),
};

/// Sets the bound on data files open at once for the whole process (at least 1).
pub fn set_max_open_files(max: usize) {
    OPEN_FILES.max.store(max.max(1), Ordering::Relaxed);
}

/// The bound on data files open at once.
pub fn max_open_files() -> usize {
    OPEN_FILES.max.load(Ordering::Relaxed)
}

/// Figures of the open data files, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileStats {
    /// Data files open now.
    pub open: usize,
    /// The most open at once.
    pub peak: usize,
    /// Times an idle file was closed to stay within the bound.
    pub closed: u64,
}

/// Figures of the open data files.
pub fn open_file_stats() -> OpenFileStats {
    OpenFileStats {
        open: OPEN_FILES.open.load(Ordering::Relaxed),
        peak: OPEN_FILES.peak.load(Ordering::Relaxed),
        closed: OPEN_FILES.closed.load(Ordering::Relaxed),
    }
}

/// Every [`ReopeningFile`] alive, in CLOCK order.
struct Ring {
    /// The files (entries of dropped ones are pruned as the ring grows).
    files: Vec<Weak<ReopeningFile>>,
    /// Where the sweep goes on.
    hand: usize,
}

/// The count and the ring of open data files (see the module docs).
pub(crate) struct OpenFiles {
    /// The bound.
    max: AtomicUsize,
    /// Descriptors held now.
    open: AtomicUsize,
    /// The most held at once.
    peak: AtomicUsize,
    /// Idle files closed to stay within the bound.
    closed: AtomicU64,
    /// Files alive (open or not).
    live: AtomicUsize,
    /// The files, for the sweep.
    ring: Mutex<Ring>,
}

impl OpenFiles {
    fn opened(&self) {
        let n = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(n, Ordering::Relaxed);
    }

    fn register(&self, file: &Arc<ReopeningFile>) {
        self.live.fetch_add(1, Ordering::Relaxed);
        let mut ring = lock(&self.ring);
        if ring.files.len() > 2 * self.live.load(Ordering::Relaxed) + 64 {
            ring.files.retain(|w| w.strong_count() > 0);
            ring.hand = 0;
        }
        ring.files.push(Arc::downgrade(file));
    }

    /// Closes idle files, least recently used first, until the count is under the bound or
    /// two rounds found nothing more to close.
    fn make_room(&self) {
        let max = self.max.load(Ordering::Relaxed);
        if self.open.load(Ordering::Relaxed) < max {
            return;
        }
        let mut ring = lock(&self.ring);
        let len = ring.files.len();
        for _ in 0..2 * len {
            if self.open.load(Ordering::Relaxed) < max || ring.files.is_empty() {
                return;
            }
            if ring.hand >= ring.files.len() {
                ring.hand = 0;
            }
            let i = ring.hand;
            ring.hand += 1;
            let Some(f) = ring.files[i].upgrade() else {
                continue;
            };
            if f.used.swap(false, Ordering::Relaxed) {
                continue;
            }
            f.close_if_idle();
        }
    }
}

/// A [`FileSystem`] whose data files count against the process's bound (see the module
/// docs); directories are synced through the inner one.
#[derive(Debug)]
pub(crate) struct BoundedFs {
    /// Where files are really opened.
    inner: Arc<dyn FileSystem>,
}

impl BoundedFs {
    /// `inner`, with its data files bounded.
    pub(crate) fn new(inner: Arc<dyn FileSystem>) -> BoundedFs {
        BoundedFs { inner }
    }

    fn wrap(&self, path: &Path, file: Arc<dyn DataFile>) -> Arc<ReopeningFile> {
        OPEN_FILES.opened();
        let f = Arc::new(ReopeningFile {
            fs: self.inner.clone(),
            path: path.to_owned(),
            file: Mutex::new(Some(file)),
            used: AtomicBool::new(true),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            sync_failed: AtomicBool::new(false),
        });
        OPEN_FILES.register(&f);
        OPEN_FILES.make_room();
        f
    }
}

impl FileSystem for BoundedFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        OPEN_FILES.make_room();
        let f = self.inner.create(path)?;
        Ok(self.wrap(path, f))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        OPEN_FILES.make_room();
        let f = self.inner.open(path)?;
        Ok(self.wrap(path, f))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn boot_id(&self) -> Option<[u8; 16]> {
        self.inner.boot_id()
    }
}

/// A data file that holds its descriptor only while used: closed by the sweep when idle and
/// clean, reopened by path at its next use.
#[derive(Debug)]
pub(crate) struct ReopeningFile {
    /// Where it is reopened.
    fs: Arc<dyn FileSystem>,
    /// Its path.
    path: PathBuf,
    /// The open file, while it is open.
    file: Mutex<Option<Arc<dyn DataFile>>>,
    /// Set at each use; the sweep clears it (CLOCK's reference bit).
    used: AtomicBool,
    /// Writes (and truncations) so far.
    writes: AtomicU64,
    /// Writes covered by the last successful sync.
    synced: AtomicU64,
    /// Set once a sync failed: the file is never closed again.
    sync_failed: AtomicBool,
}

impl ReopeningFile {
    /// The open file, reopened if the sweep closed it.
    fn get(&self) -> io::Result<Arc<dyn DataFile>> {
        let mut slot = lock(&self.file);
        self.open_in(&mut slot)
    }

    fn open_in(&self, slot: &mut Option<Arc<dyn DataFile>>) -> io::Result<Arc<dyn DataFile>> {
        self.used.store(true, Ordering::Relaxed);
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        // Room is made before opening; the slot's own lock is held, so the sweep skips
        // this file.
        OPEN_FILES.make_room();
        let f = self.fs.open(&self.path)?;
        OPEN_FILES.opened();
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Whether the descriptor is held now.
    #[cfg(test)]
    fn is_open(&self) -> bool {
        lock(&self.file).is_some()
    }

    /// Closes the descriptor unless the file is in use or has writes not yet synced.
    fn close_if_idle(&self) {
        if self.sync_failed.load(Ordering::Acquire)
            || self.synced.load(Ordering::Acquire) != self.writes.load(Ordering::Acquire)
        {
            return;
        }
        let Ok(mut slot) = self.file.try_lock() else {
            return;
        };
        // Checked again under the lock: a write takes the lock before it counts.
        if self.synced.load(Ordering::Acquire) != self.writes.load(Ordering::Acquire) {
            return;
        }
        if slot.take().is_some() {
            OPEN_FILES.open.fetch_sub(1, Ordering::Relaxed);
            OPEN_FILES.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a write before it is issued, under the slot's lock (so the sweep cannot close
    /// the file between the count and the write).
    fn get_for_write(&self) -> io::Result<Arc<dyn DataFile>> {
        let mut slot = lock(&self.file);
        let f = self.open_in(&mut slot)?;
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(f)
    }
}

impl Drop for ReopeningFile {
    fn drop(&mut self) {
        OPEN_FILES.live.fetch_sub(1, Ordering::Relaxed);
        if lock(&self.file).take().is_some() {
            OPEN_FILES.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl DataFile for ReopeningFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.get_for_write()?.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.get()?.read_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        // Covers the writes issued before the sync starts.
        let writes = self.writes.load(Ordering::Acquire);
        let f = self.get()?;
        match f.sync_data() {
            Ok(()) => {
                self.synced.fetch_max(writes, Ordering::AcqRel);
                drop(f);
                // Synced files may be closed now: a burst of writes that took the count past
                // the bound comes back under it as its syncs return.
                OPEN_FILES.make_room();
                Ok(())
            }
            Err(e) => {
                self.sync_failed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.get_for_write()?.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.get()?.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::StdFs;

    #[test]
    fn idle_synced_files_close_past_the_bound_and_reopen_and_unsynced_ones_stay_open() {
        let dir = tempfile::tempdir().unwrap();
        let fs = BoundedFs::new(Arc::new(StdFs));
        let max = max_open_files();
        let new = |name: String, sync: bool| {
            let path = dir.path().join(name);
            let f = fs.wrap(&path, StdFs.create(&path).unwrap());
            f.write_all_at(b"x", 0).unwrap();
            if sync {
                f.sync_data().unwrap();
            }
            f
        };
        let dirty = new("dirty".into(), false);
        let files: Vec<_> = (0..max + 8).map(|i| new(format!("{i}"), true)).collect();
        // Ours alone stay within the bound (other tests' files count too, so fewer may be).
        let open = files.iter().filter(|f| f.is_open()).count();
        assert!(open < max, "{open} of ours open, bound {max}");
        // Written and never synced: kept open whatever the pressure.
        assert!(dirty.is_open());
        // A closed file reopens at its next use, contents intact.
        let closed = files.iter().find(|f| !f.is_open()).expect("one was closed");
        let mut b = [0u8; 1];
        assert_eq!(closed.read_at(&mut b, 0).unwrap(), 1);
        assert_eq!(&b, b"x");
        assert!(closed.is_open());
        assert!(open_file_stats().closed >= 8);
    }
}
