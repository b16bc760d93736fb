//! Offline inspection of a data directory, for the tools (`bus inspect`, `--verify`,
//! `--repair`): the segments of each namespace read, checked and, on request, cut at their
//! first damage, with the engine's own code, so that the tools and the broker agree on what
//! is a torn tail and what is damage.
//!
//! - [`DataDir`] lists a data directory's namespace directories (and its `.state`).
//! - [`NamespaceDir`] lists one namespace directory's segment files ([`SegmentFile`]);
//!   [`NamespaceDir::scan`] reads and checks one, yielding its records
//!   ([`SegmentScan::records`]: the decoded event with its file and byte offset) or the first
//!   damage ([`Corruption`]: file, byte offset, sequence, reason).
//! - [`NamespaceDir::repair`] salvages a damaged namespace ([`super::repair`]); it needs a
//!   [`DirLock`], the data directory's lock that a running broker holds.
//!
//! **How segments are checked.**
//!
//! - A sealed segment (every one but the newest) as the broker checks it when it rebuilds its
//!   index: any bad byte, a torn end, or a count of events other than the next segment's name
//!   implies, is damage.
//! - The newest (active) segment as recovery at open does, run on a copy in memory so that it
//!   cuts nothing: what follows the last valid record is a torn tail (a write cut short,
//!   zeroed pre-allocated space, an unfinished batch: the end of the log) unless a valid
//!   record follows it, which makes it damage.
//!
//! Listing and scanning take no lock and write nothing, so they work while a broker runs on
//! the directory (they see the files as they were when read). Segments are read with plain
//! reads, never memory-mapped: a running broker may truncate its active segment at open,
//! which would fault a map. Each scan holds one segment in memory, at most
//! [`MAX_SEGMENT_BYTES`].
//!
//! **Repair** keeps every record that still verifies, with its sequence: each damaged
//! segment is rewritten as a version-2 segment (holes allowed), nothing later is deleted, and
//! the sequences lost are reported as ranges ([`super::repair`]).

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::disk::{LOCK_FILE, STATE_DIR, lock_dir};
use super::io::DataFile;
use super::record::{self, Decoded};
pub use super::repair::{NamespaceRepair, RewrittenSegment};
use super::{Corruption, Event, StorageError, TornTail, check_namespace, recovery, segment};

/// The largest file read as a segment: the largest segment size (1 GiB) plus the largest
/// record (272 MiB), which a batch that fits no segment writes alone; a larger file is
/// refused rather than read into memory.
pub const MAX_SEGMENT_BYTES: u64 = (1 << 30) + (272 << 20) + 64;

/// What could not be done (`cannot read <file>`), and why (the source).
#[derive(Debug)]
pub struct InspectError {
    /// What could not be done, naming the file or directory.
    context: String,
    /// Why.
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl InspectError {
    pub(crate) fn new(
        context: String,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> InspectError {
        InspectError {
            context,
            source: source.into(),
        }
    }
}

impl std::fmt::Display for InspectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for InspectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The first sequence a segment file's name says (`<20 digits>.log`); `None` for any other
/// name, index files included.
pub fn segment_first_seq(file_name: &str) -> Option<u64> {
    match segment::parse_name(file_name) {
        Some((first, false)) => Some(first),
        _ => None,
    }
}

/// A data directory's lock (the `flock` a running broker holds), held until dropped. The
/// tools that change files take it first: a broker running on the directory makes taking
/// it fail with [`StorageError::Locked`].
#[derive(Debug)]
pub struct DirLock {
    /// The lock file, locked.
    _file: File,
}

impl DirLock {
    /// Takes the lock of the data directory `dir`.
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        lock_dir(dir).map(|file| DirLock { _file: file })
    }
}

/// A data directory, listed offline.
#[derive(Debug)]
pub struct DataDir {
    /// The directory.
    dir: PathBuf,
    /// Its namespace directories' names, sorted.
    namespaces: Vec<String>,
}

impl DataDir {
    /// Lists the namespace directories of `dir` (directories whose name is a valid
    /// namespace), sorted.
    pub fn open(dir: &Path) -> Result<DataDir, InspectError> {
        let mut namespaces: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| InspectError::new(format!("cannot list {}", dir.display()), e))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| check_namespace(n).is_ok())
            .collect();
        namespaces.sort();
        Ok(DataDir {
            dir: dir.to_owned(),
            namespaces,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it looks like a data directory: it holds a namespace directory, the broker's
    /// state directory or the lock file.
    pub fn is_data_dir(&self) -> bool {
        !self.namespaces.is_empty()
            || self.dir.join(STATE_DIR).is_dir()
            || self.dir.join(LOCK_FILE).exists()
    }

    /// The namespaces' names, sorted.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// The namespace directories in name order, and with `with_state` the broker's state
    /// directory (`.state`) last, when there is one.
    pub fn open_namespaces(&self, with_state: bool) -> Result<Vec<NamespaceDir>, InspectError> {
        let mut out = Vec::with_capacity(self.namespaces.len() + 1);
        for n in &self.namespaces {
            out.push(NamespaceDir::open(&self.dir.join(n))?);
        }
        let state = self.dir.join(STATE_DIR);
        if with_state && state.is_dir() {
            out.push(NamespaceDir::open(&state)?);
        }
        Ok(out)
    }
}

/// A namespace directory's segments.
#[derive(Debug)]
pub struct NamespaceDir {
    /// The directory's name (`user`, `.state`).
    pub label: String,
    /// The directory.
    pub dir: PathBuf,
    /// The segment files, oldest first; the last one is the active segment.
    pub segments: Vec<SegmentFile>,
}

/// One segment file of a [`NamespaceDir`].
#[derive(Debug, Clone)]
pub struct SegmentFile {
    /// The `.log` file.
    pub path: PathBuf,
    /// The first sequence it holds (its name).
    pub first_seq: u64,
    /// The next segment's first sequence, which this one must end just before; `None` for
    /// the active segment.
    pub next_first: Option<u64>,
    /// The file's size when the directory was listed.
    pub bytes: u64,
}

/// A segment read and checked: its valid records (before any damage or torn tail).
#[derive(Debug)]
pub struct SegmentScan {
    /// The file read.
    path: PathBuf,
    /// The segment's bytes as read.
    data: Bytes,
    /// The offset of each valid record, the i-th holding sequence `first_seq + i` (in a
    /// version-2 segment, the i-th sequence it holds).
    offsets: Vec<u32>,
    /// What the broker cuts from the end of the active segment at start: a write cut short,
    /// zeros, an unfinished batch.
    torn: Option<TornTail>,
}

/// One valid record of a [`SegmentScan`].
#[derive(Debug, Clone)]
pub struct ScannedRecord<'a> {
    /// The segment file.
    pub file: &'a Path,
    /// The record's byte offset in it.
    pub offset: u64,
    /// The event (its payload a slice of the bytes read).
    pub event: Event,
}

impl SegmentScan {
    /// Valid records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when the segment holds no valid record.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The torn tail of the active segment (which the broker cuts at start), if any.
    pub fn torn(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// The `i`-th valid record (sequence `first_seq + i` in a version-1 segment), decoded;
    /// `None` past the end.
    pub fn record(&self, i: usize) -> Option<ScannedRecord<'_>> {
        let offset = *self.offsets.get(i)? as usize;
        // Every offset was verified by the scan, on these very bytes.
        let Decoded::Record(r, _) = record::decode(self.data.get(offset..)?) else {
            return None;
        };
        Some(ScannedRecord {
            file: &self.path,
            offset: offset as u64,
            event: r.to_event(self.data.slice_ref(r.payload)),
        })
    }

    /// The valid records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = ScannedRecord<'_>> + '_ {
        (0..self.offsets.len()).map_while(|i| self.record(i))
    }
}

/// The outcome of reading one segment.
#[derive(Debug)]
pub enum Scanned {
    /// Healthy, maybe with a torn tail.
    Healthy(SegmentScan),
    /// Damaged: where and what is wrong, and the valid records before the damage.
    Damaged(Corruption, SegmentScan),
    /// The file disappeared after the listing (retention deleted it while a broker runs).
    Gone,
}

impl NamespaceDir {
    /// Lists the segments of the namespace directory `dir`.
    pub fn open(dir: &Path) -> Result<NamespaceDir, InspectError> {
        let cannot = |e| InspectError::new(format!("cannot list {}", dir.display()), e);
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(cannot)? {
            let entry = entry.map_err(cannot)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some((first_seq, false)) = segment::parse_name(&name) {
                let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                segments.push(SegmentFile {
                    path: entry.path(),
                    first_seq,
                    next_first: None,
                    bytes,
                });
            }
        }
        segments.sort_by_key(|s| s.first_seq);
        for i in 1..segments.len() {
            segments[i - 1].next_first = Some(segments[i].first_seq);
        }
        let label = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(NamespaceDir {
            label,
            dir: dir.to_owned(),
            segments,
        })
    }

    /// Whether `dir` holds at least one segment file.
    pub fn holds_segments(dir: &Path) -> bool {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(segment::parse_name)
                    .is_some_and(|(_, idx)| !idx)
            })
        })
    }

    /// The namespace as event JSON names it: the directory's name (`state` for `.state`,
    /// whose log is written under that name).
    pub fn namespace(&self) -> &str {
        self.label.trim_start_matches('.')
    }

    /// Reads and checks `seg`.
    pub fn scan(&self, seg: &SegmentFile) -> Result<Scanned, InspectError> {
        let data = match read_segment(&seg.path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scanned::Gone),
            Err(e) => {
                return Err(InspectError::new(
                    format!("cannot read {}", seg.path.display()),
                    e,
                ));
            }
        };
        match seg.next_first {
            Some(next) => scan_sealed(seg, data, next),
            None => scan_active(seg, data, false).map(|(scanned, _)| scanned),
        }
    }

    /// The newest sequence the namespace holds as far as it can be read: the last valid
    /// record of the active segment, or the last valid one recovery finds after damage in it
    /// (as the broker counts events lost to repair); sealed segments are taken to hold what
    /// their names say. `first − 1` when the namespace holds nothing.
    pub fn newest_sequence(&self) -> Result<u64, InspectError> {
        let Some(last) = self.segments.last() else {
            return Ok(0);
        };
        let data = read_segment(&last.path)
            .map_err(|e| InspectError::new(format!("cannot read {}", last.path.display()), e))?;
        let (_, scan) = scan_active(last, data, true)?;
        let kept = (last.first_seq.saturating_sub(1)).saturating_add(scan.offsets.len() as u64);
        Ok(match scan.repaired {
            Some(r) => kept.max(r.first_lost.saturating_add(r.events_lost).saturating_sub(1)),
            None => kept,
        })
    }

    /// Repairs the namespace, salvaging every record that still verifies (see
    /// [`super::repair`]): damaged segments are rewritten as version 2 with holes, their
    /// original bytes kept in `quarantine/`, and the sequences lost are named. Needs the data
    /// directory's lock.
    pub fn repair(&self, lock: &DirLock) -> Result<NamespaceRepair, InspectError> {
        super::repair::repair(self, lock)
    }
}

/// True for a segment of the state log, which keeps the valid part of an incomplete last
/// batch, as the broker does.
pub(crate) fn in_state_dir(segment: &Path) -> bool {
    segment
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == STATE_DIR)
}

/// Checks a sealed segment as the broker does when it rebuilds the segment's index.
fn scan_sealed(seg: &SegmentFile, data: Bytes, next: u64) -> Result<Scanned, InspectError> {
    let damaged_at = |offset: u64, sequence: u64, reason: String| {
        let c = Corruption {
            file: seg.path.clone(),
            offset,
            sequence,
            reason,
        };
        Ok(damaged(seg, data.clone(), c))
    };
    if let Err(reason) = segment::check_header(&data, seg.first_seq) {
        return damaged_at(0, seg.first_seq, reason);
    }
    let holes = segment::header_version(&data) == segment::SEGMENT_VERSION_HOLES;
    let range = seg.first_seq..next;
    let (records, end) = match segment::scan_sealed(&seg.path, &data, range, holes) {
        Ok(found) => found,
        Err(e) => {
            return match e.corruption() {
                Some(c) => Ok(damaged(seg, data, c.clone())),
                None => Err(InspectError::new(
                    format!("cannot check {}", seg.path.display()),
                    e,
                )),
            };
        }
    };
    let offsets: Vec<u32> = records.iter().map(|&(_, o)| o).collect();
    let expected = next.saturating_sub(seg.first_seq);
    let found = offsets.len() as u64;
    if !holes && found != expected {
        let reason = format!("segment holds {found} events where {expected} were expected");
        return if found < expected {
            damaged_at(end, seg.first_seq + found, reason)
        } else {
            // `expected` < `found`, so it indexes `offsets`.
            let extra = offsets[expected as usize];
            damaged_at(u64::from(extra), seg.first_seq + expected, reason)
        };
    }
    Ok(Scanned::Healthy(SegmentScan {
        path: seg.path.clone(),
        data,
        offsets,
        torn: None,
    }))
}

/// Checks the active segment with the broker's recovery, on a copy: with `repair` unset
/// damage is [`Scanned::Damaged`]; with it set recovery reports what its repair would cut.
fn scan_active(
    seg: &SegmentFile,
    data: Bytes,
    repair: bool,
) -> Result<(Scanned, recovery::ActiveScan), InspectError> {
    let file: Arc<dyn DataFile> = Arc::new(Snapshot(data.clone()));
    let state = in_state_dir(&seg.path);
    match recovery::scan_active(&seg.path, &file, seg.first_seq, repair, false, state) {
        Ok(scan) => {
            let healthy = Scanned::Healthy(SegmentScan {
                path: seg.path.clone(),
                data,
                offsets: scan.offsets.clone(),
                torn: scan.torn.clone(),
            });
            Ok((healthy, scan))
        }
        Err(e) => match e.corruption() {
            Some(c) => Ok((
                damaged(seg, data, c.clone()),
                recovery::ActiveScan::default(),
            )),
            None => Err(InspectError::new(
                format!("cannot check {}", seg.path.display()),
                e,
            )),
        },
    }
}

/// [`Scanned::Damaged`] with the valid records of `data` before the damage `c`.
fn damaged(seg: &SegmentFile, data: Bytes, c: Corruption) -> Scanned {
    let mut offsets = Vec::new();
    let mut pos = segment::SEGMENT_HEADER_BYTES;
    let mut seq = seg.first_seq;
    while (pos as u64) < c.offset {
        match record::decode(&data[pos.min(data.len())..]) {
            // Before the damage every record verifies; a version-2 segment may skip sequences.
            Decoded::Record(r, n) if r.sequence >= seq => {
                offsets.push(pos as u32);
                pos += n;
                seq = r.sequence + 1;
            }
            _ => break,
        }
    }
    Scanned::Damaged(
        c,
        SegmentScan {
            path: seg.path.clone(),
            data,
            offsets,
            torn: None,
        },
    )
}

/// Reads a whole segment file, refusing one over [`MAX_SEGMENT_BYTES`].
pub(crate) fn read_segment(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_SEGMENT_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes is more than a segment can hold ({MAX_SEGMENT_BYTES})"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // A file growing while it is read (the active segment of a running broker) is read as
    // far as it was long when opened, at most the limit.
    file.take(len).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// A segment's bytes held in memory, offered to recovery as a file it may "cut" without
/// touching the disk: cutting and syncing do nothing, writing fails.
#[derive(Debug)]
struct Snapshot(Bytes);

impl DataFile for Snapshot {
    fn write_all_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "offline inspection writes nothing",
        ))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn set_len(&self, _len: u64) -> std::io::Result<()> {
        Ok(())
    }

    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::NewEvent;

    /// A segment file holding `n` events from sequence `first`, one batch each.
    fn segment_bytes(first: u64, n: u64) -> Vec<u8> {
        let mut buf = segment::encode_header(7, first).to_vec();
        for seq in first..first + n {
            let e = NewEvent::new("user.created", Bytes::from(format!("event {seq}")));
            record::encode(&mut buf, &e, seq, seq, 0, format!("user-{seq}-00000007"));
        }
        buf
    }

    fn write(dir: &Path, first: u64, bytes: &[u8]) {
        std::fs::write(dir.join(segment::segment_name(first)), bytes).unwrap();
    }

    fn healthy(s: Scanned) -> SegmentScan {
        match s {
            Scanned::Healthy(s) => s,
            other => panic!("not healthy: {other:?}"),
        }
    }

    fn damage(s: Scanned) -> Corruption {
        match s {
            Scanned::Damaged(c, _) => c,
            other => panic!("not damaged: {other:?}"),
        }
    }

    #[test]
    fn lists_segments_in_order_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 4, &segment_bytes(4, 2));
        write(dir.path(), 1, &segment_bytes(1, 3));
        for other in [
            "checkpoint",
            "00000000000000000001.idx",
            "tmp.checkpoint",
            "1.log",
        ] {
            std::fs::write(dir.path().join(other), b"x").unwrap();
        }
        let ns = NamespaceDir::open(dir.path()).unwrap();
        let firsts: Vec<_> = ns
            .segments
            .iter()
            .map(|s| (s.first_seq, s.next_first))
            .collect();
        assert_eq!(firsts, vec![(1, Some(4)), (4, None)]);
        assert_eq!(healthy(ns.scan(&ns.segments[0]).unwrap()).offsets.len(), 3);
        assert_eq!(healthy(ns.scan(&ns.segments[1]).unwrap()).offsets.len(), 2);
        assert_eq!(ns.newest_sequence().unwrap(), 5);
    }

    #[test]
    fn a_zeroed_or_cut_tail_of_the_active_segment_is_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment_bytes(1, 3);
        let whole = bytes.len();
        bytes.extend_from_slice(&[0; 4096]);
        write(dir.path(), 1, &bytes);
        let ns = NamespaceDir::open(dir.path()).unwrap();
        let s = healthy(ns.scan(&ns.segments[0]).unwrap());
        assert_eq!(s.offsets.len(), 3);
        assert_eq!(s.torn.unwrap().offset, whole as u64);
        // Nothing was cut on disk.
        assert_eq!(
            std::fs::metadata(&ns.segments[0].path).unwrap().len(),
            whole as u64 + 4096
        );
        write(dir.path(), 1, &bytes[..whole - 5]);
        let s = healthy(ns.scan(&ns.segments[0]).unwrap());
        assert_eq!(s.offsets.len(), 2);
    }

    #[test]
    fn a_flipped_byte_is_damage_named_by_file_offset_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment_bytes(1, 3);
        let second = match record::decode(&bytes[segment::SEGMENT_HEADER_BYTES..]) {
            record::Decoded::Record(_, n) => segment::SEGMENT_HEADER_BYTES + n,
            other => panic!("{other:?}"),
        };
        bytes[second + 20] ^= 0x40;
        write(dir.path(), 1, &bytes);
        write(dir.path(), 4, &segment_bytes(4, 1));
        let ns = NamespaceDir::open(dir.path()).unwrap();
        // Sealed: damage.
        let c = damage(ns.scan(&ns.segments[0]).unwrap());
        assert_eq!((c.offset, c.sequence), (second as u64, 2));
        assert!(c.file.ends_with("00000000000000000001.log"));
        // Active, with a valid record after the damage: damage too.
        std::fs::remove_file(&ns.segments[1].path).unwrap();
        let ns = NamespaceDir::open(dir.path()).unwrap();
        let c = damage(ns.scan(&ns.segments[0]).unwrap());
        assert_eq!((c.offset, c.sequence), (second as u64, 2));
        assert_eq!(ns.newest_sequence().unwrap(), 3);
    }

    #[test]
    fn a_sealed_segment_must_hold_exactly_its_sequences() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &segment_bytes(1, 2));
        write(dir.path(), 4, &segment_bytes(4, 1));
        let ns = NamespaceDir::open(dir.path()).unwrap();
        let c = damage(ns.scan(&ns.segments[0]).unwrap());
        assert_eq!(c.sequence, 3);
        assert!(c.reason.contains("2 events where 3"), "{}", c.reason);
        // A zeroed tail is damage in a sealed segment: the broker would refuse to read it.
        let mut bytes = segment_bytes(1, 3);
        bytes.extend_from_slice(&[0; 64]);
        write(dir.path(), 1, &bytes);
        let ns = NamespaceDir::open(dir.path()).unwrap();
        assert_eq!(damage(ns.scan(&ns.segments[0]).unwrap()).sequence, 4);
    }

    #[test]
    fn events_are_decoded_with_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &segment_bytes(1, 2));
        let ns = NamespaceDir::open(dir.path()).unwrap();
        let s = healthy(ns.scan(&ns.segments[0]).unwrap());
        let records: Vec<_> = s.records().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offset, segment::SEGMENT_HEADER_BYTES as u64);
        assert_eq!(records[1].event.sequence, 2);
        assert_eq!(&records[1].event.payload[..], b"event 2");
        assert!(s.record(2).is_none());
    }

    #[test]
    fn repair_salvages_around_the_damage_and_keeps_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let nsdir = data.join("user");
        std::fs::create_dir_all(&nsdir).unwrap();
        let mut bytes = segment_bytes(1, 3);
        let second = match record::decode(&bytes[segment::SEGMENT_HEADER_BYTES..]) {
            record::Decoded::Record(_, n) => segment::SEGMENT_HEADER_BYTES + n,
            other => panic!("{other:?}"),
        };
        bytes[second + 20] ^= 0x40;
        write(&nsdir, 1, &bytes);
        write(&nsdir, 4, &segment_bytes(4, 2));
        let data_dir = DataDir::open(&data).unwrap();
        assert!(data_dir.is_data_dir());
        assert_eq!(data_dir.namespaces(), ["user"]);
        let lock = DirLock::acquire(&data).unwrap();
        // A second holder is refused while the lock is held.
        assert!(matches!(
            DirLock::acquire(&data),
            Err(StorageError::Locked { .. })
        ));
        let ns = &data_dir.open_namespaces(false).unwrap()[0];
        let fixed = ns.repair(&lock).unwrap();
        assert_eq!(fixed.lost, vec![2..=2]);
        assert_eq!(fixed.rewritten.len(), 1);
        assert_eq!(fixed.rewritten[0].kept, 2);
        let kept = fixed.rewritten[0].quarantined.clone().unwrap();
        assert_eq!(
            std::fs::read(kept).unwrap(),
            bytes,
            "the original bytes are kept"
        );
        // The active segment became version 2: sealed, under a new empty one at 6.
        assert_eq!(fixed.new_active, Some(nsdir.join(segment::segment_name(6))));
        let ns = NamespaceDir::open(&nsdir).unwrap();
        let firsts: Vec<u64> = ns.segments.iter().map(|s| s.first_seq).collect();
        assert_eq!(firsts, vec![1, 4, 6]);
        let s = healthy(ns.scan(&ns.segments[0]).unwrap());
        let seqs: Vec<u64> = s.records().map(|r| r.event.sequence).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(healthy(ns.scan(&ns.segments[1]).unwrap()).len(), 2);
        let active = std::fs::read(&ns.segments[2].path).unwrap();
        assert_eq!(
            segment::header_version(&active),
            segment::SEGMENT_VERSION_HOLES
        );
        // A second repair finds nothing to do.
        let again = ns.repair(&lock).unwrap();
        assert!(!again.changed(), "{again:?}");
    }

    #[test]
    fn a_vanished_segment_is_gone_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &segment_bytes(1, 1));
        let ns = NamespaceDir::open(dir.path()).unwrap();
        std::fs::remove_file(&ns.segments[0].path).unwrap();
        assert!(matches!(ns.scan(&ns.segments[0]).unwrap(), Scanned::Gone));
    }
}
