//! Recovery of the active (last) segment at open.
//!
//! The active segment is scanned record by record, verifying each. Where the valid records
//! stop, one of two things is true:
//!
//! - a **torn tail**: nothing valid follows (only zeros or a fragment of a record). It was
//!   never acknowledged; it is truncated, synced and reported (file, offset, bytes cut). A
//!   batch whose last records are missing is torn too: all of it is cut.
//! - **corruption**: a valid record follows the bad one. Opening is refused with an error
//!   naming file, offset and sequence, unless repair was asked for, which truncates at the
//!   damage and reports how many events were lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StorageError;
use super::io::DataFile;
use super::quarantine;
use super::record::{self, Decoded};
use super::segment::{self, SEGMENT_HEADER_BYTES};

/// What the scan found in the active segment.
#[derive(Debug, Default)]
pub struct ActiveScan {
    /// Namespace incarnation from the header (None when the header was torn and rewritten).
    pub incarnation: Option<u32>,
    /// The header's format version (meaningful with `incarnation`).
    pub version: u16,
    /// Offset of each valid record.
    pub offsets: Vec<u32>,
    /// Time of each valid record.
    pub times: Vec<u64>,
    /// Dedup ids seen, with their sequence and time.
    pub msg_ids: Vec<(String, u64, u64)>,
    /// End of the last valid record: the segment's length after recovery.
    pub end: u64,
    /// A torn tail that was cut.
    pub torn: Option<TornTail>,
    /// Damage that repair cut.
    pub repaired: Option<Repair>,
}

/// A torn tail that was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Offset the segment was truncated at.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_cut: u64,
    /// The sequence the first cut record would have had (the next sequence written).
    pub sequence: u64,
    /// Where the cut bytes were kept (`<namespace dir>/quarantine/`), when they were.
    pub quarantined: Option<std::path::PathBuf>,
}

/// Corruption that repair cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Offset the segment was truncated at.
    pub offset: u64,
    /// Sequence of the first event lost.
    pub first_lost: u64,
    /// Events lost: from the damaged one to the last valid one found after it.
    pub events_lost: u64,
    /// What was wrong.
    pub reason: String,
}

/// Scans, and if needed truncates, the active segment `file` at `path`. With `quarantine`
/// set, whatever is cut is first kept in the namespace's `quarantine/` directory
/// ([`quarantine::keep`]); the offline tools, which scan copies, leave it unset. With
/// `keep_partial_batch` set (the state log only, see
/// [`LogConfig::keep_partial_batch`](super::LogConfig::keep_partial_batch)), the valid records
/// of an incomplete last batch are kept.
pub fn scan_active(
    path: &Path,
    file: &Arc<dyn DataFile>,
    first_seq: u64,
    repair: bool,
    quarantine: bool,
    keep_partial_batch: bool,
) -> Result<ActiveScan, StorageError> {
    let len = file.len().map_err(|e| StorageError::io("stat", path, e))?;
    let mut data = vec![0u8; len as usize];
    let mut read = 0;
    while read < data.len() {
        let n = file
            .read_at(&mut data[read..], read as u64)
            .map_err(|e| StorageError::io("read", path, e))?;
        if n == 0 {
            data.truncate(read);
            break;
        }
        read += n;
    }
    let mut scan = ActiveScan::default();

    // The header: a torn one (short, or all zeros) in an otherwise empty file is rewritten.
    match segment::check_header(&data, first_seq) {
        Ok(inc) => {
            scan.incarnation = Some(inc);
            scan.version = segment::header_version(&data);
        }
        Err(reason) => {
            let header_torn = data.iter().all(|&b| b == 0) || data.len() < SEGMENT_HEADER_BYTES;
            // A newer format is not damage: even repair leaves it alone.
            let newer = segment::unknown_version(&data).is_some();
            if newer || (!header_torn && !repair) {
                return Err(StorageError::corrupt(path, 0, first_seq, reason));
            }
            if !header_torn {
                let events_lost = last_valid_after(&data, SEGMENT_HEADER_BYTES, first_seq)
                    .map_or(0, |last| last + 1 - first_seq);
                scan.repaired = Some(Repair {
                    offset: 0,
                    first_lost: first_seq,
                    events_lost,
                    reason,
                });
            } else if !data.is_empty() {
                scan.torn = Some(TornTail {
                    offset: 0,
                    bytes_cut: data.len() as u64,
                    sequence: first_seq,
                    quarantined: None,
                });
            }
            let kept = keep_cut(quarantine, path, 0, &data);
            if let Some(t) = &mut scan.torn {
                t.quarantined = kept;
            }
            file.set_len(0)
                .map_err(|e| StorageError::io("truncate", path, e))?;
            scan.end = 0;
            return Ok(scan);
        }
    }

    let mut pos = SEGMENT_HEADER_BYTES;
    let mut seq = first_seq;
    // Where the batch that the last valid record belongs to begins: (offset, record count).
    let mut batch_begin = (pos, 0usize);
    let mut batch_open = false;
    let mut bad_reason = None;
    while pos < data.len() {
        match record::decode(&data[pos..]) {
            Decoded::Record(r, n) if r.sequence == seq => {
                if !batch_open {
                    batch_begin = (pos, scan.offsets.len());
                }
                batch_open = r.batch_left > 0;
                scan.offsets.push(pos as u32);
                scan.times.push(r.time_ns);
                if let Some(m) = r.msg_id {
                    scan.msg_ids.push((m.to_owned(), r.sequence, r.time_ns));
                }
                pos += n;
                seq += 1;
            }
            Decoded::Record(..) => {
                bad_reason = Some("sequence out of order");
                break;
            }
            Decoded::Invalid(reason) => {
                bad_reason = Some(reason);
                break;
            }
            Decoded::Incomplete => {
                bad_reason = Some("incomplete record");
                break;
            }
        }
    }

    if let Some(reason) = bad_reason
        && let Some(last) = last_valid_after(&data, pos + 1, seq)
    {
        if !repair {
            return Err(StorageError::corrupt(path, pos as u64, seq, reason));
        }
        scan.repaired = Some(Repair {
            offset: pos as u64,
            first_lost: seq,
            events_lost: last.max(seq) + 1 - seq,
            reason: reason.into(),
        });
    }
    // A batch missing its last records was never acknowledged: cut all of it.
    if batch_open && !keep_partial_batch {
        let (begin, count) = batch_begin;
        if let Some(r) = &mut scan.repaired {
            // The incomplete batch before the damage is lost too.
            let cut = scan.offsets.len() - count;
            r.first_lost -= cut as u64;
            r.events_lost += cut as u64;
            r.offset = begin as u64;
        }
        scan.offsets.truncate(count);
        scan.times.truncate(count);
        scan.msg_ids.retain(|m| m.1 < first_seq + count as u64);
        pos = begin;
    }
    if pos < data.len() {
        let kept = keep_cut(quarantine, path, pos as u64, &data[pos..]);
        if scan.repaired.is_none() {
            scan.torn = Some(TornTail {
                offset: pos as u64,
                bytes_cut: (data.len() - pos) as u64,
                sequence: first_seq + scan.offsets.len() as u64,
                quarantined: kept,
            });
        }
        file.set_len(pos as u64)
            .map_err(|e| StorageError::io("truncate", path, e))?;
        file.sync_data()
            .map_err(|e| StorageError::io("fdatasync", path, e))?;
    }
    scan.end = pos as u64;
    Ok(scan)
}

/// Keeps the bytes about to be cut at `offset` of `path` in quarantine, when asked to:
/// the file written, or `None` (not asked, nothing to keep, or it failed: logged).
fn keep_cut(quarantine: bool, path: &Path, offset: u64, bytes: &[u8]) -> Option<PathBuf> {
    if !quarantine || bytes.is_empty() {
        return None;
    }
    match quarantine::keep(path, offset, bytes) {
        Ok(kept) => Some(kept),
        Err(e) => {
            tracing::warn!(file = %path.display(), offset, bytes = bytes.len(), error = %e, "could not keep the cut bytes in quarantine; cutting anyway");
            None
        }
    }
}

/// The last sequence of the chain of valid records found at or after `from` that could
/// follow sequence `seq`; `None` means what follows the damage is only a fragment or zeros
/// (a torn tail).
fn last_valid_after(data: &[u8], from: usize, seq: u64) -> Option<u64> {
    // The most records that could still fit bounds the sequences a later record can carry,
    // which makes a random match in garbage vanishingly unlikely before the CRC is checked.
    let max_records = (data.len() / (record::FRAME_HEADER_BYTES + record::MIN_BODY_BYTES)) as u64;
    let mut p = from;
    while p < data.len() {
        let rest = &data[p..];
        let plausible = record::claimed_len(rest).is_some_and(|n| n <= rest.len())
            && record::peek_sequence(rest).is_some_and(|s| s >= seq && s <= seq + max_records);
        if plausible && let Decoded::Record(first, n) = record::decode(rest) {
            // Follow the chain of valid records from here.
            let mut last = first.sequence;
            let mut q = p + n;
            while let Decoded::Record(r, n) = record::decode(&data[q..]) {
                if r.sequence != last + 1 {
                    break;
                }
                last = r.sequence;
                q += n;
            }
            return Some(last);
        }
        p += 1;
    }
    None
}
