//! Opening a namespace's log: listing its directory, recovering the active segment,
//! rebuilding the dedup table, and starting the writer (a job on the shared pool) at the end
//! of what recovery kept.
//!
//! **Segments.** The files are named by their first sequence; the newest is the active
//! segment, the others are sealed. A first open creates segment 1 with a fresh incarnation.
//! Index files without their segment (left over from retention) and the active segment's
//! index (from a seal that did not finish) are removed; leftover temporary files too.
//!
//! **Recovery.** The active segment is scanned as [`recovery::scan_active`] describes: a torn
//! tail is cut, damage is an error unless repair is asked for. A torn segment header is
//! rewritten with the incarnation of the segment before it (or the checkpoint's).
//!
//! **Above the reservation.** After an unclean shutdown the active segment is synced (what
//! recovery kept may have been in the page cache only), and if the reservation's mark is
//! above the newest sequence found, the namespace continues above the mark ([`hole`]): the
//! sequences between may have been handed out and lost with an unsynced tail. After a clean
//! close the checkpoint knows the next sequence, and no hole is made.
//!
//! **No sealed segment read after a clean close.** The checkpoint written at close holds the
//! dedup table and the newest time; only segments sealed after it (a seal interrupted by a
//! crash) are read for their dedup ids. A checkpoint that says "not clean" is written before
//! the writer starts, so a crash from then on never looks clean.

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint::Checkpoint;
use super::config::{FsyncPolicy, LogConfig};
use super::dedup::{DedupEntry, DedupTable};
use super::hole::{self, ActiveSegment};
use super::io::FileSystem;
use super::open_files::BoundedFs;
use super::record::{self, Decoded};
use super::recovery::{self, Repair, TornTail};
use super::reservation::{self, Found, Reservation};
use super::segment::{self, SEGMENT_HEADER_BYTES, SealedSegment};
use super::shared::{ActiveView, Shared, View};
use super::writer::{Resume, Writer, WriterJob};
use super::{StorageError, check_namespace};

/// What opening a namespace found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The namespace.
    pub namespace: String,
    /// Events held.
    pub events: u64,
    /// Oldest sequence held.
    pub first_seq: u64,
    /// Newest sequence held.
    pub last_seq: u64,
    /// True when the last close was clean.
    pub clean_shutdown: bool,
    /// The active segment's file.
    pub active_segment: PathBuf,
    /// A torn tail that was cut from the active segment.
    pub torn: Option<TornTail>,
    /// Damage that repair cut from the active segment.
    pub repaired: Option<Repair>,
    /// Sequences skipped after an unclean shutdown because they may have been handed out
    /// before a crash lost them (the reservation, log format 2.4): a hole readers get as a
    /// gap.
    pub skipped: Option<RangeInclusive<u64>>,
}

/// A log opened: its shared state, its running writer, and what recovery found.
pub(crate) struct Opened {
    /// The state the handle, writer, syncer and readers share.
    pub shared: Arc<Shared>,
    /// The writer, running on the shared pool.
    pub writer: Arc<WriterJob>,
    /// What opening found.
    pub report: OpenReport,
}

/// Opens (creating if needed) the log of namespace `name` in directory `dir`, recovering
/// the active segment, and starts its writer. Reads no sealed segment after a clean close.
pub(crate) fn open(
    dir: &Path,
    name: &str,
    config: LogConfig,
    fs: Arc<dyn FileSystem>,
) -> Result<Opened, StorageError> {
    config.validate()?;
    check_namespace(name)?;
    // Its segment files count against the process's bound on open data files.
    let fs: Arc<dyn FileSystem> = Arc::new(BoundedFs::new(fs));
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create", dir, e))?;
    let (mut logs, idxs) = list_dir(dir)?;
    let first_time = logs.is_empty();
    if first_time {
        let inc = (uuid::Uuid::new_v4().as_u128() >> 96) as u32;
        let path = dir.join(segment::segment_name(1));
        segment::create(&*fs, dir, &path, segment::SEGMENT_VERSION, inc, 1)?;
        logs.insert(1, path);
    }
    let (&active_first, active_path) = logs.last_key_value().expect("at least one segment");
    let (mut active_first, mut active_path) = (active_first, active_path.clone());
    for (first, idx) in &idxs {
        // An index without its segment is left over from retention; one beside the
        // active segment from a seal that did not finish. Both are rewritten if needed.
        if !logs.contains_key(first) || *first == active_first {
            let _ = std::fs::remove_file(idx);
        }
    }
    let checkpoint = match Checkpoint::read(dir) {
        Ok(c) => c,
        Err(reason) => {
            tracing::warn!(namespace = name, reason, "ignoring damaged checkpoint");
            None
        }
    };

    let mut file = fs
        .open(&active_path)
        .map_err(|e| StorageError::io("open", &active_path, e))?;
    let mut scan = recovery::scan_active(
        &active_path,
        &file,
        active_first,
        config.repair,
        true,
        config.keep_partial_batch,
    )?;
    if let Some(t) = &scan.torn {
        // Cannot be told from a torn write, but may have been damage: said, and kept.
        tracing::warn!(
            namespace = name,
            file = %active_path.display(),
            offset = t.offset,
            bytes = t.bytes_cut,
            sequence = t.sequence,
            quarantined = ?t.quarantined,
            "cut a bad last record (a torn write, or damage to it); the cut bytes are kept in quarantine/"
        );
    }
    let (incarnation, mut segment_version) = match scan.incarnation {
        Some(inc) => (inc, scan.version),
        None => {
            // The active segment's header was torn: rewrite it.
            let (inc, version) = previous_incarnation(&logs, active_first, checkpoint.as_ref());
            let h = segment::encode_header_version(version, inc, active_first);
            file.write_all_at(&h, 0)
                .and_then(|()| file.sync_data())
                .map_err(|e| StorageError::io("write", &active_path, e))?;
            scan.end = SEGMENT_HEADER_BYTES as u64;
            (inc, version)
        }
    };

    let mut sealed = VecDeque::new();
    let mut sealed_bytes = 0;
    let firsts: Vec<u64> = logs.keys().copied().collect();
    for pair in firsts.windows(2) {
        let (first, next) = (pair[0], pair[1]);
        let path = &logs[&first];
        if next <= first {
            return Err(StorageError::corrupt(
                path,
                0,
                first,
                "empty sealed segment",
            ));
        }
        let bytes = std::fs::metadata(path)
            .map_err(|e| StorageError::io("stat", path, e))?
            .len();
        sealed_bytes += bytes;
        sealed.push_back(Arc::new(SealedSegment::new(
            path.clone(),
            first,
            next - 1,
            bytes,
        )));
    }
    let first_seq = sealed.front().map_or(active_first, |s| s.first_seq);
    let mut next_seq = active_first + scan.offsets.len() as u64;

    let ck = checkpoint.filter(|c| c.incarnation == incarnation);
    let mut last_time = scan.times.last().copied().unwrap_or(0);
    if last_time == 0 {
        last_time = match &ck {
            Some(c) if c.last_seq + 1 == next_seq => c.last_time,
            _ => last_sealed_time(&sealed).unwrap_or(0),
        };
    }

    let mut dedup = DedupTable::new(config.dedup_window, config.dedup_max_entries);
    let covered = ck.as_ref().map_or(0, |c| c.last_seq);
    if let Some(c) = &ck {
        for (id, e) in c.dedup.iter().filter(|(_, e)| e.sequence < next_seq) {
            dedup.insert(id, *e);
        }
    }
    // With dedup off (the state log) no id is needed, and no sealed segment is read.
    let dedup_on = !config.dedup_window.is_zero();
    for seg in sealed.iter().filter(|s| dedup_on && s.last_seq > covered) {
        // Sealed after the checkpoint (a seal interrupted by a crash): rare and short.
        for (id, sequence, time_ns) in sealed_msg_ids(seg)? {
            dedup.insert(&id, DedupEntry { sequence, time_ns });
        }
    }
    for (id, sequence, time_ns) in &scan.msg_ids {
        dedup.insert(
            id,
            DedupEntry {
                sequence: *sequence,
                time_ns: *time_ns,
            },
        );
    }
    let clean_shutdown = ck
        .as_ref()
        .is_some_and(|c| c.clean && c.last_seq + 1 == next_seq);
    let mut skipped = None;
    if !clean_shutdown && !first_time {
        // What recovery found may be in the page cache only (a kill, not a power cut), and
        // it is served from now on: synced first, so that no later crash loses it.
        file.sync_data()
            .map_err(|e| StorageError::io("fdatasync", &active_path, e))?;
        // The sequences handed out before the crash may go up to the reservation's mark:
        // the namespace continues above it (a clean close needs none: the checkpoint knows
        // the next sequence).
        if let Some(mark) = reserved_mark(dir, name, incarnation, active_first, &*fs)
            && mark >= next_seq
        {
            let active = ActiveSegment {
                path: &active_path,
                first: active_first,
                version: segment_version,
                offsets: &scan.offsets,
                end: scan.end,
            };
            let above = hole::continue_above(&*fs, dir, &active, incarnation, mark)?;
            tracing::warn!(
                namespace = name,
                from = next_seq,
                to = mark,
                active_segment = %above.path.display(),
                "after an unclean shutdown, continuing above the sequences reserved before it: readers get them as a gap"
            );
            skipped = Some(next_seq..=mark);
            for seg in above.sealed {
                sealed_bytes += seg.bytes;
                sealed.push_back(Arc::new(seg));
            }
            (active_first, active_path, file) = (above.first, above.path, above.file);
            scan.offsets.clear();
            scan.times.clear();
            scan.end = SEGMENT_HEADER_BYTES as u64;
            next_seq = above.first;
            segment_version = segment::SEGMENT_VERSION_HOLES;
        }
    }
    let reservation = match config.fsync {
        // Visible and answered only once synced: a cut loses only what nobody saw.
        FsyncPolicy::Always => {
            reservation::remove(dir);
            None
        }
        _ => Some(Reservation::new(
            dir,
            incarnation,
            next_seq - 1,
            fs.boot_id(),
        )),
    };
    // From now on a crash must not look clean.
    Checkpoint::write(
        dir,
        false,
        incarnation,
        next_seq - 1,
        last_time,
        dedup.entries(),
    )
    .map_err(|e| StorageError::io("write checkpoint", dir, e))?;

    let report = OpenReport {
        namespace: name.to_owned(),
        events: next_seq - first_seq,
        first_seq,
        last_seq: next_seq - 1,
        clean_shutdown: clean_shutdown || first_time,
        active_segment: active_path.clone(),
        torn: scan.torn.clone(),
        repaired: scan.repaired.clone(),
        skipped,
    };
    let active_len = scan.end;
    let active_count = scan.offsets.len() as u64;
    let view = View::new(
        sealed,
        sealed_bytes,
        ActiveView::new(
            active_first,
            active_path.clone(),
            file.clone(),
            scan.offsets,
            scan.times,
            active_len,
        ),
        first_seq,
        next_seq,
        last_time,
    );
    let shared = Arc::new(Shared::new(
        name,
        dir,
        config,
        incarnation,
        segment_version,
        view,
        dedup,
    ));
    let writer = Writer::start(
        shared.clone(),
        fs,
        Resume {
            file,
            path: active_path,
            first_seq: active_first,
            count: active_count,
            end: active_len,
            next_seq,
            last_time,
            reservation,
        },
    )?;
    Ok(Opened {
        shared,
        writer,
        report,
    })
}

/// The reservation's mark for a namespace whose last shutdown was unclean: what its file
/// says, or, if the file is damaged, a mark above every sequence the active segment (first
/// sequence `active_first`) could have held. `None` without a file, or when the mark was
/// written in this boot (a process crash: the page cache kept every write).
fn reserved_mark(
    dir: &Path,
    name: &str,
    incarnation: u32,
    active_first: u64,
    fs: &dyn FileSystem,
) -> Option<u64> {
    match reservation::read(dir, incarnation) {
        Found::None => None,
        Found::Mark { boot, .. } if boot.is_some() && boot == fs.boot_id() => None,
        Found::Mark { mark, .. } => Some(mark),
        Found::Damaged(reason) => {
            let mark = reservation::fallback_mark(active_first);
            tracing::error!(
                namespace = name,
                file = %dir.join(reservation::RESERVATION_FILE).display(),
                reason,
                mark,
                "damaged reservation file: continuing above every sequence the active segment could have held"
            );
            Some(mark)
        }
    }
}

fn last_sealed_time(sealed: &VecDeque<Arc<SealedSegment>>) -> Option<u64> {
    sealed.back()?.last_time().ok()
}

fn sealed_msg_ids(seg: &SealedSegment) -> Result<Vec<(String, u64, u64)>, StorageError> {
    let l = seg.load()?;
    let mut out = Vec::new();
    for i in 0..l.index.len() {
        let off = l.index.offset(i);
        match record::decode(&l.data[off..]) {
            Decoded::Record(r, _) => {
                if let Some(m) = r.msg_id {
                    out.push((m.to_owned(), r.sequence, r.time_ns));
                }
            }
            _ => {
                let seq = l.index.sequence(i);
                return Err(StorageError::corrupt(
                    &seg.path,
                    off as u64,
                    seq,
                    "damaged record",
                ));
            }
        }
    }
    Ok(out)
}

/// The incarnation and format version to give an active segment whose header was torn:
/// the previous segment's, else the checkpoint's incarnation (or a new one) and version 1.
fn previous_incarnation(
    logs: &BTreeMap<u64, PathBuf>,
    active: u64,
    ck: Option<&Checkpoint>,
) -> (u32, u16) {
    let prev = logs.range(..active).next_back().and_then(|(first, path)| {
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        let f = std::fs::File::open(path).ok()?;
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut h, 0).ok()?;
        let inc = segment::decode_header(&h, *first).ok()?;
        Some((inc, segment::header_version(&h)))
    });
    prev.or(ck.map(|c| (c.incarnation, segment::SEGMENT_VERSION)))
        .unwrap_or_else(|| {
            let inc = (uuid::Uuid::new_v4().as_u128() >> 96) as u32;
            (inc, segment::SEGMENT_VERSION)
        })
}

type Listing = (BTreeMap<u64, PathBuf>, Vec<(u64, PathBuf)>);

/// Segments and index files of a namespace directory; removes leftover temporary files.
fn list_dir(dir: &Path) -> Result<Listing, StorageError> {
    let mut logs = BTreeMap::new();
    let mut idxs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("tmp.") {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        match segment::parse_name(name) {
            Some((first, false)) => {
                logs.insert(first, entry.path());
            }
            Some((first, true)) => idxs.push((first, entry.path())),
            None => {}
        }
    }
    Ok((logs, idxs))
}
