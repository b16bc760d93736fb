//! Salvage: the records that still verify in a damaged segment, found by scanning past the
//! damage, each with the sequence it carries.
//!
//! **Resynchronising.** From offset 32 (the header is not trusted: a damaged header must not
//! hide the records behind it), records are decoded one after another. Where one does not
//! verify, the scan moves on one byte at a time and accepts a record at a position only if
//! it decodes fully (length within bounds, CRC, strict body) **and** its sequence is above
//! the last one accepted and within the range the segment may hold. Once accepted, a record
//! is skipped whole, so the payload of a verified record is never searched: a record
//! embedded in a payload can only be met inside bytes that are already damaged, and must
//! then still pass both checks.
//!
//! **Bound.** One segment is read whole (at most `segment_bytes`, or one batch larger than
//! it), as recovery does; the records found are borrowed from those bytes.

use std::ops::Range;

use super::record::{self, Decoded, RecordView};
use super::segment::SEGMENT_HEADER_BYTES;

/// What salvage found in one segment.
#[derive(Debug, Default)]
pub struct SegmentSalvage<'a> {
    /// The records that verify, in file order (their sequences ascend), with their offsets.
    pub records: Vec<(usize, RecordView<'a>)>,
    /// The byte ranges that held no verified record (damage, or a torn tail).
    pub damaged: Vec<Range<usize>>,
}

/// Scans the bytes `data` of one segment: every record that verifies and whose sequence is
/// in `sequences` and above the previous one accepted.
pub fn scan(data: &[u8], sequences: Range<u64>) -> SegmentSalvage<'_> {
    let mut out = SegmentSalvage::default();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut last: Option<u64> = None;
    let mut bad_from: Option<usize> = None;
    while pos < data.len() {
        let rest = &data[pos..];
        let fits = record::claimed_len(rest).is_some_and(|n| n <= rest.len());
        let accepted = match fits.then(|| record::decode(rest)) {
            Some(Decoded::Record(r, n))
                if sequences.contains(&r.sequence) && last.is_none_or(|l| r.sequence > l) =>
            {
                Some((r, n))
            }
            _ => None,
        };
        match accepted {
            Some((r, n)) => {
                if let Some(from) = bad_from.take() {
                    out.damaged.push(from..pos);
                }
                last = Some(r.sequence);
                out.records.push((pos, r));
                pos += n;
            }
            None => {
                bad_from.get_or_insert(pos);
                pos += 1;
            }
        }
    }
    if let Some(from) = bad_from {
        out.damaged.push(from..data.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::NewEvent;
    use crate::storage::segment::encode_header;

    fn segment(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut data = encode_header(7, 1).to_vec();
        let mut starts = Vec::new();
        for seq in 1..=n {
            starts.push(data.len());
            let e = NewEvent::new(format!("k.{seq}"), format!("value {seq}"));
            record::encode(&mut data, &e, seq, 1, 0, format!("s-{seq}-00000007"));
        }
        (data, starts)
    }

    #[test]
    fn a_healthy_segment_salvages_every_record() {
        let (data, _) = segment(5);
        let s = scan(&data, 1..u64::MAX);
        let seqs: Vec<u64> = s.records.iter().map(|(_, r)| r.sequence).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert!(s.damaged.is_empty());
    }

    #[test]
    fn a_flip_anywhere_loses_exactly_its_record() {
        let (data, starts) = segment(6);
        for byte in SEGMENT_HEADER_BYTES..data.len() {
            let mut d = data.clone();
            d[byte] ^= 0x10;
            let s = scan(&d, 1..u64::MAX);
            let hit = starts.iter().rposition(|&s| s <= byte).unwrap() as u64 + 1;
            let seqs: Vec<u64> = s.records.iter().map(|(_, r)| r.sequence).collect();
            let want: Vec<u64> = (1..=6).filter(|&q| q != hit).collect();
            assert_eq!(seqs, want, "flip at {byte}");
            assert_eq!(s.damaged.len(), 1, "flip at {byte}");
        }
    }

    #[test]
    fn a_damaged_header_hides_no_record() {
        let (mut data, _) = segment(3);
        data[3] ^= 0xff;
        assert_eq!(scan(&data, 1..u64::MAX).records.len(), 3);
    }

    #[test]
    fn a_record_out_of_range_or_order_is_not_accepted() {
        let (data, _) = segment(4);
        assert_eq!(scan(&data, 2..4).records.len(), 2);
        // The same record twice: the second carries no higher sequence.
        let (mut one, starts) = segment(1);
        let rec = one[starts[0]..].to_vec();
        one.extend_from_slice(&rec);
        assert_eq!(scan(&one, 1..u64::MAX).records.len(), 1);
    }
}
