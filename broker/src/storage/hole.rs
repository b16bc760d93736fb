//! Continuing a namespace above a high-water mark, leaving a **hole** (log format 2.3): the
//! sequences up to the mark that no record holds belong to a sealed version-2 segment, and a
//! new active segment starts at the mark plus one. Open uses it when the reservation
//! ([`reservation`](super::reservation)) is above what recovery found; the offline repair
//! uses its steps to seal a healthy active segment and to make an empty one version 2.
//!
//! **Order** (each step crash-safe: a crash is finished by the next open, which finds the
//! same mark above the same records):
//!
//! 1. An active segment holding records is sealed as it is, in its own version (a
//!    version-1 segment is never rewritten to change its version): its index is written,
//!    and an empty version-2 segment is created at the first hole. An empty active segment
//!    is that segment itself; a version-1 one gets a version-2 header (`tmp.<name>`, synced,
//!    renamed, the directory synced).
//! 2. That empty segment's version-2 index (no entry) is written.
//! 3. The new active segment, version 2, is created at the mark plus one (header synced, then
//!    the directory). Only now does the hole exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StorageError;
use super::index::SegmentIndex;
use super::io::{DataFile, FileSystem};
use super::segment::{self, SEGMENT_HEADER_BYTES, SEGMENT_VERSION_HOLES, SealedSegment};

/// The active segment as recovery left it.
pub(crate) struct ActiveSegment<'a> {
    /// Its file's path.
    pub path: &'a Path,
    /// Its first sequence.
    pub first: u64,
    /// Its header's format version.
    pub version: u16,
    /// Offsets of its records (sequences `first`, `first + 1`, …: an active segment has no
    /// hole).
    pub offsets: &'a [u32],
    /// End of its last record.
    pub end: u64,
}

/// The namespace continued above a mark.
pub(crate) struct Above {
    /// The segments sealed, oldest first: the old active one if it held records, then the
    /// empty one that holds the hole.
    pub sealed: Vec<SealedSegment>,
    /// The new active segment's path.
    pub path: PathBuf,
    /// Its file.
    pub file: Arc<dyn DataFile>,
    /// Its first sequence: the mark plus one.
    pub first: u64,
}

/// Continues the namespace in `dir` above `mark` (at least `active`'s next sequence): see
/// the module docs.
pub(crate) fn continue_above(
    fs: &dyn FileSystem,
    dir: &Path,
    active: &ActiveSegment<'_>,
    incarnation: u32,
    mark: u64,
) -> Result<Above, StorageError> {
    let hole = active.first + active.offsets.len() as u64;
    let next = mark.checked_add(1).filter(|&n| n > hole).ok_or_else(|| {
        StorageError::corrupt(active.path, 0, hole, format!("no sequence above {mark}"))
    })?;
    let mut sealed = Vec::new();
    let hole_path = if active.offsets.is_empty() {
        if active.version != SEGMENT_VERSION_HOLES {
            upgrade_empty(fs, dir, active.path, incarnation, active.first)?;
        }
        active.path.to_owned()
    } else {
        segment::write_sealed_index(
            active.path,
            active.first,
            active.version,
            active.end,
            active.offsets,
        );
        let path = dir.join(segment::segment_name(hole));
        segment::create(fs, dir, &path, SEGMENT_VERSION_HOLES, incarnation, hole)?;
        sealed.push(SealedSegment::new(
            active.path.to_owned(),
            active.first,
            hole - 1,
            active.end,
        ));
        path
    };
    let header = SEGMENT_HEADER_BYTES as u64;
    let idx = segment::index_path_for(&hole_path);
    if let Err(e) = SegmentIndex::write_holes(&idx, hole, header, &[]) {
        // Not fatal: the index is rebuilt when the segment is first read.
        tracing::warn!(index = %idx.display(), error = %e, "could not write segment index");
    }
    sealed.push(SealedSegment::new(hole_path, hole, mark, header));
    let path = dir.join(segment::segment_name(next));
    let file = segment::create(fs, dir, &path, SEGMENT_VERSION_HOLES, incarnation, next)?;
    Ok(Above {
        sealed,
        path,
        file,
        first: next,
    })
}

/// Makes the empty segment at `path` (first sequence `first`) version 2: `tmp.<name>` holding
/// only a version-2 header is synced and renamed over it, and the directory synced.
pub(crate) fn upgrade_empty(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    incarnation: u32,
    first: u64,
) -> Result<(), StorageError> {
    let name = path
        .file_name()
        .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!("tmp.{name}"));
    let h = segment::encode_header_version(SEGMENT_VERSION_HOLES, incarnation, first);
    let f = fs
        .create(&tmp)
        .map_err(|e| StorageError::io("create", &tmp, e))?;
    f.write_all_at(&h, 0)
        .and_then(|()| f.sync_data())
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("fsync", dir, e))
}
