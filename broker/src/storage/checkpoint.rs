//! The namespace checkpoint: written when a segment is sealed and at a clean close, so that
//! opening reads no sealed segment: it says whether the last close was clean and carries the
//! dedup table up to its last sequence (the records after it, in the active segment, are
//! scanned at open anyway).
//!
//! File `checkpoint` in the namespace directory, written atomically; layout little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BUSCKP\r\n` |
//! | 8 | 2 | format version (1) |
//! | 10 | 1 | 1 when written by a clean close |
//! | 11 | 1 | reserved, 0 |
//! | 12 | 4 | namespace incarnation |
//! | 16 | 8 | last sequence covered |
//! | 24 | 8 | time of that event (ns) |
//! | 32 | 4 | dedup entry count `D` |
//! | 36 | D × (2+n, 8, 8) | dedup id, sequence, time |
//! | end | 4 | CRC-32 of all bytes before it |

use std::path::Path;

use super::dedup::DedupEntry;
use super::index::write_atomically;

/// Checkpoint file name.
pub const CHECKPOINT_FILE: &str = "checkpoint";
const MAGIC: [u8; 8] = *b"BUSCKP\r\n";
const VERSION: u16 = 1;

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Written by a clean close.
    pub clean: bool,
    /// The namespace incarnation.
    pub incarnation: u32,
    /// Last sequence the checkpoint covers.
    pub last_seq: u64,
    /// Time of that event.
    pub last_time: u64,
    /// Dedup ids live at that point.
    pub dedup: Vec<(String, DedupEntry)>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically into `dir`.
    pub fn write<'a>(
        dir: &Path,
        clean: bool,
        incarnation: u32,
        last_seq: u64,
        last_time: u64,
        dedup: impl Iterator<Item = (&'a str, DedupEntry)>,
    ) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(u8::from(clean));
        b.push(0);
        b.extend_from_slice(&incarnation.to_le_bytes());
        b.extend_from_slice(&last_seq.to_le_bytes());
        b.extend_from_slice(&last_time.to_le_bytes());
        let count_at = b.len();
        b.extend_from_slice(&0u32.to_le_bytes());
        let mut count = 0u32;
        for (id, e) in dedup {
            b.extend_from_slice(&(id.len() as u16).to_le_bytes());
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&e.sequence.to_le_bytes());
            b.extend_from_slice(&e.time_ns.to_le_bytes());
            count += 1;
        }
        b[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        write_atomically(&dir.join(CHECKPOINT_FILE), &b)
    }

    /// Reads the checkpoint in `dir`: `Ok(None)` when there is none, `Err` with a reason when
    /// it does not verify (the caller then falls back to scanning).
    pub fn read(dir: &Path) -> Result<Option<Checkpoint>, &'static str> {
        let b = match std::fs::read(dir.join(CHECKPOINT_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return Err("unreadable"),
        };
        if b.len() < 40 || b[..8] != MAGIC {
            return Err("not a checkpoint");
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err("checksum mismatch");
        }
        if u16::from_le_bytes([b[8], b[9]]) != VERSION {
            return Err("unsupported version");
        }
        let u64_at = |at: usize| -> Option<u64> {
            body.get(at..at + 8).map(|s| {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_le_bytes(a)
            })
        };
        let count = u32::from_le_bytes([b[32], b[33], b[34], b[35]]) as usize;
        let mut dedup = Vec::with_capacity(count.min(body.len() / 18));
        let mut pos = 36;
        for _ in 0..count {
            let len = body.get(pos..pos + 2).ok_or("truncated")?;
            let len = u16::from_le_bytes([len[0], len[1]]) as usize;
            let id = body.get(pos + 2..pos + 2 + len).ok_or("truncated")?;
            let id = std::str::from_utf8(id).map_err(|_| "dedup id is not UTF-8")?;
            let sequence = u64_at(pos + 2 + len).ok_or("truncated")?;
            let time_ns = u64_at(pos + 10 + len).ok_or("truncated")?;
            dedup.push((id.to_owned(), DedupEntry { sequence, time_ns }));
            pos += 18 + len;
        }
        if pos != body.len() {
            return Err("trailing bytes");
        }
        Ok(Some(Checkpoint {
            clean: b[10] == 1,
            incarnation: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            last_seq: u64_at(16).ok_or("truncated")?,
            last_time: u64_at(24).ok_or("truncated")?,
            dedup,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [(
            "m1",
            DedupEntry {
                sequence: 3,
                time_ns: 9,
            },
        )];
        Checkpoint::write(dir.path(), true, 7, 42, 99, entries.into_iter()).unwrap();
        let c = Checkpoint::read(dir.path()).unwrap().unwrap();
        assert_eq!(
            (c.clean, c.incarnation, c.last_seq, c.last_time),
            (true, 7, 42, 99)
        );
        assert_eq!(c.dedup, vec![("m1".to_string(), entries[0].1)]);
        let path = dir.path().join(CHECKPOINT_FILE);
        let mut b = std::fs::read(&path).unwrap();
        b[20] ^= 1;
        std::fs::write(&path, b).unwrap();
        assert!(Checkpoint::read(dir.path()).is_err());
    }
}
