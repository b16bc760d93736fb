//! [`NamespaceRepair`]: the offline repair of one namespace directory that salvages (log
//! format 7.5b): every record that still verifies is kept with its sequence, every damaged
//! segment is rewritten as a version-2 segment (which may skip sequences) with its original
//! bytes kept in `quarantine/`, no later segment is deleted, and the sequences lost are named
//! exactly, as ranges.
//!
//! **Order**, each step crash-safe on its own (a crash is finished by running it again):
//!
//! 1. Check every segment; a segment of a format newer than this code reads stops the
//!    repair, untouched.
//! 2. A damaged active segment: a new, empty, version-2 active segment is created above every
//!    sequence seen in it (the high-water mark), so the damaged one becomes sealed.
//! 3. Every damaged sealed segment: original bytes to quarantine, its index deleted, the
//!    kept records written to `tmp.<segment>` under a version-2 header, synced, renamed
//!    over it, the directory synced, its version-2 index written.
//! 4. When the directory now holds a version-2 segment and the active segment is version 1,
//!    the active segment becomes version 2 (so that an older bus, which reads only version 1,
//!    refuses the directory at open, naming the version).
//!
//! **Bound.** One segment is held in memory at a time (at most
//! [`MAX_SEGMENT_BYTES`](super::inspect::MAX_SEGMENT_BYTES)).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::index::SegmentIndex;
use super::inspect::{self, DirLock, InspectError, NamespaceDir, Scanned, SegmentFile};
use super::io::{FileSystem as _, StdFs};
use super::record::{self, RecordView};
use super::segment::{self, SEGMENT_VERSION, SEGMENT_VERSION_HOLES};
use super::{hole, quarantine, recovery, salvage};

/// One segment a repair rewrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenSegment {
    /// The segment file (rewritten in place as version 2).
    pub file: PathBuf,
    /// Where its original bytes were kept, when they could be.
    pub quarantined: Option<PathBuf>,
    /// Records kept.
    pub kept: u64,
    /// Its sequences lost, as ranges in ascending order.
    pub lost: Vec<RangeInclusive<u64>>,
}

/// What a repair did to one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceRepair {
    /// The segments rewritten, oldest first.
    pub rewritten: Vec<RewrittenSegment>,
    /// Every sequence lost, as ranges in ascending order.
    pub lost: Vec<RangeInclusive<u64>>,
    /// The active segment created, when the old one was damaged or had to become version 2.
    pub new_active: Option<PathBuf>,
}

impl NamespaceRepair {
    /// Whether anything was changed.
    pub fn changed(&self) -> bool {
        !self.rewritten.is_empty() || self.new_active.is_some()
    }

    /// Events lost in all.
    pub fn events_lost(&self) -> u64 {
        self.lost.iter().map(|r| r.end() - r.start() + 1).sum()
    }
}

/// Ranges of a sorted list of sequences: `[1, 2, 3, 7]` is `1..=3, 7..=7`.
pub fn ranges(sorted: impl IntoIterator<Item = u64>) -> Vec<RangeInclusive<u64>> {
    let mut out: Vec<RangeInclusive<u64>> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some(r) if r.end().checked_add(1) == Some(s) => *r = *r.start()..=s,
            _ => out.push(s..=s),
        }
    }
    out
}

/// The sequences of `first..=last` that `kept` (ascending) does not hold, as ranges.
fn missing(first: u64, last: u64, kept: &[u64]) -> Vec<RangeInclusive<u64>> {
    let mut out = Vec::new();
    if last < first {
        return out;
    }
    let mut next = first;
    for &k in kept.iter().filter(|&&k| (first..=last).contains(&k)) {
        if k > next {
            out.push(next..=k - 1);
        }
        next = k + 1;
    }
    if next <= last {
        out.push(next..=last);
    }
    out
}

fn err(what: String, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> InspectError {
    InspectError::new(what, e)
}

/// Repairs `ns` (see the module docs). Needs the data directory's lock.
pub fn repair(ns: &NamespaceDir, _lock: &DirLock) -> Result<NamespaceRepair, InspectError> {
    let mut out = NamespaceRepair::default();
    let Some(active) = ns.segments.last() else {
        return Ok(out);
    };
    // Step 1: what is damaged, and the incarnation of a header that verifies.
    let mut incarnation = None;
    let mut damaged_sealed = Vec::new();
    let mut any_v2 = false;
    for seg in &ns.segments {
        let data = inspect::read_segment(&seg.path)
            .map_err(|e| err(format!("cannot read {}", seg.path.display()), e))?;
        if let Some(v) = segment::unknown_version(&data) {
            return Err(err(
                format!("cannot repair {}", seg.path.display()),
                format!("segment format version {v} is not supported"),
            ));
        }
        if let Ok(inc) = segment::decode_header(&data, seg.first_seq) {
            incarnation.get_or_insert(inc);
            any_v2 |= segment::header_version(&data) == SEGMENT_VERSION_HOLES;
        }
        if seg.next_first.is_some() && matches!(ns.scan(seg)?, Scanned::Damaged(..)) {
            damaged_sealed.push(seg.clone());
        }
    }
    let incarnation = incarnation.unwrap_or_else(|| (uuid::Uuid::new_v4().as_u128() >> 96) as u32);
    let active_damaged = matches!(ns.scan(active)?, Scanned::Damaged(..));

    // Step 2: a damaged active segment becomes sealed under a new active segment.
    let mut active_seal = None;
    if active_damaged {
        let data = inspect::read_segment(&active.path)
            .map_err(|e| err(format!("cannot read {}", active.path.display()), e))?;
        // As recovery bounds it: no more records than the smallest record fits.
        let bound = active.first_seq.saturating_add(data.len() as u64 / 46 + 1);
        let found = salvage::scan(&data, active.first_seq..bound);
        let highest = found.records.last().map(|(_, r)| r.sequence);
        let high_water = highest.unwrap_or(active.first_seq.saturating_sub(1));
        if highest.is_some() {
            let next = high_water.saturating_add(1);
            let path = ns.dir.join(segment::segment_name(next));
            segment::create(
                &StdFs,
                &ns.dir,
                &path,
                SEGMENT_VERSION_HOLES,
                incarnation,
                next,
            )
            .map_err(|e| err(format!("cannot create {}", path.display()), e))?;
            out.new_active = Some(path);
            let mut sealed = active.clone();
            sealed.next_first = Some(next);
            active_seal = Some(sealed);
        } else {
            // Nothing verifies in it: it stays the active segment, emptied, as version 2.
            let seg = rewrite(ns, active, &data, &[], incarnation, 0)?;
            out.rewritten.push(seg);
        }
    }

    // Step 3: every damaged sealed segment, oldest first.
    damaged_sealed.extend(active_seal);
    for seg in &damaged_sealed {
        let Some(next) = seg.next_first else { continue };
        let data = inspect::read_segment(&seg.path)
            .map_err(|e| err(format!("cannot read {}", seg.path.display()), e))?;
        let found = salvage::scan(&data, seg.first_seq..next);
        let mut records = found.records;
        // The unfinished last batch of a segment that was active was never acknowledged (the
        // state log keeps it, as its recovery does).
        if out.new_active.is_some() && seg.path == active.path && !inspect::in_state_dir(&seg.path)
        {
            while records.last().is_some_and(|(_, r)| r.batch_left > 0) {
                records.pop();
            }
        }
        out.rewritten
            .push(rewrite(ns, seg, &data, &records, incarnation, next - 1)?);
    }

    // Step 4: the active segment becomes version 2 once the directory holds holes.
    let holes_now = any_v2 || !out.rewritten.is_empty();
    if holes_now && out.new_active.is_none() && !active_damaged {
        let data = inspect::read_segment(&active.path)
            .map_err(|e| err(format!("cannot read {}", active.path.display()), e))?;
        if segment::header_version(&data) == SEGMENT_VERSION {
            out.new_active = Some(upgrade_active(ns, active, incarnation)?);
        }
    }
    // Ranges of neighbouring segments join: the report names each run of losses once.
    let mut lost: Vec<RangeInclusive<u64>> =
        out.rewritten.iter().flat_map(|s| s.lost.clone()).collect();
    lost.sort_by_key(|r| *r.start());
    for r in lost {
        match out.lost.last_mut() {
            Some(prev) if prev.end().checked_add(1) == Some(*r.start()) => {
                *prev = *prev.start()..=*r.end();
            }
            _ => out.lost.push(r),
        }
    }
    Ok(out)
}

/// Rewrites `seg` (whose original bytes are `data`) as a version-2 segment holding `records`
/// (verified, ascending, within `seg.first_seq..=last`), crash-safely; returns what it lost.
fn rewrite(
    ns: &NamespaceDir,
    seg: &SegmentFile,
    data: &[u8],
    records: &[(usize, RecordView<'_>)],
    incarnation: u32,
    last: u64,
) -> Result<RewrittenSegment, InspectError> {
    let quarantined = quarantine::keep(&seg.path, 0, data)
        .map_err(|e| {
            tracing::warn!(file = %seg.path.display(), error = %e, "could not keep a damaged segment in quarantine");
        })
        .ok();
    let idx = segment::index_path_for(&seg.path);
    match std::fs::remove_file(&idx) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(err(format!("cannot delete {}", idx.display()), e));
        }
        _ => {}
    }
    let mut buf =
        segment::encode_header_version(SEGMENT_VERSION_HOLES, incarnation, seg.first_seq).to_vec();
    let mut entries = Vec::with_capacity(records.len());
    let mut kept = Vec::with_capacity(records.len());
    for (off, r) in records {
        let Some(n) = record::claimed_len(&data[*off..]) else {
            continue;
        };
        let Ok(at) = u32::try_from(buf.len()) else {
            break;
        };
        entries.push((r.sequence, at));
        kept.push(r.sequence);
        buf.extend_from_slice(&data[*off..*off + n]);
    }
    let name = seg
        .path
        .file_name()
        .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
    let tmp = ns.dir.join(format!("tmp.{name}"));
    let io =
        |what: &str, p: &Path, e: std::io::Error| err(format!("cannot {what} {}", p.display()), e);
    let file = StdFs.create(&tmp).map_err(|e| io("create", &tmp, e))?;
    file.write_all_at(&buf, 0)
        .map_err(|e| io("write", &tmp, e))?;
    file.sync_data().map_err(|e| io("sync", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &seg.path).map_err(|e| io("rename", &tmp, e))?;
    StdFs
        .sync_dir(&ns.dir)
        .map_err(|e| io("sync", &ns.dir, e))?;
    if let Err(e) = SegmentIndex::write_holes(&idx, seg.first_seq, buf.len() as u64, &entries) {
        // Not fatal: the index is rebuilt when the segment is first read.
        tracing::warn!(index = %idx.display(), error = %e, "could not write segment index");
    }
    Ok(RewrittenSegment {
        file: seg.path.clone(),
        quarantined,
        kept: kept.len() as u64,
        lost: missing(seg.first_seq, last, &kept),
    })
}

/// Makes the (healthy, version-1) active segment `seg` version 2: one holding records is
/// sealed (torn tail cut as at open, index written) under a new empty version-2 segment; an
/// empty one is replaced by a version-2 header. Returns the active segment's path.
fn upgrade_active(
    ns: &NamespaceDir,
    seg: &SegmentFile,
    incarnation: u32,
) -> Result<PathBuf, InspectError> {
    let io = |what: &str, p: &Path, e: String| err(format!("cannot {what} {}", p.display()), e);
    let file = StdFs
        .open(&seg.path)
        .map_err(|e| io("open", &seg.path, e.to_string()))?;
    let state = inspect::in_state_dir(&seg.path);
    let scan = recovery::scan_active(&seg.path, &file, seg.first_seq, false, true, state)
        .map_err(|e| io("recover", &seg.path, e.to_string()))?;
    drop(file);
    if scan.offsets.is_empty() {
        hole::upgrade_empty(&StdFs, &ns.dir, &seg.path, incarnation, seg.first_seq)
            .map_err(|e| io("upgrade", &seg.path, e.to_string()))?;
        return Ok(seg.path.clone());
    }
    segment::write_sealed_index(
        &seg.path,
        seg.first_seq,
        SEGMENT_VERSION,
        scan.end,
        &scan.offsets,
    );
    let next = seg.first_seq + scan.offsets.len() as u64;
    let path = ns.dir.join(segment::segment_name(next));
    segment::create(
        &StdFs,
        &ns.dir,
        &path,
        SEGMENT_VERSION_HOLES,
        incarnation,
        next,
    )
    .map_err(|e| io("create", &path, e.to_string()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_missing_name_every_sequence_once() {
        assert_eq!(ranges([1, 2, 3, 7, 9, 10]), vec![1..=3, 7..=7, 9..=10]);
        assert_eq!(missing(5, 12, &[5, 8, 9]), vec![6..=7, 10..=12]);
        assert_eq!(missing(5, 6, &[5, 6]), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(missing(5, 6, &[]), vec![5..=6]);
    }
}
