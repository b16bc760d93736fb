//! Segment files: their names, their header, creating one, and sealed segments read through
//! memory maps.
//!
//! A namespace directory holds `<first sequence, 20 digits>.log` segments, each with its
//! index `<same digits>.idx` once sealed. The newest segment is the active one, written by
//! the namespace's writer; the others are sealed and immutable.
//!
//! Segment header, 32 bytes, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BUSSEG\r\n` |
//! | 8 | 2 | format version (1, or 2: the segment may skip sequences, see below) |
//! | 10 | 2 | flags, must be 0 |
//! | 12 | 4 | namespace incarnation (random, fixed when the namespace is created) |
//! | 16 | 8 | first sequence (equals the file name) |
//! | 24 | 4 | reserved, must be 0 |
//! | 28 | 4 | CRC-32 of bytes 0..28 |
//!
//! **Versions.** In a version-1 segment record `i` holds sequence `first + i`. A version-2
//! segment (written once a repair left holes in the namespace) holds records whose sequences
//! strictly increase within its range, and has a version-2 index naming each record's
//! sequence; the sequences it lacks are holes, read as gaps with the reason `damaged`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::StorageError;
use super::index::SegmentIndex;
use super::io::{DataFile, FileSystem};
use super::mmap::MappedFile;
use super::record::{self, Decoded};

/// Magic number at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"BUSSEG\r\n";
/// Segment format version of a namespace without holes; a new namespace starts with it.
pub const SEGMENT_VERSION: u16 = 1;
/// Segment format version that allows holes in the sequence (left by a repair).
pub const SEGMENT_VERSION_HOLES: u16 = 2;
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;

/// The file name of the segment whose first sequence is `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// Parses a segment or index file name: `(first sequence, is_index)`.
pub fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (digits, ext) = name.split_once('.')?;
    let is_index = match ext {
        "log" => false,
        "idx" => true,
        _ => return None,
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, is_index))
}

/// Encodes a version-1 segment header.
#[cfg(test)]
pub fn encode_header(incarnation: u32, first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    encode_header_version(SEGMENT_VERSION, incarnation, first_seq)
}

/// Encodes a segment header of format `version`.
pub fn encode_header_version(
    version: u16,
    incarnation: u32,
    first_seq: u64,
) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&incarnation.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes and checks a segment header: returns the incarnation, or what is wrong.
pub fn decode_header(h: &[u8], first_seq: u64) -> Result<u32, &'static str> {
    if h.len() < SEGMENT_HEADER_BYTES {
        return Err("segment shorter than its header");
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32fast::hash(&h[..28]) != crc {
        return Err("segment header checksum mismatch");
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err("not a bus segment (bad magic)");
    }
    if !is_known_version(u16::from_le_bytes([h[8], h[9]])) {
        return Err("unsupported segment format version");
    }
    if h[10..12] != [0, 0] || h[24..28] != [0, 0, 0, 0] {
        return Err("unknown segment header flags");
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[16..24]);
    if u64::from_le_bytes(first) != first_seq {
        return Err("segment header's first sequence differs from its file name");
    }
    Ok(u32::from_le_bytes([h[12], h[13], h[14], h[15]]))
}

fn is_known_version(v: u16) -> bool {
    v == SEGMENT_VERSION || v == SEGMENT_VERSION_HOLES
}

/// The format version of a header that [`decode_header`] accepted (1 when `h` is too short).
pub fn header_version(h: &[u8]) -> u16 {
    match h.get(8..10) {
        Some(v) => u16::from_le_bytes([v[0], v[1]]),
        None => SEGMENT_VERSION,
    }
}

/// The format version of a header whose checksum and magic verify but whose version this
/// code does not read (one written by a newer bus), or `None`.
pub fn unknown_version(h: &[u8]) -> Option<u16> {
    let verifies = h.len() >= SEGMENT_HEADER_BYTES
        && crc32fast::hash(&h[..28]) == u32::from_le_bytes([h[28], h[29], h[30], h[31]])
        && h[0..8] == SEGMENT_MAGIC;
    let version = u16::from_le_bytes([h.get(8).copied()?, h.get(9).copied()?]);
    (verifies && !is_known_version(version)).then_some(version)
}

/// [`decode_header`], with an unknown format version named in the reason.
pub fn check_header(h: &[u8], first_seq: u64) -> Result<u32, String> {
    decode_header(h, first_seq).map_err(|reason| match unknown_version(h) {
        Some(v) => format!(
            "segment format version {v} is not supported (this bus reads versions \
             {SEGMENT_VERSION} and {SEGMENT_VERSION_HOLES}); it was written by a newer bus: \
             open it with that one"
        ),
        None => reason.to_owned(),
    })
}

/// What a sealed segment needs once it is read: its map and its index.
#[derive(Debug)]
pub struct Loaded {
    /// The segment's bytes.
    pub data: Bytes,
    /// Offsets of its records.
    pub index: SegmentIndex,
}

/// A sealed (immutable) segment. Its file is mapped and its index loaded on first use, so
/// opening a namespace reads no sealed segment.
#[derive(Debug)]
pub struct SealedSegment {
    /// The `.log` file.
    pub path: PathBuf,
    /// First sequence held.
    pub first_seq: u64,
    /// Last sequence held (the next segment's first, minus one).
    pub last_seq: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The map and index, once loaded.
    loaded: Mutex<Option<Arc<Loaded>>>,
}

impl SealedSegment {
    /// A sealed segment holding `first_seq..=last_seq` whose file is `bytes` long; nothing is
    /// read yet.
    pub fn new(path: PathBuf, first_seq: u64, last_seq: u64, bytes: u64) -> Self {
        SealedSegment {
            path,
            first_seq,
            last_seq,
            bytes,
            loaded: Mutex::new(None),
        }
    }

    /// Events held, counting the holes of a version-2 segment as events (the count is known
    /// without reading the segment; holes are rare, left only by a repair).
    pub fn events(&self) -> u64 {
        self.last_seq + 1 - self.first_seq
    }

    /// Events held as far as counting goes (log format 2.3, "Counting"): none for a segment
    /// holding no record (a header only: a hole left above a reservation, or a segment whose
    /// every record a repair lost), else [`SealedSegment::events`].
    pub fn counted_events(&self) -> u64 {
        if self.bytes <= SEGMENT_HEADER_BYTES as u64 {
            0
        } else {
            self.events()
        }
    }

    /// Maps the segment and loads (or rebuilds) its index, once.
    pub fn load(&self) -> Result<Arc<Loaded>, StorageError> {
        // The lock is held while loading so that two readers do not both rebuild an index;
        // it is a std mutex held by synchronous code only, never across an await.
        let mut slot = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = &*slot {
            return Ok(l.clone());
        }
        let map =
            MappedFile::open(&self.path).map_err(|e| StorageError::io("map", &self.path, e))?;
        let data = Bytes::from_owner(map);
        check_header(&data, self.first_seq)
            .map_err(|r| StorageError::corrupt(&self.path, 0, self.first_seq, r))?;
        let holes = header_version(&data) == SEGMENT_VERSION_HOLES;
        let range = self.first_seq..self.last_seq + 1;
        let index = load_index(&self.index_path(), &self.path, &data, range, holes)?;
        if holes {
            check_holes_index(&self.path, &index, self.first_seq, self.last_seq)?;
        } else if index.len() as u64 != self.events() {
            return Err(StorageError::corrupt(
                &self.path,
                index.end_offset(),
                self.first_seq + index.len() as u64,
                format!(
                    "segment holds {} events where {} were expected",
                    index.len(),
                    self.events()
                ),
            ));
        }
        let loaded = Arc::new(Loaded { data, index });
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    /// The index file's path.
    pub fn index_path(&self) -> PathBuf {
        index_path_for(&self.path)
    }

    /// The time of the segment's newest event (maps the segment if it is not yet); 0 for a
    /// segment whose every record was lost to damage.
    pub fn last_time(&self) -> Result<u64, StorageError> {
        let l = self.load()?;
        if l.index.is_empty() {
            return Ok(0);
        }
        let off = l.index.offset(l.index.len() - 1);
        record::peek_time(&l.data[off..]).ok_or_else(|| {
            StorageError::corrupt(&self.path, off as u64, self.last_seq, "truncated record")
        })
    }
}

/// Checks that a version-2 index names sequences that strictly increase within
/// `first..=last` (its CRC verified, but it must still agree with the segment's range).
fn check_holes_index(
    path: &Path,
    index: &SegmentIndex,
    first: u64,
    last: u64,
) -> Result<(), StorageError> {
    let mut prev = first.saturating_sub(1);
    for i in 0..index.len() {
        let seq = index.sequence(i);
        if seq <= prev || seq > last {
            return Err(StorageError::corrupt(
                path,
                index.offset(i) as u64,
                seq,
                format!("index names sequence {seq} outside {first}..={last} or out of order"),
            ));
        }
        prev = seq;
    }
    Ok(())
}

/// Creates a segment file with its header (format `version`), durably (file and directory
/// entry).
pub(crate) fn create(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    version: u16,
    incarnation: u32,
    first: u64,
) -> Result<Arc<dyn DataFile>, StorageError> {
    let file = fs
        .create(path)
        .map_err(|e| StorageError::io("create", path, e))?;
    file.write_all_at(&encode_header_version(version, incarnation, first), 0)
        .map_err(|e| StorageError::io("write", path, e))?;
    file.sync_data()
        .map_err(|e| StorageError::io("fdatasync", path, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("fsync", dir, e))?;
    Ok(file)
}

/// Writes the index of the segment at `path` being sealed (its first sequence `first`, its
/// header's format `version`, its records at `offsets` with no hole, ending at `end`). A
/// failure is only logged: a missing index is rebuilt when the segment is first read.
pub(crate) fn write_sealed_index(path: &Path, first: u64, version: u16, end: u64, offsets: &[u32]) {
    let idx = index_path_for(path);
    let written = if version == SEGMENT_VERSION_HOLES {
        let entries: Vec<(u64, u32)> = (first..).zip(offsets.iter().copied()).collect();
        SegmentIndex::write_holes(&idx, first, end, &entries)
    } else {
        SegmentIndex::write(&idx, first, end, offsets)
    };
    if let Err(e) = written {
        tracing::warn!(index = %idx.display(), error = %e, "could not write segment index");
    }
}

/// The `.idx` path beside a `.log` path.
pub fn index_path_for(log: &Path) -> PathBuf {
    log.with_extension("idx")
}

/// Loads the index at `idx_path`, or rebuilds it from `data` (the mapped segment at
/// `log_path`, holding sequences in `range`) when it is missing or does not verify, writing
/// the rebuilt one back. `holes` for a version-2 segment.
pub fn load_index(
    idx_path: &Path,
    log_path: &Path,
    data: &Bytes,
    range: std::ops::Range<u64>,
    holes: bool,
) -> Result<SegmentIndex, StorageError> {
    let first_seq = range.start;
    match SegmentIndex::load(idx_path, first_seq, data.len() as u64, holes) {
        Ok(index) => return Ok(index),
        Err(reason) => {
            tracing::warn!(index = %idx_path.display(), reason, "rebuilding segment index");
        }
    }
    let (records, end) = scan_sealed(log_path, data, range, holes)?;
    let written = if holes {
        SegmentIndex::write_holes(idx_path, first_seq, end, &records)
    } else {
        let offsets: Vec<u32> = records.iter().map(|&(_, o)| o).collect();
        SegmentIndex::write(idx_path, first_seq, end, &offsets)
    };
    if let Err(e) = written {
        tracing::warn!(index = %idx_path.display(), error = %e, "could not write rebuilt index");
    }
    Ok(if holes {
        SegmentIndex::from_entries(first_seq, &records, end)
    } else {
        let offsets: Vec<u32> = records.iter().map(|&(_, o)| o).collect();
        SegmentIndex::from_offsets(first_seq, &offsets, end)
    })
}

/// Scans a sealed segment that holds sequences in `range`, verifying every record: returns
/// each one's (sequence, offset) and the end of the last one. Without `holes` (version 1)
/// record `i` must hold `range.start + i`; with them (version 2) sequences must strictly
/// increase within `range`. Any damage (including a torn end: a sealed segment was synced
/// before the next one was made) is corruption. (A version-1 segment holding more records
/// than its range is left for the caller's count check.)
pub fn scan_sealed(
    path: &Path,
    data: &[u8],
    range: std::ops::Range<u64>,
    holes: bool,
) -> Result<(Vec<(u64, u32)>, u64), StorageError> {
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut seq = range.start;
    while pos < data.len() {
        match record::decode(&data[pos..]) {
            Decoded::Record(r, n)
                if (r.sequence == seq || holes && r.sequence > seq)
                    && (!holes || range.contains(&r.sequence)) =>
            {
                let Ok(at) = u32::try_from(pos) else {
                    return Err(StorageError::corrupt(
                        path,
                        pos as u64,
                        r.sequence,
                        "record beyond the 4 GiB an index can address",
                    ));
                };
                records.push((r.sequence, at));
                pos += n;
                seq = r.sequence + 1;
            }
            Decoded::Record(..) => {
                return Err(StorageError::corrupt(
                    path,
                    pos as u64,
                    seq,
                    "sequence out of order",
                ));
            }
            Decoded::Incomplete => {
                return Err(StorageError::corrupt(
                    path,
                    pos as u64,
                    seq,
                    "segment ends inside a record",
                ));
            }
            Decoded::Invalid(reason) => {
                return Err(StorageError::corrupt(path, pos as u64, seq, reason));
            }
        }
    }
    Ok((records, pos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(1), "00000000000000000001.log");
        assert_eq!(parse_name("00000000000000000001.log"), Some((1, false)));
        assert_eq!(parse_name("00000000000000000042.idx"), Some((42, true)));
        for bad in [
            "1.log",
            "0000000000000000000x.log",
            "00000000000000000001.tmp",
            "checkpoint",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_round_trips_and_every_flip_is_caught() {
        let h = encode_header(0xdead_beef, 42);
        assert_eq!(decode_header(&h, 42), Ok(0xdead_beef));
        assert!(decode_header(&h, 43).is_err());
        for i in 0..SEGMENT_HEADER_BYTES {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert!(decode_header(&bad, 42).is_err(), "flip at {i} passed");
        }
        assert!(decode_header(&[0; 32], 0).is_err());
    }

    #[test]
    fn version_2_is_read_and_says_so() {
        let h = encode_header_version(SEGMENT_VERSION_HOLES, 7, 42);
        assert_eq!(decode_header(&h, 42), Ok(7));
        assert_eq!(header_version(&h), SEGMENT_VERSION_HOLES);
        assert_eq!(unknown_version(&h), None);
        assert_eq!(header_version(&encode_header(7, 42)), SEGMENT_VERSION);
    }

    #[test]
    fn a_holes_segment_scans_increasing_sequences_within_its_range_only() {
        use crate::storage::NewEvent;
        let mut data = encode_header_version(SEGMENT_VERSION_HOLES, 7, 10).to_vec();
        for seq in [10, 12, 15] {
            let e = NewEvent::new("k.v", "x");
            record::encode(&mut data, &e, seq, 1, 0, format!("s-{seq}-00000007"));
        }
        let p = Path::new("00000000000000000010.log");
        let (records, end) = scan_sealed(p, &data, 10..16, true).unwrap();
        let seqs: Vec<u64> = records.iter().map(|&(s, _)| s).collect();
        assert_eq!((seqs, end), (vec![10, 12, 15], data.len() as u64));
        // Sequence 15 is outside 10..15, and version 1 allows no skip.
        assert!(scan_sealed(p, &data, 10..15, true).is_err());
        assert!(scan_sealed(p, &data, 10..16, false).is_err());
    }

    #[test]
    fn an_unknown_version_is_named_and_others_are_not() {
        let mut h = encode_header(7, 42);
        assert_eq!(unknown_version(&h), None);
        h[8..10].copy_from_slice(&3u16.to_le_bytes());
        let crc = crc32fast::hash(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(unknown_version(&h), Some(3));
        let reason = check_header(&h, 42).unwrap_err();
        assert!(
            reason.contains("segment format version 3 is not supported"),
            "{reason}"
        );
        // A flipped version byte is damage (the checksum fails), not a newer format.
        let mut flipped = encode_header(7, 42);
        flipped[8] ^= 2;
        assert_eq!(unknown_version(&flipped), None);
        assert!(!check_header(&flipped, 42).unwrap_err().contains("version"));
    }
}
