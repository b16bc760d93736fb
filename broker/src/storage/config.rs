//! Per-namespace log settings: fsync policy, segment size, limits, retention, dedup window.

use std::str::FromStr;
use std::time::Duration;

use super::StorageError;

/// Smallest valid segment roll size.
pub const MIN_SEGMENT_BYTES: u64 = 4 * 1024;
/// Largest valid segment roll size (record offsets within a segment are 32-bit).
pub const MAX_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Default segment roll size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default payload limit.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Largest payload limit that may be configured.
pub const MAX_PAYLOAD_LIMIT_BYTES: usize = 256 * 1024 * 1024;
/// Default window within which a repeated dedup id (`Bus-Msg-Id`) stores nothing.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Dedup ids remembered per namespace at most; past it the oldest are forgotten first.
pub const DEFAULT_DEDUP_MAX_ENTRIES: usize = 1_000_000;
/// Encoded bytes of a namespace's unanswered appends (queued, or written and waiting for
/// their sync); past it appenders wait.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After the `fdatasync` that covers it (group-committed). The default.
    #[default]
    Always,
    /// After the write; an `fdatasync` runs every so often, so an OS crash loses at most
    /// that interval (Redis `everysec` semantics).
    Interval(Duration),
    /// After the write; the OS decides when data reaches the disk.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;

    /// Parses `always`, `never` or `interval:<ms>` (`interval:5`, also `interval:5ms`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval:")
                    .map(|v| v.strip_suffix("ms").unwrap_or(v))
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| {
                        format!(
                            "invalid fsync policy {s:?}: expected always, never or interval:<ms>"
                        )
                    })?;
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

/// How much of a namespace's history is kept. Retention deletes whole sealed segments,
/// oldest first, never the active one, and never below a limit: a log may exceed a size
/// or count limit by up to one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete a sealed segment once its newest event is older than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest sealed segment while the rest still hold at least this many bytes.
    pub max_bytes: Option<u64>,
    /// Delete the oldest sealed segment while the rest still hold at least this many events.
    pub max_events: Option<u64>,
}

/// Settings of one namespace's log. `Default` is the documented defaults.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// When appends count as durable. Default: [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// Roll to a new segment once the active one would exceed this. Default: 64 MiB.
    pub segment_bytes: u64,
    /// Largest payload accepted. Default: 1 MiB.
    pub max_payload_bytes: usize,
    /// Retention limits. Default: keep everything.
    pub retention: Retention,
    /// A repeated dedup id within this window stores nothing. Default: 2 minutes.
    pub dedup_window: Duration,
    /// Most dedup ids remembered; the oldest are forgotten first. Default: 1,000,000.
    pub dedup_max_entries: usize,
    /// Encoded bytes of appends not yet answered (queued for the writer, or written and
    /// waiting for their sync) before further appenders wait for room. Default: 64 MiB.
    pub queue_bytes: usize,
    /// At open, truncate the active segment at the first damaged record (reporting the
    /// events lost) instead of refusing to open. Default: false.
    pub repair: bool,
    /// At open, keep the valid records of an incomplete last batch instead of cutting the
    /// whole batch. Only for a log whose batches need no atomicity: the state log, whose
    /// batches are copies of one write or a compaction repeating current values (see
    /// `state.rs`). Default: false.
    pub keep_partial_batch: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            retention: Retention::default(),
            dedup_window: DEFAULT_DEDUP_WINDOW,
            dedup_max_entries: DEFAULT_DEDUP_MAX_ENTRIES,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            repair: false,
            keep_partial_batch: false,
        }
    }
}

impl LogConfig {
    /// Checks the settings once, at open.
    pub fn validate(&self) -> Result<(), StorageError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(StorageError::Config(format!(
                "segment size {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES} bytes",
                self.segment_bytes
            )));
        }
        if self.max_payload_bytes > MAX_PAYLOAD_LIMIT_BYTES {
            return Err(StorageError::Config(format!(
                "payload limit {} exceeds {MAX_PAYLOAD_LIMIT_BYTES} bytes",
                self.max_payload_bytes
            )));
        }
        if self.queue_bytes < 1024 * 1024 {
            return Err(StorageError::Config(
                "append queue must hold at least 1 MiB".into(),
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return Err(StorageError::Config(
                "fsync interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fsync_policies() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!(
            "interval:5".parse(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(5)))
        );
        assert_eq!(
            "interval:250ms".parse(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
        );
        for bad in [
            "",
            "sometimes",
            "interval:",
            "interval:0",
            "interval:-1",
            "interval:x",
        ] {
            assert!(bad.parse::<FsyncPolicy>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            FsyncPolicy::Interval(Duration::from_millis(5)).to_string(),
            "interval:5"
        );
    }

    #[test]
    fn validates_segment_size() {
        let mut c = LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        };
        assert!(c.validate().is_ok());
        c.segment_bytes = 4095;
        assert!(c.validate().is_err());
        assert!(LogConfig::default().validate().is_ok());
    }
}
