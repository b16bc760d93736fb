//! Errors of the storage layer.
//!
//! `Corrupt` is kept apart from `Io` because recovery and readers branch on it: corruption
//! names the file, the byte offset and the sequence it was expected at, so an operator can
//! find it with `bus inspect`.

use std::io;
use std::path::PathBuf;

/// Where damage was found, and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The damaged file.
    pub file: PathBuf,
    /// Byte offset in `file` of the first damaged record (or header).
    pub offset: u64,
    /// The sequence number the damaged record should have had.
    pub sequence: u64,
    /// What was wrong, in words.
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {} (sequence {}): {}",
            self.file.display(),
            self.offset,
            self.sequence,
            self.reason
        )
    }
}

/// Everything the storage layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Damaged data on disk: a checksum, length or header that does not verify.
    #[error("corrupt log: {0}")]
    Corrupt(Box<Corruption>),
    /// A namespace set aside because its log is damaged (found at open, or by a reader): it
    /// is neither read nor written until `bus inspect --repair` cut it at the damage.
    #[error(
        "namespace {namespace} is damaged: {corruption}; stop the broker and run `bus inspect --repair {}` to cut it at the damage",
        data_dir.display()
    )]
    Damaged {
        /// The namespace.
        namespace: String,
        /// Where the damage is.
        corruption: Box<Corruption>,
        /// The data directory, for the repair command the message names.
        data_dir: PathBuf,
    },
    /// An I/O error, with what was being done and to which file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being attempted ("write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The disk is full; the append was not stored and the namespace is read-only.
    #[error("disk full writing {}", path.display())]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// An earlier write or fsync failed: the namespace accepts no more appends until restart.
    #[error("namespace {namespace} is read-only after a storage failure: {cause}")]
    ReadOnly {
        /// The namespace.
        namespace: String,
        /// The failure that made it read-only.
        cause: String,
    },
    /// The data directory is locked by another process.
    #[error("data directory {} is in use by another broker{holder}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// A description of the holder, when known (" (pid 42)").
        holder: String,
    },
    /// A payload over the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An event that cannot be stored as given (a field over its length limit, an empty batch, ...).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A namespace name that is not a single subject token.
    #[error("invalid namespace name {0:?}")]
    InvalidNamespace(String),
    /// A start position naming an event id that this log never held.
    #[error("unknown event id {0:?}")]
    UnknownEvent(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The remote storage (a NATS JetStream server) failed or could not be reached.
    #[error("storage server: {0}")]
    Remote(String),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl StorageError {
    /// Wraps an I/O error, turning "no space left on device" into [`StorageError::DiskFull`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            return StorageError::DiskFull { path };
        }
        StorageError::Io { op, path, source }
    }

    /// Whether this is a full disk: the failing write's own error, or a namespace that is
    /// read-only because of one (its cause is that error's text).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::DiskFull { .. } => true,
            StorageError::ReadOnly { cause, .. } => cause.starts_with("disk full"),
            _ => false,
        }
    }

    /// Builds a [`StorageError::Corrupt`].
    pub fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        sequence: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt(Box::new(Corruption {
            file: file.into(),
            offset,
            sequence,
            reason: reason.into(),
        }))
    }

    /// The corruption report, when this is one (or a namespace set aside for it).
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            StorageError::Corrupt(c) => Some(c),
            StorageError::Damaged { corruption, .. } => Some(corruption),
            _ => None,
        }
    }
}
