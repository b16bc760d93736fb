//! [`Reservation`]: the sequences a namespace may hand out before they are synced, recorded
//! durably ahead of them, so that a crash that loses an unsynced tail never hands those
//! sequences out again (log format 2.4).
//!
//! **Why.** Under `interval` and `never` an event is visible and acknowledged before its
//! record is synced. A power cut may then lose the tail, recovery cuts it, and without a
//! record of how far the sequences went the next events would be numbered as the lost ones
//! were: a reader that saw sequence `N` would see another event as `N`. Under `always` an
//! event is visible and acknowledged only after its sync, so a cut loses only sequences
//! nobody saw: no reservation is kept.
//!
//! **Rule.** The writer never hands out a sequence above the **mark** recorded here. When
//! fewer than half a block is left, a new mark one block ahead is written and synced on a
//! step of the writer job (never on an appender's thread, never once per group); a group
//! that would pass the mark first waits for it. At open after an unclean shutdown a mark
//! above what recovery found makes the namespace continue above it (`hole`); after a clean
//! close the checkpoint knows the next sequence and the mark is ignored.
//!
//! **Block.** [`MIN_BLOCK`] sequences, doubled (up to [`MAX_BLOCK`]) when the previous
//! reservation is less than [`GROW_WITHIN`] old and halved when it is more than
//! [`SHRINK_AFTER`] old: a busy namespace syncs this file about once a second at most, and
//! an idle one leaves holes of a few thousand sequences after a crash.
//!
//! **Same boot.** A process crash loses nothing that was written (the page cache survives
//! it); only a power cut loses an unsynced tail, and a power cut means a new boot. Each slot
//! carries the boot id of the run that wrote it ([`FileSystem::boot_id`]): a mark written in
//! the running boot makes no hole (what recovery found is every sequence handed out); a mark
//! from an earlier boot covers nothing handed out in this one, so the first append after open
//! renews it.
//!
//! **File** `reservation` in the namespace directory: two copies of a 48-byte slot, at
//! offsets 0 and 4096 (separate blocks: a torn write damages one copy at most), written in
//! turn, each write synced (`fdatasync`; the directory synced when the file is created).
//! The mark is the highest of the copies that verify. A slot, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BUSRSV\r\n` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 4 | namespace incarnation |
//! | 16 | 8 | mark: no sequence above it was handed out |
//! | 24 | 16 | boot id of the run that wrote it (zeros: unknown) |
//! | 40 | 4 | reserved, 0 |
//! | 44 | 4 | CRC-32 of bytes 0..44 |
//!
//! **Damage.** A file in which neither copy verifies (or whose incarnation is another's) is
//! [`Found::Damaged`]: never a panic, never a lower mark. Open then continues above the most
//! sequences the active segment could have held ([`fallback_mark`]), which bounds every
//! sequence handed out, since every older segment was synced when it was sealed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StorageError;
use super::config::MAX_SEGMENT_BYTES;
use super::io::{DataFile, FileSystem};
use super::log::MAX_BATCH_BYTES;
use super::record;

/// The reservation file's name in a namespace directory.
pub const RESERVATION_FILE: &str = "reservation";
/// Magic number at the start of each slot.
const MAGIC: [u8; 8] = *b"BUSRSV\r\n";
/// Format version of a slot.
const VERSION: u16 = 1;
/// Size of one slot.
pub const SLOT_BYTES: usize = 48;
/// Where a slot's CRC is: it covers every byte before it.
const CRC_AT: usize = 44;
/// Where the two slots are: 4 KiB apart, so that one torn write cannot damage both.
pub const SLOT_OFFSETS: [u64; 2] = [0, 4096];
/// Fewest sequences reserved at once.
pub const MIN_BLOCK: u64 = 4096;
/// Most sequences reserved at once (the hole a crash of a busy namespace leaves).
pub const MAX_BLOCK: u64 = 1 << 20;
/// A reservation made less than this after the previous one doubles the block.
pub const GROW_WITHIN: Duration = Duration::from_secs(1);
/// A reservation made more than this after the previous one halves the block.
pub const SHRINK_AFTER: Duration = Duration::from_secs(10);
/// The most one reservation moves the mark: a block, plus the events of the largest batch
/// (a batch that passes the mark reserves a block above its own last sequence).
pub const MAX_STEP: u64 = MAX_BLOCK + (MAX_BATCH_BYTES / SMALLEST_RECORD_BYTES) as u64 + 1;
/// The smallest record: no more records than this divides into fit in a number of bytes.
const SMALLEST_RECORD_BYTES: usize = record::FRAME_HEADER_BYTES + record::MIN_BODY_BYTES;

/// What the namespace directory's reservation file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No file: nothing was ever reserved (a version-1 directory, or an `always` one).
    None,
    /// No sequence above `mark` was handed out; `boot` is the boot it was written in, when
    /// known (and not when a copy is damaged).
    Mark {
        /// The mark.
        mark: u64,
        /// The boot id of the run that wrote it.
        boot: Option<[u8; 16]>,
    },
    /// A file that does not give a mark, and why.
    Damaged(String),
}

/// A slot's contents.
type Slot = (u64, Option<[u8; 16]>);

/// Encodes a slot holding `mark`, written in `boot`.
fn encode_slot(incarnation: u32, mark: u64, boot: Option<[u8; 16]>) -> [u8; SLOT_BYTES] {
    let mut s = [0u8; SLOT_BYTES];
    s[0..8].copy_from_slice(&MAGIC);
    s[8..10].copy_from_slice(&VERSION.to_le_bytes());
    s[12..16].copy_from_slice(&incarnation.to_le_bytes());
    s[16..24].copy_from_slice(&mark.to_le_bytes());
    s[24..40].copy_from_slice(&boot.unwrap_or_default());
    let crc = crc32fast::hash(&s[..CRC_AT]);
    s[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    s
}

/// Checks, then parses, one slot: its mark and boot, or what is wrong.
fn decode_slot(s: &[u8], incarnation: u32) -> Result<Slot, &'static str> {
    let Some(s) = s.get(..SLOT_BYTES) else {
        return Err("slot shorter than 48 bytes");
    };
    let crc = u32::from_le_bytes([s[44], s[45], s[46], s[47]]);
    if crc32fast::hash(&s[..CRC_AT]) != crc {
        return Err("slot checksum mismatch");
    }
    if s[0..8] != MAGIC {
        return Err("bad magic");
    }
    if u16::from_le_bytes([s[8], s[9]]) != VERSION {
        return Err("unsupported reservation format version");
    }
    if s[10..12] != [0, 0] || s[40..44] != [0; 4] {
        return Err("reserved bytes are not zero");
    }
    if u32::from_le_bytes([s[12], s[13], s[14], s[15]]) != incarnation {
        return Err("written by another incarnation of the namespace");
    }
    let mut mark = [0u8; 8];
    mark.copy_from_slice(&s[16..24]);
    let mut boot = [0u8; 16];
    boot.copy_from_slice(&s[24..40]);
    Ok((
        u64::from_le_bytes(mark),
        Some(boot).filter(|b| b != &[0; 16]),
    ))
}

/// The slot holding the highest mark among those that verify in `data`, that mark, and
/// whether the other slot is damaged (present, but does not verify).
fn best_slot(data: &[u8], incarnation: u32) -> Result<(usize, Slot, bool), String> {
    let mut best: Option<(usize, Slot)> = None;
    let mut why = Vec::new();
    for (i, &at) in SLOT_OFFSETS.iter().enumerate() {
        // The second copy is absent until the file's second write: not damage.
        if i > 0 && data.len() as u64 <= at {
            continue;
        }
        let slot = data.get(at as usize..).unwrap_or(&[]);
        match decode_slot(slot, incarnation) {
            Ok(slot) if best.is_none_or(|(_, (m, _))| slot.0 > m) => best = Some((i, slot)),
            Ok(_) => {}
            Err(reason) => why.push(format!("copy {i}: {reason}")),
        }
    }
    match best {
        Some((slot, mark)) => Ok((slot, mark, !why.is_empty())),
        None => Err(why.join("; ")),
    }
}

/// Reads the reservation file in `dir` for the namespace of `incarnation`. When one copy is
/// damaged the mark is the other's plus the most one reservation can move it
/// ([`MAX_STEP`]): the damaged copy may have held the newer mark (a torn write never did, but
/// a copy damaged after its sync may have).
pub fn read(dir: &Path, incarnation: u32) -> Found {
    let path = dir.join(RESERVATION_FILE);
    match std::fs::read(&path) {
        Ok(data) => match best_slot(&data, incarnation) {
            Ok((_, (mark, boot), false)) => Found::Mark { mark, boot },
            Ok((_, (mark, _), true)) => {
                let mark = mark.saturating_add(MAX_STEP);
                tracing::warn!(file = %path.display(), mark, "one copy of the reservation is damaged: the mark is taken one most reservation above the other");
                Found::Mark { mark, boot: None }
            }
            Err(why) => Found::Damaged(why),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::None,
        Err(e) => Found::Damaged(format!("cannot read it: {e}")),
    }
}

/// The mark to continue above when the reservation file is damaged: the most sequences the
/// active segment numbered `active_first` could hold (a segment of the largest size, or one
/// batch of the largest size that fits no segment), minus one. Every segment before it was
/// synced when it was sealed, so no sequence above this was handed out.
pub fn fallback_mark(active_first: u64) -> u64 {
    let bytes = MAX_SEGMENT_BYTES.max(MAX_BATCH_BYTES as u64);
    active_first.saturating_add(bytes / SMALLEST_RECORD_BYTES as u64)
}

/// The writer's side: the mark recorded durably, and how to move it ahead.
pub(crate) struct Reservation {
    /// The namespace directory (synced when the file is created).
    dir: PathBuf,
    /// The file.
    path: PathBuf,
    /// Written into every slot.
    incarnation: u32,
    /// The file, once opened or created by this run.
    file: Option<Arc<dyn DataFile>>,
    /// Whether the file holds a copy that verifies (it is then opened and written in turn;
    /// otherwise it is created afresh).
    valid: bool,
    /// The slot written next: never the one holding the mark.
    next_slot: usize,
    /// The mark: durable, and no sequence above it has been handed out.
    mark: u64,
    /// The highest mark in the file: every new one is above it (never lower, and the copy
    /// written last is the one read).
    floor: u64,
    /// Sequences reserved at a time, as it stands.
    block: u64,
    /// When the last reservation was made.
    last: Option<Instant>,
    /// The next sequence when the writer started.
    opened_at: u64,
}

impl Reservation {
    /// The reservation of the namespace in `dir`, when nothing above `handed_out` has been
    /// handed out yet (at open: the next sequence minus one, above any mark open honoured),
    /// in the boot `boot`. A mark the file holds covers sequences handed out in this run only
    /// if it was written in this boot: otherwise the first one handed out makes a new
    /// reservation, which names this boot, so that a process crash in it makes no hole.
    pub(crate) fn new(
        dir: &Path,
        incarnation: u32,
        handed_out: u64,
        boot: Option<[u8; 16]>,
    ) -> Reservation {
        let path = dir.join(RESERVATION_FILE);
        let (valid, next_slot, floor, file_boot) = match std::fs::read(&path) {
            // The slot written next is the other one (a damaged one is written over first).
            Ok(data) => match best_slot(&data, incarnation) {
                Ok((slot, (mark, file_boot), _)) => (true, 1 - slot, mark, file_boot),
                Err(_) => (false, 0, 0, None),
            },
            Err(_) => (false, 0, 0, None),
        };
        let this_boot = boot.is_some() && file_boot == boot;
        Reservation {
            dir: dir.to_owned(),
            path,
            incarnation,
            file: None,
            valid,
            next_slot,
            mark: if this_boot {
                floor.max(handed_out)
            } else {
                handed_out
            },
            floor,
            block: MIN_BLOCK,
            last: None,
            opened_at: handed_out.saturating_add(1),
        }
    }

    /// Sequences from `next_seq` on that may be handed out without a new reservation.
    pub(crate) fn left(&self, next_seq: u64) -> u64 {
        (self.mark + 1).saturating_sub(next_seq)
    }

    /// Whether sequences were handed out since the writer started (until then an idle
    /// namespace reserves nothing, and writes no file).
    pub(crate) fn handed_out(&self, next_seq: u64) -> bool {
        next_seq > self.opened_at
    }

    /// Whether a new reservation should be made ahead: less than half a block is left.
    pub(crate) fn due(&self, next_seq: u64) -> bool {
        self.left(next_seq) < self.block / 2
    }

    /// Records durably a new mark at least one block above `need` (the highest sequence
    /// about to be handed out). On an error the mark stays where it was.
    pub(crate) fn extend(&mut self, fs: &dyn FileSystem, need: u64) -> Result<(), StorageError> {
        let now = Instant::now();
        self.block = match self.last.map(|t| now.duration_since(t)) {
            Some(d) if d < GROW_WITHIN => (self.block * 2).min(MAX_BLOCK),
            Some(d) if d > SHRINK_AFTER => (self.block / 2).max(MIN_BLOCK),
            _ => self.block,
        };
        let mark = need
            .max(self.mark)
            .saturating_add(self.block)
            .max(self.floor.saturating_add(1));
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = if self.valid {
                    fs.open(&self.path)
                        .map_err(|e| StorageError::io("open", &self.path, e))?
                } else {
                    let f = fs
                        .create(&self.path)
                        .map_err(|e| StorageError::io("create", &self.path, e))?;
                    self.next_slot = 0;
                    f
                };
                self.file = Some(f.clone());
                f
            }
        };
        let at = SLOT_OFFSETS[self.next_slot];
        let slot = encode_slot(self.incarnation, mark, fs.boot_id());
        file.write_all_at(&slot, at)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        file.sync_data()
            .map_err(|e| StorageError::io("fdatasync", &self.path, e))?;
        if !self.valid {
            fs.sync_dir(&self.dir)
                .map_err(|e| StorageError::io("fsync", &self.dir, e))?;
            self.valid = true;
        }
        self.next_slot = 1 - self.next_slot;
        self.mark = mark;
        self.floor = mark;
        self.last = Some(now);
        Ok(())
    }
}

/// Deletes the reservation file in `dir`, if there is one (a namespace under `always` keeps
/// none); a failure is only logged: a mark left behind can only make a hole, never a reuse.
pub(crate) fn remove(dir: &Path) {
    let path = dir.join(RESERVATION_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(file = %path.display(), error = %e, "could not delete the reservation file");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::StdFs;

    #[test]
    fn a_slot_round_trips_and_every_flip_is_caught() {
        let s = encode_slot(0xdead_beef, 4242, Some([9; 16]));
        assert_eq!(decode_slot(&s, 0xdead_beef), Ok((4242, Some([9; 16]))));
        let unknown = encode_slot(0xdead_beef, 4242, None);
        assert_eq!(decode_slot(&unknown, 0xdead_beef), Ok((4242, None)));
        assert!(decode_slot(&s, 7).is_err());
        for i in 0..SLOT_BYTES {
            let mut bad = s;
            bad[i] ^= 0x04;
            assert!(
                decode_slot(&bad, 0xdead_beef).is_err(),
                "flip at {i} passed"
            );
        }
        assert!(decode_slot(&[0; SLOT_BYTES], 0).is_err());
        assert!(decode_slot(&s[..SLOT_BYTES - 1], 0xdead_beef).is_err());
    }

    #[test]
    fn the_mark_only_grows_and_survives_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), 7), Found::None);
        let mut r = Reservation::new(dir.path(), 7, 10, StdFs.boot_id());
        assert_eq!(r.left(11), 0);
        r.extend(&StdFs, 11).unwrap();
        let first = r.mark;
        assert_eq!(first, 11 + MIN_BLOCK);
        assert_eq!(
            read(dir.path(), 7),
            Found::Mark {
                mark: first,
                boot: StdFs.boot_id()
            }
        );
        r.extend(&StdFs, 12).unwrap();
        let second = r.mark;
        assert!(second > first);
        assert_eq!(
            read(dir.path(), 7),
            Found::Mark {
                mark: second,
                boot: StdFs.boot_id()
            }
        );
        // Damage to the copy holding the newest mark: the other one, plus the most a
        // reservation moves it, so never lower than the damaged one could have said.
        let path = dir.path().join(RESERVATION_FILE);
        let mut data = std::fs::read(&path).unwrap();
        data[SLOT_OFFSETS[1] as usize + 17] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            read(dir.path(), 7),
            Found::Mark {
                mark: first + MAX_STEP,
                boot: None
            }
        );
        assert!(first + MAX_STEP > second);
        // A writer reopening it writes over the damaged copy, never over the good one.
        let mut r = Reservation::new(dir.path(), 7, 12, StdFs.boot_id());
        assert_eq!(r.mark, first);
        r.extend(&StdFs, 13).unwrap();
        assert_eq!(
            read(dir.path(), 7),
            Found::Mark {
                mark: first + MIN_BLOCK,
                boot: StdFs.boot_id()
            }
        );
        data = std::fs::read(&path).unwrap();
        assert_eq!(decode_slot(&data[..SLOT_BYTES], 7).map(|s| s.0), Ok(first));
    }

    #[test]
    fn both_copies_damaged_or_another_incarnation_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESERVATION_FILE);
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(read(dir.path(), 7), Found::Damaged(_)));
        std::fs::write(&path, encode_slot(8, 100, None)).unwrap();
        let Found::Damaged(why) = read(dir.path(), 7) else {
            panic!("another incarnation's mark was taken");
        };
        assert!(why.contains("another incarnation"), "{why}");
        // A writer creates it afresh, with the mark above what was handed out.
        let mut r = Reservation::new(dir.path(), 7, 50, StdFs.boot_id());
        r.extend(&StdFs, 51).unwrap();
        assert_eq!(
            read(dir.path(), 7),
            Found::Mark {
                mark: 51 + MIN_BLOCK,
                boot: StdFs.boot_id()
            }
        );
    }

    #[test]
    fn the_fallback_is_above_every_sequence_a_segment_can_hold() {
        let smallest = SMALLEST_RECORD_BYTES as u64;
        assert!(fallback_mark(1) > MAX_SEGMENT_BYTES / smallest);
        assert_eq!(fallback_mark(u64::MAX), u64::MAX);
    }
}
