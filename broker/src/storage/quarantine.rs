//! `quarantine/`: the bytes recovery cut from an active segment, kept for an operator.
//!
//! A bad last record cannot be told from a torn write, so recovery cuts it (see
//! [`recovery`](super::recovery)); it may still have been damage rather than a write that
//! never finished, so the cut bytes are first written to
//! `<namespace dir>/quarantine/<segment file name>.<offset>.cut` (for the state log,
//! `.state/quarantine/`), synced, and only then cut from the segment. The file holds exactly
//! the bytes cut, from `offset` to the old end of the segment.
//!
//! **Bound.** At most [`QUARANTINE_KEEP`] files per directory: after each new one, the
//! oldest (by modification time, then name) are deleted. One file is at most one segment
//! (`segment_bytes`, or one batch larger than it). Nothing else deletes them: an operator
//! may remove the directory at any time.
//!
//! **Failure.** Keeping the bytes is best effort: a failure (a full disk) is logged and the
//! cut goes ahead, since a broker that cannot start serves nobody.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The quarantine directory's name inside a namespace directory.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Most files kept in one quarantine directory (the newest).
pub const QUARANTINE_KEEP: usize = 16;
/// The extension of a quarantined cut.
const CUT_EXTENSION: &str = "cut";

/// Writes `bytes`, cut at `offset` from `segment`, into the quarantine directory beside it,
/// synced with its directory; then drops the oldest files past [`QUARANTINE_KEEP`]. Returns
/// the file written.
pub(crate) fn keep(segment: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let ns_dir = segment.parent().unwrap_or(Path::new("."));
    let dir = ns_dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&dir)?;
    let name = segment
        .file_name()
        .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
    let path = dir.join(format!("{name}.{offset}.{CUT_EXTENSION}"));
    let mut f = File::create(&path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    File::open(&dir)?.sync_all()?;
    File::open(ns_dir)?.sync_all()?;
    prune(&dir, QUARANTINE_KEEP);
    Ok(path)
}

/// Deletes the oldest cuts in `dir` beyond the newest `keep`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut cuts: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == CUT_EXTENSION))
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    if cuts.len() <= keep {
        return;
    }
    cuts.sort();
    for (_, old) in &cuts[..cuts.len() - keep] {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(path = %old.display(), error = %e, "could not delete an old quarantined cut");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_cut_bytes_and_only_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join("00000000000000000001.log");
        let first = keep(&seg, 32, b"abc").unwrap();
        assert_eq!(
            first,
            dir.path()
                .join("quarantine/00000000000000000001.log.32.cut")
        );
        assert_eq!(std::fs::read(&first).unwrap(), b"abc");
        for i in 0..QUARANTINE_KEEP as u64 + 3 {
            keep(&seg, 100 + i, b"x").unwrap();
        }
        let left = std::fs::read_dir(dir.path().join(QUARANTINE_DIR))
            .unwrap()
            .count();
        assert_eq!(left, QUARANTINE_KEEP);
    }
}
