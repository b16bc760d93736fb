//! [`SimFs`]: a file system for tests (`test-util` feature), real files plus power-loss
//! simulation and fault injection.
//!
//! It remembers how much of each file was covered by the last `fdatasync`, so
//! [`SimFs::power_loss`] can throw away everything written after it (a `SIGKILL` cannot: the
//! page cache survives it), and it can make a chosen write or sync fail, or lie about
//! syncing (to show that a test would catch an acknowledgement given before the data was
//! durable). It can also hold syncs in flight, so that a test can have the writer write more
//! while a sync has not returned.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::io::{DataFile, FileSystem, StdFs};

/// How long a [`SimFs`] wait blocks before it panics (so that a bug fails a test instead of
/// hanging it).
const SIM_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Which operation a [`SimFs`] fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// `write_all_at`.
    Write,
    /// `sync_data`.
    Sync,
}

#[derive(Debug, Default)]
struct SimState {
    /// Length of each file covered by its last sync.
    synced: HashMap<PathBuf, u64>,
    /// Armed faults: (operation, calls to let through first, error kind).
    faults: Vec<(FaultOp, u64, io::ErrorKind)>,
    /// While set, syncs wait before they start.
    hold_syncs: bool,
    /// Syncs waiting on `hold_syncs`.
    held_syncs: u64,
    /// `write_all_at` calls that returned (either way).
    writes: u64,
    /// `sync_data` calls, held, failed or not.
    sync_calls: u64,
    /// Power losses so far: each is a new boot ([`FileSystem::boot_id`]).
    boots: u64,
}

/// A file system for tests: real files, plus power-loss simulation and fault injection.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
    /// When set, `sync_data` does nothing but report success (a lying disk).
    skip_sync: Arc<std::sync::atomic::AtomicBool>,
    /// Successful syncs so far.
    syncs: Arc<AtomicU64>,
    /// Signalled whenever `state` changes in a way a test may wait for.
    changed: Arc<Condvar>,
}

impl SimFs {
    /// A simulator with no faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the operation fail with `kind` after `after` more successful calls.
    pub fn fail(&self, op: FaultOp, after: u64, kind: io::ErrorKind) {
        self.lock().faults.push((op, after, kind));
    }

    /// Disarms every fault: the disk works again (space was freed, the device came back).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Makes every sync a no-op that claims success.
    pub fn skip_syncs(&self, skip: bool) {
        self.skip_sync.store(skip, Ordering::SeqCst);
    }

    /// Successful syncs so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// `sync_data` calls so far, including held and failed ones.
    pub fn sync_calls(&self) -> u64 {
        self.lock().sync_calls
    }

    /// `write_all_at` calls that returned so far, including failed ones.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// While `hold` is set, every `sync_data` waits before it starts (before an armed fault
    /// hits it) until it is cleared.
    pub fn hold_syncs(&self, hold: bool) {
        self.lock().hold_syncs = hold;
        self.changed.notify_all();
    }

    /// Blocks until a sync waits on [`SimFs::hold_syncs`]. Panics after 10 s.
    pub fn wait_for_held_sync(&self) {
        self.wait_until("a held sync", |st| st.held_syncs > 0);
    }

    /// Blocks until `n` syncs wait on [`SimFs::hold_syncs`] at once. Panics after 10 s.
    pub fn wait_for_held_syncs(&self, n: u64) {
        self.wait_until("held syncs", |st| st.held_syncs >= n);
    }

    /// Blocks until `n` writes have returned in all. Panics after 10 s.
    pub fn wait_for_writes(&self, n: u64) {
        self.wait_until("writes", |st| st.writes >= n);
    }

    fn wait_until(&self, what: &str, done: impl Fn(&SimState) -> bool) {
        let deadline = Instant::now() + SIM_WAIT_LIMIT;
        let mut st = self.lock();
        while !done(&st) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("SimFs: waited too long for {what}"));
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Throws away everything written to each file after its last sync, as a power loss
    /// would, and starts a new boot. Call it after the log using this file system has
    /// stopped.
    pub fn power_loss(&self) -> io::Result<()> {
        self.reboot();
        let st = self.lock();
        for (path, &len) in &st.synced {
            match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(f) if f.metadata()?.len() > len => f.set_len(len)?,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Starts a new boot ([`FileSystem::boot_id`] changes) and loses nothing: a power cut
    /// after the kernel wrote back what a test left in the files.
    pub fn reboot(&self) {
        self.lock().boots += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic while holding this lock can only come from a test's own assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, op: FaultOp) -> io::Result<()> {
        let mut st = self.lock();
        for fault in st.faults.iter_mut().filter(|f| f.0 == op) {
            if fault.1 == 0 {
                return Err(io::Error::new(fault.2, "injected fault"));
            }
            fault.1 -= 1;
        }
        Ok(())
    }

    fn wrap(&self, path: &Path, file: Arc<dyn DataFile>, synced: u64) -> Arc<dyn DataFile> {
        self.lock().synced.insert(path.to_owned(), synced);
        Arc::new(SimFile {
            fs: self.clone(),
            path: path.to_owned(),
            inner: file,
        })
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    path: PathBuf,
    inner: Arc<dyn DataFile>,
}

impl DataFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let res = self
            .fs
            .check(FaultOp::Write)
            .and_then(|()| self.inner.write_all_at(buf, offset));
        self.fs.lock().writes += 1;
        self.fs.changed.notify_all();
        res
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        {
            let mut st = self.fs.lock();
            st.sync_calls += 1;
            if st.hold_syncs {
                st.held_syncs += 1;
                self.fs.changed.notify_all();
                while st.hold_syncs {
                    st = self.fs.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.held_syncs -= 1;
            }
        }
        self.fs.check(FaultOp::Sync)?;
        if self.fs.skip_sync.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        self.fs.lock().synced.insert(self.path.clone(), len);
        self.fs.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        let mut st = self.fs.lock();
        let synced = st.synced.entry(self.path.clone()).or_insert(len);
        *synced = (*synced).min(len);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl FileSystem for SimFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        let f = StdFs.create(path)?;
        Ok(self.wrap(path, f, 0))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        let f = StdFs.open(path)?;
        // What was on disk before this run counts as synced.
        let len = f.len()?;
        Ok(self.wrap(path, f, len))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFs.sync_dir(path)
    }
    /// The real boot's id, changed by each [`SimFs::power_loss`].
    fn boot_id(&self) -> Option<[u8; 16]> {
        let mut id = super::io::boot_id().unwrap_or([1; 16]);
        let boots = self.lock().boots.to_le_bytes();
        for (b, x) in id.iter_mut().zip(boots) {
            *b ^= x;
        }
        Some(id)
    }
}
