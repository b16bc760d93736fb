//! Segment index files: the byte offset of every record of a sealed segment, so that
//! seeking by sequence is O(1) and by time O(log n), without reading the segment.
//!
//! Written when a segment is sealed; checked when loaded (magic, version, first sequence,
//! the segment's length and a CRC-32 over the whole file). Rebuilding a missing or damaged
//! one is the segment's job ([`super::segment::load_index`]): this file knows only the
//! index format, not segments. Layout, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BUSIDX\r\n` |
//! | 8 | 2 | format version (1, or 2 for a segment with holes) |
//! | 10 | 2 | flags, must be 0 |
//! | 12 | 4 | record count `N` |
//! | 16 | 8 | first sequence |
//! | 24 | 8 | length of the segment file this index describes |
//! | 32 | 4 × N | version 1: offset of each record in the segment (record `i` holds `first + i`) |
//! | 32 | 12 × N | version 2: each record's sequence (u64) then its offset (u32) |
//! | end − 4 | 4 | CRC-32 of all bytes before it |
//!
//! A version-2 index is what lets a reader of a segment with holes (left by a repair) find
//! a sequence, or the next one held, by a binary search, without reading the segment.

use std::fs;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;

use super::mmap::MappedFile;

/// Magic number at the start of every index file.
pub const INDEX_MAGIC: [u8; 8] = *b"BUSIDX\r\n";
/// Index format version of a segment without holes (record `i` holds `first + i`).
pub const INDEX_VERSION: u16 = 1;
/// Index format version of a segment that may skip sequences: each entry names its sequence.
pub const INDEX_VERSION_HOLES: u16 = 2;
const HEADER_BYTES: usize = 32;

/// The offsets (and, with holes, the sequences) of a sealed segment's records.
#[derive(Debug, Clone)]
pub struct SegmentIndex {
    /// `4 × N` little-endian offsets, or with holes `12 × N` (sequence, offset) pairs.
    entries: Bytes,
    /// Length of the segment (the end of its last record).
    data_len: u64,
    /// The segment's first sequence: record `i` holds `first_seq + i` without holes.
    first_seq: u64,
    /// Whether entries carry their sequence (a version-2 segment, which may have holes).
    holes: bool,
}

impl SegmentIndex {
    fn stride(&self) -> usize {
        if self.holes { 12 } else { 4 }
    }

    /// Records indexed.
    pub fn len(&self) -> usize {
        self.entries.len() / self.stride()
    }

    /// True when the segment holds no record (only a version-2 segment can).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Offset of record `i` (0-based within the segment).
    pub fn offset(&self, i: usize) -> usize {
        let at = i * self.stride() + if self.holes { 8 } else { 0 };
        let e = &self.entries[at..at + 4];
        u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize
    }

    /// Sequence of record `i`.
    pub fn sequence(&self, i: usize) -> u64 {
        if !self.holes {
            return self.first_seq + i as u64;
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.entries[i * 12..i * 12 + 8]);
        u64::from_le_bytes(a)
    }

    /// Where sequence `seq` is: `Ok(i)` when record `i` holds it, `Err(i)` when it is a hole
    /// (or outside the segment) and record `i` is the first one above it (`len()` if none).
    pub fn find(&self, seq: u64) -> Result<usize, usize> {
        if !self.holes {
            let i = seq.checked_sub(self.first_seq).ok_or(0usize)?;
            return match usize::try_from(i) {
                Ok(i) if i < self.len() => Ok(i),
                _ => Err(self.len()),
            };
        }
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.sequence(mid) < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.len() && self.sequence(lo) == seq {
            Ok(lo)
        } else {
            Err(lo)
        }
    }

    /// Whether the entries carry sequences (a version-2 segment).
    pub fn has_holes_format(&self) -> bool {
        self.holes
    }

    /// The end of the last record.
    pub fn end_offset(&self) -> u64 {
        self.data_len
    }

    /// The index of a version-1 segment whose records start at `offsets`.
    pub fn from_offsets(first_seq: u64, offsets: &[u32], data_len: u64) -> Self {
        let mut entries = Vec::with_capacity(offsets.len() * 4);
        for o in offsets {
            entries.extend_from_slice(&o.to_le_bytes());
        }
        SegmentIndex {
            entries: Bytes::from(entries),
            data_len,
            first_seq,
            holes: false,
        }
    }

    /// The index of a version-2 segment whose records are `(sequence, offset)`.
    pub fn from_entries(first_seq: u64, records: &[(u64, u32)], data_len: u64) -> Self {
        SegmentIndex {
            entries: Bytes::from(encode_entries(records)),
            data_len,
            first_seq,
            holes: true,
        }
    }

    /// Writes the index file for a version-1 segment atomically (temporary file, fsync,
    /// rename).
    pub fn write(
        path: &Path,
        first_seq: u64,
        data_len: u64,
        offsets: &[u32],
    ) -> std::io::Result<()> {
        let mut entries = Vec::with_capacity(offsets.len() * 4);
        for o in offsets {
            entries.extend_from_slice(&o.to_le_bytes());
        }
        let count = offsets.len();
        write_file(path, INDEX_VERSION, count, first_seq, data_len, &entries)
    }

    /// Writes the version-2 index file of a segment whose records are `(sequence, offset)`,
    /// atomically.
    pub fn write_holes(
        path: &Path,
        first_seq: u64,
        data_len: u64,
        records: &[(u64, u32)],
    ) -> std::io::Result<()> {
        let entries = encode_entries(records);
        let count = records.len();
        write_file(
            path,
            INDEX_VERSION_HOLES,
            count,
            first_seq,
            data_len,
            &entries,
        )
    }

    /// Loads and checks the index at `path` for a segment of `data_len` bytes starting at
    /// `first_seq`, in the index version that goes with the segment's (`holes` for version
    /// 2); the reason when it is missing or does not verify.
    pub fn load(
        path: &Path,
        first_seq: u64,
        data_len: u64,
        holes: bool,
    ) -> Result<SegmentIndex, &'static str> {
        let map = MappedFile::open(path).map_err(|_| "missing or unreadable")?;
        let b: &[u8] = &map;
        if b.len() < HEADER_BYTES + 4 || b[..8] != INDEX_MAGIC {
            return Err("not an index file");
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err("checksum mismatch");
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let count = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let want = if holes {
            INDEX_VERSION_HOLES
        } else {
            INDEX_VERSION
        };
        if u16::from_le_bytes([b[8], b[9]]) != want || b[10..12] != [0, 0] {
            return Err("unsupported version");
        }
        let stride = if holes { 12 } else { 4 };
        if Some(body.len()) != count.checked_mul(stride).map(|n| n + HEADER_BYTES) {
            return Err("length does not match the record count");
        }
        if u64_at(16) != first_seq {
            return Err("first sequence differs from the segment's");
        }
        if u64_at(24) != data_len {
            return Err("segment length differs from the one indexed");
        }
        let all = Bytes::from_owner(map);
        Ok(SegmentIndex {
            entries: all.slice(HEADER_BYTES..HEADER_BYTES + count * stride),
            data_len,
            first_seq,
            holes,
        })
    }
}

fn encode_entries(records: &[(u64, u32)]) -> Vec<u8> {
    let mut entries = Vec::with_capacity(records.len() * 12);
    for (seq, off) in records {
        entries.extend_from_slice(&seq.to_le_bytes());
        entries.extend_from_slice(&off.to_le_bytes());
    }
    entries
}

fn write_file(
    path: &Path,
    version: u16,
    count: usize,
    first_seq: u64,
    data_len: u64,
    entries: &[u8],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(HEADER_BYTES + entries.len() + 4);
    buf.extend_from_slice(&INDEX_MAGIC);
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
    buf.extend_from_slice(&(count as u32).to_le_bytes());
    buf.extend_from_slice(&first_seq.to_le_bytes());
    buf.extend_from_slice(&data_len.to_le_bytes());
    buf.extend_from_slice(entries);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    write_atomically(path, &buf)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so that a crash
/// leaves either the old file or the new one. Temporary names start with `tmp.`, never a digit.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!("tmp.{name}"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holes_index_round_trips_and_finds_the_next_held_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000010.idx");
        let records = [(10, 32), (11, 90), (15, 150)];
        SegmentIndex::write_holes(&path, 10, 200, &records).unwrap();
        assert_eq!(
            SegmentIndex::load(&path, 10, 200, false).unwrap_err(),
            "unsupported version"
        );
        let idx = SegmentIndex::load(&path, 10, 200, true).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!((idx.sequence(2), idx.offset(2)), (15, 150));
        assert_eq!(idx.find(11), Ok(1));
        assert_eq!(idx.find(12), Err(2));
        assert_eq!(idx.find(16), Err(3));
        assert_eq!(idx.find(9), Err(0));
    }

    #[test]
    fn a_plain_index_finds_by_arithmetic() {
        let idx = SegmentIndex::from_offsets(5, &[32, 80], 120);
        assert_eq!(idx.find(5), Ok(0));
        assert_eq!(idx.find(6), Ok(1));
        assert_eq!(idx.find(7), Err(2));
        assert_eq!(idx.find(4), Err(0));
        assert_eq!(idx.sequence(1), 6);
    }
}
