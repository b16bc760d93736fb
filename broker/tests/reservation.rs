//! The reservation of sequences (log format 2.4): under `interval` and `never`, where events
//! are answered and visible before they are synced, a crash that loses the unsynced tail
//! never hands its sequences out again; a clean close, a version-1 directory and `always`
//! make no hole; a damaged reservation file falls back to a mark above every sequence the
//! active segment could have held. A crash is a drop without close; a power cut is a crash
//! followed by [`SimFs::reboot`] (the kernel wrote back only part of the tail, cut here) or
//! [`SimFs::power_loss`]; a process crash, in the same boot, loses nothing and makes no hole.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus_broker::storage::inspect::{NamespaceDir, Scanned};
use bus_broker::storage::io::SimFs;
use bus_broker::storage::segment::{SEGMENT_VERSION, SEGMENT_VERSION_HOLES, header_version};
use bus_broker::storage::{
    EventLog as _, FsyncPolicy, GapReason, Log, LogConfig, LogReader as _, ReadItem, Retention,
    Start,
};
use common::*;

/// The reservation file of a namespace directory.
const RESERVATION: &str = "reservation";

fn never() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

/// Opens the test namespace in `dir` over `fs`.
fn open_sim(dir: &Path, config: LogConfig, fs: &SimFs) -> (Log, bus_broker::storage::OpenReport) {
    open_fs(dir, config, Arc::new(fs.clone())).expect("open")
}

/// Everything readable from the oldest sequence: events as `Ok(sequence)`, gaps as
/// `Err((from, resume_at))` (each must carry the reason `damaged`).
fn read_items(log: &Log) -> Vec<Result<u64, (u64, u64)>> {
    let mut r = log.open_reader(Start::Oldest).expect("reader");
    let mut out = Vec::new();
    while let Some(item) = r.try_next().expect("read") {
        match item {
            ReadItem::Event(e) => out.push(Ok(e.sequence)),
            ReadItem::Gap {
                missed_from,
                resume_at,
                reason,
            } => {
                assert_eq!(reason, GapReason::Damaged);
                out.push(Err((missed_from, resume_at)));
            }
        }
    }
    out
}

/// Cuts the active segment of `dir` after its first `keep` records, as a power cut that
/// lost the unsynced tail leaves it.
fn lose_tail(dir: &Path, keep: usize) {
    let seg = last_segment(dir);
    let records = record_offsets(&seg);
    let end = match keep {
        0 => bus_broker::storage::segment::SEGMENT_HEADER_BYTES,
        k => records[k - 1].1,
    };
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(end as u64).unwrap();
}

#[tokio::test]
async fn a_power_cut_that_loses_the_unsynced_tail_never_reuses_its_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), never(), &fs);
    let handed_out = append_n(&log, 10).await;
    assert_eq!(handed_out, (1..=10).collect::<Vec<_>>());
    drop(log); // a crash: no clean close
    lose_tail(dir.path(), 4);
    fs.reboot();

    let (log, report) = open_sim(dir.path(), never(), &fs);
    let skipped = report
        .skipped
        .clone()
        .expect("a hole above the reservation");
    assert_eq!(*skipped.start(), 5);
    assert!(*skipped.end() >= 10, "{skipped:?}");
    let next = append(&log, vec![ev(99)]).await;
    assert_eq!(next, [skipped.end() + 1]);
    // A reader that saw 5..=10 before the crash never sees another event under them.
    let mut want: Vec<_> = (1..=4).map(Ok).collect();
    want.push(Err((5, next[0])));
    want.push(Ok(next[0]));
    assert_eq!(read_items(&log), want);
    // The old active segment stays version 1, sealed as it was; the hole's and the new
    // active segment are version 2.
    let logs = files_with_ext(dir.path(), "log");
    let versions: Vec<u16> = logs
        .iter()
        .map(|p| header_version(&std::fs::read(p).unwrap()))
        .collect();
    assert_eq!(
        versions,
        [
            SEGMENT_VERSION,
            SEGMENT_VERSION_HOLES,
            SEGMENT_VERSION_HOLES
        ]
    );

    // A second crash, now from a version-2 active segment holding records, and a reopen
    // that reads every sealed segment from its index.
    let more = append_n(&log, 3).await;
    drop(log);
    lose_tail(dir.path(), 2);
    fs.reboot();
    let (log, report) = open_sim(dir.path(), never(), &fs);
    let again = report.skipped.clone().expect("a second hole");
    assert_eq!(*again.start(), next[0] + 2);
    assert!(*again.end() >= *more.last().unwrap(), "{again:?}");
    let after = append(&log, vec![ev(100)]).await;
    assert_eq!(after, [again.end() + 1]);
    let items = read_items(&log);
    assert_eq!(
        &items[items.len() - 4..],
        [
            Ok(next[0]),
            Ok(next[0] + 1),
            Err((next[0] + 2, after[0])),
            Ok(after[0])
        ]
    );
    log.close().await;
    // The offline checks read every segment, holes and all, as healthy.
    let ns = NamespaceDir::open(dir.path()).unwrap();
    assert_eq!(ns.segments.len(), 5);
    for seg in &ns.segments {
        let scanned = ns.scan(seg).unwrap();
        assert!(matches!(scanned, Scanned::Healthy(_)), "{scanned:?}");
    }
}

#[tokio::test]
async fn a_power_loss_under_never_that_loses_every_event_still_continues_above_them() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_fs(dir.path(), never(), Arc::new(fs.clone())).unwrap();
    let handed_out = append_n(&log, 5).await;
    drop(log);
    // Never synced: every record goes; the reservation was synced before 1 was handed out.
    fs.power_loss().unwrap();
    assert!(record_offsets(&last_segment(dir.path())).is_empty());

    let (log, report) = open_sim(dir.path(), never(), &fs);
    let skipped = report
        .skipped
        .clone()
        .expect("a hole above the reservation");
    assert_eq!(*skipped.start(), 1);
    assert!(*skipped.end() >= *handed_out.last().unwrap());
    let next = append(&log, vec![ev(7)]).await;
    assert_eq!(next, [skipped.end() + 1]);
    assert_eq!(read_items(&log), [Err((1, next[0])), Ok(next[0])]);
    log.close().await;
}

#[tokio::test]
async fn a_process_crash_in_the_same_boot_makes_no_hole() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), never(), &fs);
    append_n(&log, 10).await;
    drop(log);
    // The page cache kept every write: what recovery finds is all that was handed out.
    let (log, report) = open_sim(dir.path(), never(), &fs);
    assert!(!report.clean_shutdown);
    assert_eq!(report.skipped, None);
    assert_eq!(append(&log, vec![ev(11)]).await, [11]);
    assert_eq!(read_items(&log), (1..=11).map(Ok).collect::<Vec<_>>());
    // ...and it is synced at that open: a power cut now loses none of it.
    drop(log);
    fs.power_loss().unwrap();
    let (log, report) = open_sim(dir.path(), never(), &fs);
    let skipped = report.skipped.expect("a hole after the power cut");
    assert_eq!(*skipped.start(), 11, "only 11 was unsynced");
    assert_eq!(read_items(&log)[..10], (1..=10).map(Ok).collect::<Vec<_>>());
    let next = *skipped.end() + 1;
    assert_eq!(append(&log, vec![ev(12)]).await, [next]);
    log.close().await;
    drop(log);
    // A clean close, a new boot, then a process crash: the mark written before that boot is
    // renewed at the first append after it, so this crash too makes no hole.
    fs.reboot();
    let (log, _) = open_sim(dir.path(), never(), &fs);
    assert_eq!(append(&log, vec![ev(13)]).await, [next + 1]);
    drop(log);
    let (log, report) = open_sim(dir.path(), never(), &fs);
    assert_eq!(report.skipped, None);
    assert_eq!(append(&log, vec![ev(14)]).await, [next + 2]);
    log.close().await;
}

#[tokio::test]
async fn a_clean_close_makes_no_hole() {
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::Interval(Duration::from_secs(60)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fs = SimFs::new();
        let config = LogConfig {
            fsync,
            ..LogConfig::default()
        };
        let (log, _) = open_sim(dir.path(), config.clone(), &fs);
        append_n(&log, 10).await;
        log.close().await;
        drop(log);
        // Sequences were reserved ahead of 10, but the checkpoint knows the next one.
        assert!(dir.path().join(RESERVATION).exists(), "{fsync:?}");
        fs.reboot();
        let (log, report) = open_sim(dir.path(), config.clone(), &fs);
        assert_eq!(report.skipped, None, "{fsync:?}");
        assert!(report.clean_shutdown);
        assert_eq!(append(&log, vec![ev(11)]).await, [11], "{fsync:?}");
        assert_eq!(read_items(&log), (1..=11).map(Ok).collect::<Vec<_>>());
        assert_eq!(files_with_ext(dir.path(), "log").len(), 1);
        // A power cut after the clean open: the mark kept from before still covers what
        // was handed out since.
        drop(log);
        fs.power_loss().unwrap();
        let (log, report) = open_sim(dir.path(), config, &fs);
        let skipped = report.skipped.expect("a hole after the power cut");
        assert_eq!(*skipped.start(), 11, "{fsync:?}: 11 was never synced");
        assert!(*skipped.end() >= 11, "{fsync:?}");
        log.close().await;
    }
}

#[tokio::test]
async fn a_version_1_directory_without_a_reservation_opens_unchanged() {
    // Written under `always` (which keeps no reservation), then a power cut.
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), LogConfig::default(), &fs);
    append_n(&log, 5).await;
    drop(log);
    fs.power_loss().unwrap();
    assert!(!dir.path().join(RESERVATION).exists());
    let before = std::fs::read(last_segment(dir.path())).unwrap();

    // Opened under `never`: no hole, no file until something is handed out.
    let (log, report) = open_sim(dir.path(), never(), &fs);
    assert!(!report.clean_shutdown);
    assert_eq!(report.skipped, None);
    assert_eq!(std::fs::read(last_segment(dir.path())).unwrap(), before);
    assert!(!dir.path().join(RESERVATION).exists());
    assert_eq!(append(&log, vec![ev(6)]).await, [6]);
    assert!(dir.path().join(RESERVATION).exists());
    assert_eq!(read_items(&log), (1..=6).map(Ok).collect::<Vec<_>>());
    assert_eq!(
        header_version(&std::fs::read(last_segment(dir.path())).unwrap()),
        SEGMENT_VERSION
    );
    log.close().await;

    // Under `always` nothing is visible before it is synced: the file is dropped, and a
    // power cut makes no hole.
    let (log, _) = open_sim(dir.path(), LogConfig::default(), &fs);
    assert!(!dir.path().join(RESERVATION).exists());
    assert_eq!(append(&log, vec![ev(7)]).await, [7]);
    drop(log);
    fs.power_loss().unwrap();
    let (log, report) = open_sim(dir.path(), LogConfig::default(), &fs);
    assert_eq!(report.skipped, None);
    assert_eq!(append(&log, vec![ev(8)]).await, [8]);
    log.close().await;
}

#[tokio::test]
async fn a_damaged_reservation_continues_above_every_sequence_the_segment_could_hold() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), never(), &fs);
    let handed_out = append_n(&log, 10).await;
    drop(log);
    lose_tail(dir.path(), 2);
    fs.reboot();
    // Both copies damaged: no mark can be trusted.
    let path = dir.path().join(RESERVATION);
    let mut data = std::fs::read(&path).unwrap();
    for b in data.iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &data).unwrap();

    let (log, report) = open_sim(dir.path(), never(), &fs);
    let skipped = report.skipped.clone().expect("a hole above the fallback");
    assert_eq!(*skipped.start(), 3);
    // Far above any block: as many records as the largest segment could hold.
    assert!(*skipped.end() > 1 << 24, "{skipped:?}");
    assert!(*skipped.end() > *handed_out.last().unwrap());
    let next = append(&log, vec![ev(11)]).await;
    assert_eq!(next, [skipped.end() + 1]);
    assert_eq!(
        read_items(&log),
        [Ok(1), Ok(2), Err((3, next[0])), Ok(next[0])]
    );
    log.close().await;
    drop(log);

    // After a clean close a damaged file is only ignored: no hole, and it is written anew.
    std::fs::write(&path, b"garbage").unwrap();
    fs.reboot();
    let (log, report) = open_sim(dir.path(), never(), &fs);
    assert_eq!(report.skipped, None);
    assert_eq!(append(&log, vec![ev(12)]).await, [next[0] + 1]);
    drop(log);
    fs.power_loss().unwrap();
    let (log, report) = open_sim(dir.path(), never(), &fs);
    let skipped = report.skipped.expect("the file written anew holds a mark");
    assert_eq!(
        *skipped.start(),
        next[0] + 1,
        "the append after the clean open was lost"
    );
    assert!(*skipped.end() < next[0] + (1 << 24), "{skipped:?}");
    log.close().await;
}

#[tokio::test]
async fn the_reservation_is_synced_rarely_not_once_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), never(), &fs);
    let before = fs.syncs();
    let n = 5000;
    assert_eq!(append_n(&log, n).await.len(), n as usize);
    // The first reservation, then one ahead when half its block was used: never per group.
    let syncs = fs.syncs() - before;
    assert!((1..=3).contains(&syncs), "{syncs} syncs for {n} groups");
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reservation_fails_the_append_and_heals() {
    use bus_broker::storage::io::FaultOp;
    use bus_broker::storage::{EventLog as _, StorageError};
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), never(), &fs);
    // The first append needs the reservation's sync, which fails: nothing is handed out.
    fs.fail(FaultOp::Sync, 0, std::io::ErrorKind::Other);
    let err = log.append(vec![ev(1)]).await.unwrap_err();
    assert!(matches!(err, StorageError::ReadOnly { .. }), "{err}");
    assert!(read_items(&log).is_empty());
    fs.clear_faults();
    let mut heals = log.heals();
    tokio::time::timeout(WAIT, heals.wait_for(|_| log.stats().read_only.is_none()))
        .await
        .expect("the log did not heal")
        .expect("the log closed");
    assert_eq!(append(&log, vec![ev(2)]).await, [1]);
    drop(log);
    fs.power_loss().unwrap();
    let (log, report) = open_sim(dir.path(), never(), &fs);
    assert_eq!(report.skipped.map(|s| *s.start()), Some(1));
    log.close().await;
}

#[tokio::test]
async fn a_hole_above_the_reservation_counts_no_event_for_retention_by_count() {
    // A count limit far below a block of reserved sequences, far above the events held.
    let config = || LogConfig {
        retention: Retention {
            max_events: Some(50),
            ..Retention::default()
        },
        ..never()
    };
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), config(), &fs);
    append_n(&log, 10).await;
    drop(log);
    lose_tail(dir.path(), 4);
    fs.reboot();

    let (log, report) = open_sim(dir.path(), config(), &fs);
    let skipped = report
        .skipped
        .clone()
        .expect("a hole above the reservation");
    assert!(skipped.end() - skipped.start() + 1 > 50, "{skipped:?}");
    let more = append_n(&log, 5).await;
    log.apply_retention().await.unwrap();
    // Nine events are held: the limit of 50 deletes none of them, and the figures count
    // them, not the hole's sequences.
    let stats = log.stats();
    assert_eq!(stats.first_seq, 1, "{stats:?}");
    assert_eq!(stats.events, 9, "{stats:?}");
    let mut want: Vec<_> = (1..=4).map(Ok).collect();
    want.push(Err((5, more[0])));
    want.extend(more.iter().copied().map(Ok));
    assert_eq!(read_items(&log), want);
}

#[tokio::test]
async fn a_version_2_segment_rolled_after_a_hole_is_sealed_with_a_version_2_index() {
    let config = || LogConfig {
        segment_bytes: 4096,
        ..never()
    };
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_sim(dir.path(), config(), &fs);
    append_n(&log, 3).await;
    drop(log);
    lose_tail(dir.path(), 1);
    fs.reboot();
    let (log, report) = open_sim(dir.path(), config(), &fs);
    assert!(report.skipped.is_some());
    // Enough to roll the version-2 active segment at least once.
    append_n(&log, 200).await;
    log.close().await;
    // Nothing was read: every index is the one written when its segment was sealed, in the
    // segment's own version.
    let mut rolled = 0;
    for seg in files_with_ext(dir.path(), "log") {
        let idx = seg.with_extension("idx");
        let Ok(index) = std::fs::read(&idx) else {
            continue;
        };
        let version = header_version(&std::fs::read(&seg).unwrap());
        assert_eq!(
            u16::from_le_bytes([index[8], index[9]]),
            version,
            "{}",
            idx.display()
        );
        rolled += usize::from(version == SEGMENT_VERSION_HOLES && index.len() > 32);
    }
    assert!(
        rolled >= 1,
        "no version-2 segment holding records was sealed"
    );
}
