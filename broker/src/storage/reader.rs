//! [`Reader`]: a cursor that reads a namespace's log forward from a position.
//!
//! Sealed segments are read straight from their memory map (payloads are zero-copy slices
//! of it); the active segment is read with positioned reads in chunks of up to
//! [`CHUNK_BYTES`], never past the visible end. Every record's checksum is verified on every
//! read: damage reaches the reader as [`StorageError::Corrupt`] naming file, offset and
//! sequence, and the reader stays where it was. A reader whose position was deleted by
//! retention gets a [`ReadItem::Gap`] saying from where it resumes (reason `retention`); one
//! whose position is a hole a repair left in a version-2 segment gets one with the reason
//! `damaged`, found through the segment's index (the next record it holds). A reader at the end
//! waits on the writer's notification, without polling. Its memory does not grow with its
//! lag: it holds at most one chunk (or one map).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::io::DataFile;
use super::record::{self, Decoded};
use super::shared::{Located, Shared};
use super::{GapReason, IdLookup, LogReader, ReadItem, Start, StorageError};

/// Most bytes a reader reads from the active segment at once (a larger record is read whole).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Bytes being decoded: a sealed segment's map, or a chunk of the active segment.
struct Chunk {
    bytes: Bytes,
    /// Position of the next record in `bytes`.
    pos: usize,
    /// End of the records in `bytes`.
    end: usize,
    /// Offset of `bytes[0]` in the file (for error reports).
    file_offset: u64,
    /// A chunk of the active segment, which may end inside a record.
    partial: bool,
    /// The file read, for error reports.
    path: PathBuf,
    /// For a version-2 sealed segment, its last sequence: its records may skip sequences up
    /// to it (holes). `None` where every sequence is present.
    holes_up_to: Option<u64>,
}

/// Reads one namespace's log forward.
pub struct Reader {
    /// The log read.
    shared: Arc<Shared>,
    /// The sequence of the next event to return.
    next: u64,
    /// The newest visible sequence, waited on at the end.
    tail: watch::Receiver<u64>,
    /// The bytes being decoded, if any.
    chunk: Option<Chunk>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("namespace", &self.shared.name())
            .field("next", &self.next)
            .finish()
    }
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, start: Start) -> Result<Reader, StorageError> {
        let tail = shared.subscribe_tail();
        let next = match start {
            Start::Oldest => shared.first_seq(),
            Start::Newest => shared.next_seq(),
            Start::Sequence(s) => s.max(1),
            Start::AfterId(id) => match shared.lookup_id(&id) {
                IdLookup::Found(s) | IdLookup::Deleted { sequence: s, .. } => s + 1,
                IdLookup::Unknown => return Err(StorageError::UnknownEvent(id)),
            },
            Start::Time(t) => seek_time(&shared, t).inspect_err(|e| {
                if let Some(c) = e.corruption() {
                    shared.set_damage(c);
                }
            })?,
        };
        Ok(Reader {
            shared,
            next,
            tail,
            chunk: None,
        })
    }

    /// Decodes the next record of the current chunk, if it holds one.
    fn decode_chunk(&mut self) -> Result<Option<ReadItem>, StorageError> {
        let Some(c) = &mut self.chunk else {
            return Ok(None);
        };
        if c.pos >= c.end {
            self.chunk = None;
            return Ok(None);
        }
        match record::decode(&c.bytes[c.pos..c.end]) {
            Decoded::Record(r, n) if r.sequence == self.next => {
                let event = r.to_event(c.bytes.slice_ref(r.payload));
                c.pos += n;
                self.next += 1;
                Ok(Some(ReadItem::Event(event)))
            }
            // A hole: the record, verified, is read next.
            Decoded::Record(r, _)
                if r.sequence > self.next && c.holes_up_to.is_some_and(|l| r.sequence <= l) =>
            {
                let gap = ReadItem::Gap {
                    missed_from: self.next,
                    resume_at: r.sequence,
                    reason: GapReason::Damaged,
                };
                self.next = r.sequence;
                Ok(Some(gap))
            }
            // A chunk of the active segment cut a record short: read again from it.
            Decoded::Incomplete if c.partial && c.pos > 0 => {
                self.chunk = None;
                Ok(None)
            }
            other => {
                let reason = match other {
                    Decoded::Invalid(r) => r,
                    Decoded::Incomplete => "segment ends inside a record",
                    Decoded::Record(..) => "sequence out of order",
                };
                let offset = c.file_offset + c.pos as u64;
                let path = c.path.clone();
                self.chunk = None;
                self.shared
                    .metrics()
                    .corrupt_reads
                    .fetch_add(1, Ordering::Relaxed);
                Err(StorageError::corrupt(path, offset, self.next, reason))
            }
        }
    }

    /// Positions a chunk at `self.next`, or says why not: a gap, or nothing visible yet.
    fn refill(&mut self) -> Result<Option<ReadItem>, StorageError> {
        match self.shared.locate(self.next) {
            Located::Deleted(first_seq) => {
                let gap = ReadItem::Gap {
                    missed_from: self.next,
                    resume_at: first_seq,
                    reason: GapReason::Retention,
                };
                self.next = first_seq;
                return Ok(Some(gap));
            }
            Located::NotYet => return Ok(None),
            Located::Sealed(seg) => {
                let loaded = match seg.load() {
                    Ok(l) => l,
                    // Retention may have deleted the segment since the view was read: that is
                    // a gap, not an error.
                    Err(e) => {
                        let first = self.shared.first_seq();
                        if self.next < first {
                            let gap = ReadItem::Gap {
                                missed_from: self.next,
                                resume_at: first,
                                reason: GapReason::Retention,
                            };
                            self.next = first;
                            return Ok(Some(gap));
                        }
                        return Err(e);
                    }
                };
                let i = match loaded.index.find(self.next) {
                    Ok(i) => i,
                    Err(i) => {
                        // A hole (only a version-2 segment has them, and its index names
                        // every record's sequence): skip to the next record held, or past
                        // the segment.
                        let resume_at = if i < loaded.index.len() {
                            loaded.index.sequence(i)
                        } else {
                            seg.last_seq + 1
                        };
                        if !loaded.index.has_holes_format() || resume_at <= self.next {
                            return Err(StorageError::corrupt(
                                &seg.path,
                                loaded.index.end_offset(),
                                self.next,
                                "segment index does not hold the sequence",
                            ));
                        }
                        let gap = ReadItem::Gap {
                            missed_from: self.next,
                            resume_at,
                            reason: GapReason::Damaged,
                        };
                        self.next = resume_at;
                        return Ok(Some(gap));
                    }
                };
                let pos = loaded.index.offset(i);
                let end = loaded.index.end_offset() as usize;
                self.chunk = Some(Chunk {
                    bytes: loaded.data.clone(),
                    pos,
                    end: end.min(loaded.data.len()),
                    file_offset: 0,
                    partial: false,
                    path: seg.path.clone(),
                    holes_up_to: loaded.index.has_holes_format().then_some(seg.last_seq),
                });
            }
            Located::Active {
                file,
                path,
                offset,
                end,
            } => {
                let avail = (end - offset) as usize;
                let mut want = avail.min(CHUNK_BYTES);
                let mut buf = read_exact(&*file, &path, offset, want)?;
                // A record larger than the chunk: read it whole (its length is checked
                // against the visible bytes, so it cannot ask for more than exists).
                if let Some(n) = record::claimed_len(&buf)
                    && n > want
                    && n <= avail
                {
                    want = n;
                    buf = read_exact(&*file, &path, offset, want)?;
                }
                let len = buf.len();
                let partial = len < avail;
                self.chunk = Some(Chunk {
                    bytes: Bytes::from(buf),
                    pos: 0,
                    end: len,
                    file_offset: offset,
                    partial,
                    path,
                    holes_up_to: None,
                });
            }
        }
        Ok(None)
    }
}

fn read_exact(
    file: &dyn DataFile,
    path: &PathBuf,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, StorageError> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = file
            .read_at(&mut buf[got..], offset + got as u64)
            .map_err(|e| StorageError::io("read", path, e))?;
        if n == 0 {
            return Err(StorageError::corrupt(
                path,
                offset + got as u64,
                0,
                "segment shorter than its visible end",
            ));
        }
        got += n;
    }
    Ok(buf)
}

impl Reader {
    /// [`LogReader::try_next`] before damage is recorded.
    fn read_next(&mut self) -> Result<Option<ReadItem>, StorageError> {
        for _ in 0..3 {
            if let Some(item) = self.decode_chunk()? {
                return Ok(Some(item));
            }
            if let Some(gap) = self.refill()? {
                return Ok(Some(gap));
            }
            if self.chunk.is_none() {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

impl LogReader for Reader {
    /// Damage met here sets the namespace aside ([`Shared::set_damage`]): a sealed segment
    /// is checked only when first read, so this is where its damage is found.
    fn try_next(&mut self) -> Result<Option<ReadItem>, StorageError> {
        self.read_next().inspect_err(|e| {
            if let Some(c) = e.corruption() {
                self.shared.set_damage(c);
            }
        })
    }

    fn next(&mut self) -> BoxFuture<'_, Result<Option<ReadItem>, StorageError>> {
        Box::pin(async move {
            loop {
                self.tail.borrow_and_update();
                if let Some(item) = self.try_next()? {
                    return Ok(Some(item));
                }
                if self.shared.is_closed() {
                    return Ok(None);
                }
                if self.tail.changed().await.is_err() {
                    return Ok(None);
                }
            }
        })
    }

    fn position(&self) -> u64 {
        self.next
    }
}

/// The sequence of the first event at or after `t` (the next sequence when there is none).
fn seek_time(shared: &Shared, t: u64) -> Result<u64, StorageError> {
    let (sealed, active_hit, next_seq) = shared.time_index(t);
    // A segment whose every record a repair lost holds no time: it sorts with the nearest
    // older segment that holds one, so the search below stays monotonic.
    let newest_time = |i: usize| -> Result<u64, StorageError> {
        for seg in sealed[..=i].iter().rev() {
            if !seg.load()?.index.is_empty() {
                return seg.last_time();
            }
        }
        Ok(0)
    };
    // The first sealed segment whose newest event is at or after `t` (O(log n) loads).
    let (mut lo, mut hi) = (0, sealed.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if newest_time(mid)? < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if let Some(seg) = sealed.get(lo) {
        let l = seg.load()?;
        let time_at =
            |i: usize| record::peek_time(&l.data[l.index.offset(i)..]).unwrap_or(u64::MAX);
        let (mut a, mut b) = (0, l.index.len());
        while a < b {
            let m = (a + b) / 2;
            if time_at(m) < t { a = m + 1 } else { b = m }
        }
        return Ok(if a < l.index.len() {
            l.index.sequence(a)
        } else {
            seg.last_seq + 1
        });
    }
    Ok(active_hit.unwrap_or(next_seq))
}
