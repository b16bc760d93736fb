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
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | flags, must be 0 |
//! | 12 | 4 | record count `N` |
//! | 16 | 8 | first sequence |
//! | 24 | 8 | length of the segment file this index describes |
//! | 32 | 4 × N | offset of each record in the segment |
//! | 32 + 4N | 4 | CRC-32 of all bytes before it |

use std::fs;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;

use super::mmap::MappedFile;

/// Magic number at the start of every index file.
pub const INDEX_MAGIC: [u8; 8] = *b"BUSIDX\r\n";
/// Current index format version.
pub const INDEX_VERSION: u16 = 1;
const HEADER_BYTES: usize = 32;

/// The offsets of a sealed segment's records.
#[derive(Debug, Clone)]
pub struct SegmentIndex {
    /// `4 × N` little-endian offsets.
    entries: Bytes,
    /// Length of the segment (the end of its last record).
    data_len: u64,
}

impl SegmentIndex {
    /// Records indexed.
    pub fn len(&self) -> usize {
        self.entries.len() / 4
    }

    /// Offset of record `i` (0-based within the segment).
    pub fn offset(&self, i: usize) -> usize {
        let e = &self.entries[i * 4..i * 4 + 4];
        u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize
    }

    /// The end of the last record.
    pub fn end_offset(&self) -> u64 {
        self.data_len
    }

    /// The index of a segment whose records start at `offsets`.
    pub fn from_offsets(offsets: &[u32], data_len: u64) -> Self {
        let mut entries = Vec::with_capacity(offsets.len() * 4);
        for o in offsets {
            entries.extend_from_slice(&o.to_le_bytes());
        }
        SegmentIndex {
            entries: Bytes::from(entries),
            data_len,
        }
    }

    /// Writes the index file for a segment atomically (temporary file, fsync, rename).
    pub fn write(
        path: &Path,
        first_seq: u64,
        data_len: u64,
        offsets: &[u32],
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(HEADER_BYTES + offsets.len() * 4 + 4);
        buf.extend_from_slice(&INDEX_MAGIC);
        buf.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
        buf.extend_from_slice(&first_seq.to_le_bytes());
        buf.extend_from_slice(&data_len.to_le_bytes());
        for o in offsets {
            buf.extend_from_slice(&o.to_le_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        write_atomically(path, &buf)
    }

    /// Loads and checks the index at `path` for a segment of `data_len` bytes starting at
    /// `first_seq`; the reason when it is missing or does not verify.
    pub fn load(path: &Path, first_seq: u64, data_len: u64) -> Result<SegmentIndex, &'static str> {
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
        if u16::from_le_bytes([b[8], b[9]]) != INDEX_VERSION || b[10..12] != [0, 0] {
            return Err("unsupported version");
        }
        if body.len() != HEADER_BYTES + count * 4 {
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
            entries: all.slice(HEADER_BYTES..HEADER_BYTES + count * 4),
            data_len,
        })
    }
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
