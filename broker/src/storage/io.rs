//! The file operations the log's writer uses, behind a trait so that tests can inject
//! failures and simulate a power loss.
//!
//! [`StdFs`] is the real file system. With the `test-util` feature, `SimFs` (in
//! `sim_fs.rs`) wraps it for tests: power loss, injected write and sync failures, a lying
//! disk, syncs held in flight.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

#[cfg(feature = "test-util")]
pub use super::sim_fs::{FaultOp, SimFs};

/// One open data file.
pub trait DataFile: Send + Sync + std::fmt::Debug {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads into `buf` from `offset`; returns the bytes read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Opens data files and syncs directories.
pub trait FileSystem: Send + Sync + std::fmt::Debug + 'static {
    /// Creates `path` (truncating any file there) for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn DataFile>>;
    /// Opens the existing file at `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>>;
    /// Makes a directory's entries durable (`fsync` on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// What names the running boot of the machine (Linux's
    /// `/proc/sys/kernel/random/boot_id`), or `None` where nothing does. Writes that returned
    /// survive a process crash in the page cache, but not a power cut, which always means a
    /// new boot: so a file written in this boot holds what was written to it.
    fn boot_id(&self) -> Option<[u8; 16]> {
        boot_id()
    }
}

/// This boot's id, read once (see [`FileSystem::boot_id`]).
pub fn boot_id() -> Option<[u8; 16]> {
    static BOOT_ID: std::sync::OnceLock<Option<[u8; 16]>> = std::sync::OnceLock::new();
    *BOOT_ID.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = uuid::Uuid::parse_str(text.trim()).ok()?;
        Some(id.into_bytes()).filter(|b| b != &[0; 16])
    })
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl DataFile for StdFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for StdFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}
