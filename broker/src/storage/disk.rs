//! [`DiskStorage`]: the data directory, its lock, and one [`Log`] per namespace.
//!
//! Layout: `<data>/<namespace>/` per namespace (segments, indexes, checkpoint),
//! `<data>/.state/` for the broker's own state (a log too), `<data>/.lock`. The lock is an
//! `flock` held for the life of the storage: a second broker on the same directory is
//! refused, and since the kernel drops it when the process dies, a restart right after
//! `kill -9` is not blocked.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

use super::io::{FileSystem, StdFs};
use super::log::Log;
use super::open::OpenReport;
use super::state::LogStateStore;
use super::{
    DamagedNamespace, EventLog, LogConfig, Recovery, StateStore, Storage, StorageError,
    check_namespace,
};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = ".lock";
/// Directory of the broker's own state in the data directory.
pub const STATE_DIR: &str = ".state";

/// How to open a data directory.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// Settings of every namespace without an override.
    pub defaults: LogConfig,
    /// Per-namespace settings (e.g. `rpc` with fsync `never`).
    pub overrides: HashMap<String, LogConfig>,
    /// The file layer (the real one unless a test injects faults).
    pub fs: Arc<dyn FileSystem>,
}

impl StorageOptions {
    /// Defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StorageOptions {
            dir: dir.into(),
            defaults: LogConfig::default(),
            overrides: HashMap::new(),
            fs: Arc::new(StdFs),
        }
    }

    /// The settings of namespace `name`.
    pub fn config_for(&self, name: &str) -> LogConfig {
        self.overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }
}

/// The disk storage engine.
pub struct DiskStorage {
    options: StorageOptions,
    /// Held for the lock it carries.
    _lock: File,
    logs: RwLock<BTreeMap<String, Arc<Log>>>,
    state: Arc<LogStateStore>,
    /// What opening found: the namespaces set aside as damaged (never opened, never
    /// created over) and the tails cut.
    recovery: Recovery,
}

impl std::fmt::Debug for DiskStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStorage")
            .field("dir", &self.options.dir)
            .finish()
    }
}

impl DiskStorage {
    /// Locks the data directory and opens every namespace in it, recovering each. The
    /// reports say what each namespace held and what recovery cut.
    pub fn open(options: StorageOptions) -> Result<(DiskStorage, Vec<OpenReport>), StorageError> {
        options.defaults.validate()?;
        for c in options.overrides.values() {
            c.validate()?;
        }
        let dir = &options.dir;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
        let lock = lock_dir(dir)?;
        // Each open namespace holds its active segment open (see `fd_limit`).
        super::fd_limit::raise_open_files();
        let mut logs = BTreeMap::new();
        let mut reports = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))? {
            let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if entry.path().is_dir() && check_namespace(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        let mut recovery = Recovery::default();
        for name in names {
            match Log::open(
                &dir.join(&name),
                &name,
                options.config_for(&name),
                options.fs.clone(),
            ) {
                Ok((log, report)) => {
                    logs.insert(name, Arc::new(log));
                    reports.push(report);
                }
                // Damage beyond a torn tail: the namespace is set aside, the others serve.
                // Its files are left as they are (recovery refused before changing them).
                Err(StorageError::Corrupt(corruption)) => {
                    let message = StorageError::Damaged {
                        namespace: name.clone(),
                        corruption: corruption.clone(),
                        data_dir: dir.clone(),
                    }
                    .to_string();
                    tracing::error!(namespace = %name, damage = %corruption, "damaged namespace set aside: every request for it is refused (503 namespace_damaged) until it is repaired");
                    recovery.damaged.insert(
                        name,
                        DamagedNamespace {
                            corruption: *corruption,
                            message,
                        },
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let (state, state_report) = LogStateStore::open(&dir.join(STATE_DIR), options.fs.clone())?;
        for t in reports
            .iter()
            .chain(std::iter::once(&state_report))
            .filter_map(|r| r.torn.as_ref())
        {
            recovery.tail_cuts += 1;
            recovery.tail_cut_bytes += t.bytes_cut;
        }
        Ok((
            DiskStorage {
                options,
                _lock: lock,
                logs: RwLock::new(logs),
                state: Arc::new(state),
                recovery,
            },
            reports,
        ))
    }

    /// The concrete log of namespace `name` (see [`Storage::namespace`]).
    /// A namespace set aside as damaged is [`StorageError::Damaged`], created or not: a new
    /// segment must never hide the damage.
    pub fn log(&self, name: &str, create: bool) -> Result<Option<Arc<Log>>, StorageError> {
        check_namespace(name)?;
        if let Some(d) = self.recovery.damaged.get(name) {
            return Err(StorageError::Damaged {
                namespace: name.to_owned(),
                corruption: Box::new(d.corruption.clone()),
                data_dir: self.options.dir.clone(),
            });
        }
        if let Some(l) = self
            .logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(Some(l.clone()));
        }
        if !create {
            return Ok(None);
        }
        // Opening under the write lock: two first publishes to a new namespace must not
        // both create it. Opening a new namespace only creates one small file.
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = logs.get(name) {
            return Ok(Some(l.clone()));
        }
        let dir = self.options.dir.join(name);
        let (log, _) = Log::open(
            &dir,
            name,
            self.options.config_for(name),
            self.options.fs.clone(),
        )?;
        let log = Arc::new(log);
        logs.insert(name.to_owned(), log.clone());
        Ok(Some(log))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// Figures of the broker's own state log (consumer positions and acks).
    pub fn state_stats(&self) -> super::LogStats {
        self.state.stats()
    }
}

impl Storage for DiskStorage {
    fn namespace<'a>(
        &'a self,
        name: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn EventLog>>, StorageError>> {
        Box::pin(async move {
            let open = || self.log(name, create);
            let known = self
                .logs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(name);
            // Creating a namespace makes its directory and first segment, syncs both and
            // starts its writer: blocking work, kept off the other tasks of this worker when
            // the runtime can lend one (a current-thread runtime cannot: done inline there).
            let log = match tokio::runtime::Handle::try_current() {
                Ok(h)
                    if create
                        && !known
                        && h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
                {
                    tokio::task::block_in_place(open)
                }
                _ => open(),
            };
            Ok(log?.map(|l| l as Arc<dyn EventLog>))
        })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        let names = self
            .logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        Box::pin(async move { Ok(names) })
    }

    fn recovery(&self) -> Recovery {
        self.recovery.clone()
    }

    fn state(&self) -> Arc<dyn StateStore> {
        self.state.clone()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let logs: Vec<_> = self
                .logs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            for log in &logs {
                log.begin_close();
            }
            for log in logs {
                log.close().await;
            }
            self.state.close().await;
            Ok(())
        })
    }
}

/// Takes the data directory's lock (the `flock` on [`LOCK_FILE`] that a broker holds while
/// it runs), writing our pid into it for the error others see; held until the file is
/// dropped. Fails with [`StorageError::Locked`] when another process holds it. Offline tools
/// that change files (`bus inspect --repair`) take it too.
pub fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => String::new(),
                p => format!(" (pid {p})"),
            };
            return Err(StorageError::Locked { path, holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(StorageError::io("lock", &path, e)),
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{}", std::process::id());
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap();
        match lock_dir(dir.path()) {
            Err(StorageError::Locked { holder, .. }) => {
                assert_eq!(holder, format!(" (pid {})", std::process::id()));
            }
            other => panic!("locked twice: {other:?}"),
        }
        drop(held);
        assert!(lock_dir(dir.path()).is_ok());
    }
}
