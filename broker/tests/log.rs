//! Integration tests of the per-namespace log: round trips, recovery, corruption, batches,
//! rolling, seeking, retention, injected failures, power loss and dedup.

mod common;

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use bus_broker::storage::io::{FaultOp, SimFs};
use bus_broker::storage::{
    DiskStorage, EventLog, FsyncPolicy, IdLookup, LogConfig, NewEvent, ReadItem, Retention, Start,
    Storage, StorageError, StorageOptions,
};
use bytes::Bytes;
use common::*;

#[tokio::test]
async fn round_trips_every_field_across_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let max = config.max_payload_bytes;
    let events = vec![
        NewEvent::new("user.empty", Bytes::new()),
        NewEvent::new("user.max", vec![7u8; max]),
        NewEvent::new("user.binary", vec![0xff, 0x00, 0xfe, 0x80]),
        NewEvent {
            subject: "user.full".into(),
            headers: (0..100)
                .map(|i| (format!("h{i}"), format!("v{i}")))
                .collect(),
            reply_to: Some("_inbox.abc".into()),
            msg_id: Some("m-1".into()),
            content_type: Some("application/json".into()),
            payload: Bytes::from_static(b"{\"k\":[1,2]}"),
        },
    ];
    let (log, report) = open(dir.path(), config.clone());
    assert_eq!(report.events, 0);
    let receipts = log.append(events.clone()).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let check = |got: Vec<bus_broker::storage::Event>| {
        assert_eq!(got.len(), events.len());
        for ((g, want), r) in got.iter().zip(&events).zip(&receipts) {
            assert_eq!(g.subject, want.subject);
            assert_eq!(g.payload, want.payload);
            assert_eq!(g.headers, want.headers);
            assert_eq!(g.reply_to, want.reply_to);
            assert_eq!(g.msg_id, want.msg_id);
            assert_eq!(g.content_type, want.content_type);
            assert_eq!(
                (g.id.as_str(), g.sequence, g.time_ns),
                (r.id().as_str(), r.sequence, r.time_ns)
            );
        }
    };
    check(read_all(&log, Start::Oldest));
    log.close().await;
    drop(log);
    let (log, report) = open(dir.path(), config);
    assert!(report.clean_shutdown);
    assert_eq!(
        (report.events, report.first_seq, report.last_seq),
        (4, 1, 4)
    );
    assert!(report.torn.is_none());
    check(read_all(&log, Start::Oldest));
}

#[tokio::test]
async fn payload_over_the_limit_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(
        dir.path(),
        LogConfig {
            max_payload_bytes: 10,
            ..LogConfig::default()
        },
    );
    let err = log
        .append(vec![NewEvent::new("user.a", vec![0u8; 11])])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::PayloadTooLarge {
                size: 11,
                limit: 10
            }
        ),
        "{err}"
    );
    assert_eq!(log.stats().events, 0);
    let err = log.append(vec![]).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidEvent(_)));
}

#[tokio::test]
async fn times_never_decrease_and_sequences_have_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments());
    append_n(&log, 50).await;
    let all = read_all(&log, Start::Oldest);
    assert_eq!(seqs(&all), (1..=50).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
}

#[tokio::test]
async fn recovers_after_the_last_record_is_cut_at_every_length() {
    let base = tempfile::tempdir().unwrap();
    let template = base.path().join("template");
    {
        let (log, _) = open(&template, LogConfig::default());
        append_n(&log, 3).await;
        log.close().await;
    }
    let seg_name = last_segment(&template).file_name().unwrap().to_owned();
    let offsets = record_offsets(&template.join(&seg_name));
    let (last_start, last_end) = offsets[2];
    for cut in last_start..last_end {
        let dir = base.path().join("cut");
        copy_dir(&template, &dir);
        let seg = dir.join(&seg_name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let (log, report) = open(&dir, LogConfig::default());
        if cut > last_start {
            let torn = report
                .torn
                .clone()
                .unwrap_or_else(|| panic!("cut {cut}: torn tail not reported"));
            assert_eq!(
                (torn.offset, torn.bytes_cut),
                (last_start as u64, (cut - last_start) as u64)
            );
        }
        assert_eq!(report.events, 2, "cut {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), last_start as u64);
        let all = read_all(&log, Start::Oldest);
        assert_eq!(seqs(&all), [1, 2]);
        assert_eq!(all[1].payload, Bytes::from("payload-1"));
        assert_eq!(append(&log, vec![ev(9)]).await, [3], "cut {cut}");
    }
}

#[tokio::test]
async fn a_flipped_byte_mid_log_refuses_to_open_and_repair_cuts_from_there() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), LogConfig::default());
        append_n(&log, 5).await;
        log.close().await;
    }
    let seg = last_segment(dir.path());
    let offsets = record_offsets(&seg);
    let mut data = std::fs::read(&seg).unwrap();
    let (start, end) = offsets[1];
    data[(start + end) / 2] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();

    let err = open_fs(
        dir.path(),
        LogConfig::default(),
        Arc::new(bus_broker::storage::io::StdFs),
    )
    .unwrap_err();
    let c = err
        .corruption()
        .unwrap_or_else(|| panic!("not corruption: {err}"));
    assert_eq!(
        (c.file.as_path(), c.offset, c.sequence),
        (seg.as_path(), start as u64, 2)
    );
    assert!(
        err.to_string().contains(&seg.display().to_string()),
        "{err}"
    );

    let (log, report) = open(
        dir.path(),
        LogConfig {
            repair: true,
            ..LogConfig::default()
        },
    );
    let r = report.repaired.expect("repair reported");
    assert_eq!(
        (r.offset, r.first_lost, r.events_lost),
        (start as u64, 2, 4)
    );
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1]);
    assert_eq!(append(&log, vec![ev(9)]).await, [2]);
}

#[tokio::test]
async fn a_zeroed_tail_is_cut_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), LogConfig::default());
        append_n(&log, 3).await;
        log.close().await;
    }
    let seg = last_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len + 4096).unwrap();
    drop(f);
    let (log, report) = open(dir.path(), LogConfig::default());
    let torn = report.torn.expect("torn tail reported");
    assert_eq!((torn.offset, torn.bytes_cut), (len, 4096));
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3]);
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_across_a_crash() {
    let base = tempfile::tempdir().unwrap();
    let template = base.path().join("t");
    {
        let (log, _) = open(&template, LogConfig::default());
        append_n(&log, 2).await;
        log.append((10..15).map(ev).collect()).await.unwrap();
        log.close().await;
    }
    let seg_name = last_segment(&template).file_name().unwrap().to_owned();
    let offsets = record_offsets(&template.join(&seg_name));
    assert_eq!(offsets.len(), 7);
    // Cut inside the 4th record of the batch, and exactly after its 3rd (every remaining
    // record is valid, but the batch is incomplete).
    for cut in [
        offsets[5].0 + 10,
        offsets[5].0,
        offsets[3].1,
        offsets[2].0 + 1,
    ] {
        let dir = base.path().join("c");
        copy_dir(&template, &dir);
        let seg = dir.join(&seg_name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let (log, report) = open(&dir, LogConfig::default());
        assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2], "cut at {cut}");
        assert_eq!(report.torn.map(|t| t.offset), Some(offsets[2].0 as u64));
    }
}

#[tokio::test]
async fn rolls_segments_and_reloads_or_rebuilds_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments();
    {
        let (log, _) = open(dir.path(), config.clone());
        append_n(&log, 200).await;
        // A batch larger than the roll size goes alone into its own segment.
        log.append(
            (0..60)
                .map(|i| NewEvent::new("user.big", vec![i as u8; 100]))
                .collect(),
        )
        .await
        .unwrap();
        append_n(&log, 5).await;
        log.close().await;
    }
    let logs = files_with_ext(dir.path(), "log");
    let idxs = files_with_ext(dir.path(), "idx");
    assert!(logs.len() > 5, "only {} segments", logs.len());
    assert_eq!(
        idxs.len(),
        logs.len() - 1,
        "every sealed segment has an index"
    );
    let name = |p: &std::path::Path| p.file_stem().unwrap().to_str().unwrap().to_owned();
    assert_eq!(name(&logs[0]), "00000000000000000001");
    for p in &logs {
        let size = std::fs::metadata(p).unwrap().len();
        let first: u64 = name(p).parse().unwrap();
        assert!(
            size <= 4096 || first == 201 || p == logs.last().unwrap(),
            "{} is {size} bytes",
            p.display()
        );
    }
    let (log, report) = open(dir.path(), config.clone());
    assert!(report.clean_shutdown);
    let all = read_all(&log, Start::Oldest);
    assert_eq!(seqs(&all), (1..=265).collect::<Vec<_>>());
    drop(log);

    // Missing and damaged indexes are rebuilt on first read.
    std::fs::remove_file(&idxs[0]).unwrap();
    let mut bad = std::fs::read(&idxs[1]).unwrap();
    bad[40] ^= 1;
    std::fs::write(&idxs[1], bad).unwrap();
    let (log, _) = open(dir.path(), config);
    assert_eq!(
        seqs(&read_all(&log, Start::Oldest)),
        (1..=265).collect::<Vec<_>>()
    );
    assert!(idxs[0].exists(), "rebuilt index written back");
}

#[tokio::test]
async fn seeks_by_sequence_id_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments());
    append_n(&log, 120).await;
    let all = read_all(&log, Start::Oldest);
    for s in [1u64, 2, 37, 60, 119, 120] {
        assert_eq!(read_all(&log, Start::Sequence(s))[0].sequence, s);
        let after = read_all(&log, Start::AfterId(all[s as usize - 1].id.clone()));
        assert_eq!(
            after.first().map(|e| e.sequence),
            (s < 120).then_some(s + 1)
        );
        let t = all[s as usize - 1].time_ns;
        let first_at_t = all.iter().find(|e| e.time_ns >= t).unwrap().sequence;
        assert_eq!(read_all(&log, Start::Time(t))[0].sequence, first_at_t);
    }
    assert!(read_all(&log, Start::Newest).is_empty());
    assert!(read_all(&log, Start::Time(u64::MAX)).is_empty());
    assert_eq!(read_all(&log, Start::Time(0))[0].sequence, 1);
    let err = log
        .reader(Start::AfterId("user-999-00000000".into()))
        .await
        .err()
        .expect("unknown id");
    assert!(matches!(err, StorageError::UnknownEvent(_)));
}

#[tokio::test]
async fn retention_by_count_bytes_and_age_leaves_readers_a_gap() {
    for retention in [
        Retention {
            max_events: Some(50),
            ..Retention::default()
        },
        Retention {
            max_bytes: Some(4096 * 3),
            ..Retention::default()
        },
        Retention {
            max_age: Some(Duration::from_nanos(1)),
            ..Retention::default()
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(
            dir.path(),
            LogConfig {
                retention,
                ..small_segments()
            },
        );
        let mut early = log.reader(Start::Oldest).await.unwrap();
        let first_id = {
            append_n(&log, 1).await;
            read_all(&log, Start::Oldest)[0].id.clone()
        };
        append_n(&log, 199).await;
        log.apply_retention().await.unwrap();
        let stats = log.stats();
        assert!(stats.first_seq > 1, "{retention:?}: nothing deleted");
        if let Some(m) = retention.max_events {
            assert!(
                stats.events >= m,
                "{retention:?}: kept {} events",
                stats.events
            );
        }
        if let Some(m) = retention.max_bytes {
            assert!(
                stats.bytes >= m,
                "{retention:?}: kept {} bytes",
                stats.bytes
            );
        }
        match early.try_next().unwrap() {
            Some(ReadItem::Gap {
                missed_from: 1,
                resume_at,
                reason,
            }) => {
                assert_eq!(resume_at, stats.first_seq);
                assert_eq!(reason, bus_broker::storage::GapReason::Retention);
            }
            other => panic!("{retention:?}: expected a gap, got {other:?}"),
        }
        assert_eq!(
            log.lookup_id(&first_id).await,
            IdLookup::Deleted {
                sequence: 1,
                first_available: stats.first_seq
            }
        );
        let rest = read_all(&log, Start::Oldest);
        assert_eq!(rest.first().map(|e| e.sequence), Some(stats.first_seq));
        assert_eq!(rest.last().map(|e| e.sequence), Some(200));
        let logs = files_with_ext(dir.path(), "log");
        assert_eq!(
            logs[0]
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            stats.first_seq
        );
        assert_eq!(files_with_ext(dir.path(), "idx").len(), logs.len() - 1);
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_segment_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path(), small_segments());
        append_n(&log, 200).await;
        log.close().await;
    }
    let segments = files_with_ext(dir.path(), "log");
    assert!(segments.len() > 2);
    let seg = segments[1].clone();
    let first: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let offsets = record_offsets(&seg);
    let (start, end) = offsets[3];
    let mut data = std::fs::read(&seg).unwrap();
    data[end - 2] ^= 0x01;
    std::fs::write(&seg, &data).unwrap();

    let (log, _) = open(dir.path(), small_segments());
    let mut r = log.reader(Start::Oldest).await.unwrap();
    let mut got = 0;
    let err = loop {
        match r.try_next() {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("corruption not reported"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, first + 3 - 1, "every record before the damage is read");
    let c = err.corruption().expect("corruption");
    assert_eq!(
        (c.file.as_path(), c.offset, c.sequence),
        (seg.as_path(), start as u64, first + 3)
    );
    assert_eq!(log.stats().corrupt_reads, 1);
    // The reader stays where it was: asking again reports the same damage.
    assert!(r.try_next().unwrap_err().corruption().is_some());
}

#[tokio::test]
async fn write_and_sync_failures_turn_the_namespace_read_only() {
    for (op, kind) in [
        (FaultOp::Write, ErrorKind::Other),
        (FaultOp::Sync, ErrorKind::Other),
        (FaultOp::Write, ErrorKind::StorageFull),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fs = SimFs::new();
        let (log, _) = open_fs(dir.path(), LogConfig::default(), Arc::new(fs.clone())).unwrap();
        append_n(&log, 3).await;
        fs.fail(op, 0, kind);
        let err = log.append(vec![ev(3)]).await.unwrap_err();
        if kind == ErrorKind::StorageFull {
            assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
            assert!(err.to_string().contains("disk full"));
        } else {
            assert!(matches!(err, StorageError::ReadOnly { .. }), "{err}");
        }
        let again = log.append(vec![ev(4)]).await.unwrap_err();
        assert!(matches!(again, StorageError::ReadOnly { .. }), "{again}");
        assert!(log.stats().read_only.is_some());
        // Nothing acknowledged was lost, and nothing unacknowledged became visible.
        assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3]);
        drop(log);
        let (log, _) = open(dir.path(), LogConfig::default());
        let after = seqs(&read_all(&log, Start::Oldest));
        assert!(
            after.starts_with(&[1, 2, 3]) && after.len() <= 4,
            "{after:?}"
        );
    }
}

/// Spawns one append of `ev(i)`.
fn spawn_append(log: &Arc<bus_broker::storage::Log>, i: u64) -> Append {
    let log = log.clone();
    tokio::spawn(async move {
        let r = tokio::time::timeout(WAIT, log.append(vec![ev(i)]))
            .await
            .expect("append timed out")?;
        Ok(r.into_iter().map(|r| r.sequence).collect())
    })
}

type Append = tokio::task::JoinHandle<Result<Vec<u64>, StorageError>>;

/// A log in `dir` over `fs` holding events 1–3, with group A (`ev(10)`) written and its
/// sync held in flight, armed to fail, and group B (`ev(11)`) written meanwhile. Neither is
/// answered yet; clearing `fs.hold_syncs` fails both.
async fn two_groups_behind_a_failing_sync(
    dir: &std::path::Path,
    fs: &SimFs,
) -> (Arc<bus_broker::storage::Log>, Append, Append) {
    let (log, _) = open_fs(dir, LogConfig::default(), Arc::new(fs.clone())).unwrap();
    let log = Arc::new(log);
    append_n(&log, 3).await;
    fs.hold_syncs(true);
    fs.fail(FaultOp::Sync, 0, ErrorKind::Other);
    let writes = fs.writes();
    let a = spawn_append(&log, 10);
    fs.wait_for_held_sync();
    let b = spawn_append(&log, 11);
    fs.wait_for_writes(writes + 2);
    (log, a, b)
}

// The pipelined tests below block the test's own thread on the simulator (a held sync, a
// count of writes) while the appends run on the runtime's workers: hence multi_thread.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_fails_the_group_written_while_it_ran_and_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, a, b) = two_groups_behind_a_failing_sync(dir.path(), &fs).await;
    assert!(
        !a.is_finished() && !b.is_finished(),
        "answered before the sync"
    );
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3]);
    let calls = fs.sync_calls();
    fs.hold_syncs(false);
    for (name, t) in [("A", a), ("B", b)] {
        let err = t.await.unwrap().unwrap_err();
        assert!(
            matches!(err, StorageError::ReadOnly { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("fdatasync"), "{name}: {err}");
    }
    let again = log.append(vec![ev(12)]).await.unwrap_err();
    assert!(matches!(again, StorageError::ReadOnly { .. }), "{again}");
    assert!(log.stats().read_only.is_some());
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3]);
    drop(log);
    assert_eq!(fs.sync_calls(), calls, "a failed sync was retried");
    let (log, _) = open(dir.path(), LogConfig::default());
    let after = seqs(&read_all(&log, Start::Oldest));
    assert!(
        after.starts_with(&[1, 2, 3]) && after.len() <= 5,
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_a_record_whose_sync_fails_fails_too() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_fs(dir.path(), LogConfig::default(), Arc::new(fs.clone())).unwrap();
    let log = Arc::new(log);
    let with_id = |i: u64| NewEvent {
        msg_id: Some("once".into()),
        ..ev(i)
    };
    // The original is written and its sync held (it will fail); its duplicate arrives then.
    fs.hold_syncs(true);
    fs.fail(FaultOp::Sync, 0, ErrorKind::Other);
    let original = {
        let log = log.clone();
        tokio::spawn(async move { log.append(vec![with_id(1)]).await })
    };
    fs.wait_for_held_sync();
    let duplicate = {
        let log = log.clone();
        tokio::spawn(async move { log.append(vec![with_id(2)]).await })
    };
    fs.hold_syncs(false);
    let original = tokio::time::timeout(WAIT, original).await.unwrap().unwrap();
    assert!(
        matches!(original, Err(StorageError::ReadOnly { .. })),
        "{original:?}"
    );
    // Never acknowledged as a duplicate of a record that is not durable.
    let duplicate = tokio::time::timeout(WAIT, duplicate)
        .await
        .unwrap()
        .unwrap();
    assert!(duplicate.is_err(), "{duplicate:?}");
    assert!(log.lookup_msg_id("once").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_behind_a_sync_in_flight_fails_only_its_own_group() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_fs(dir.path(), LogConfig::default(), Arc::new(fs.clone())).unwrap();
    let log = Arc::new(log);
    append_n(&log, 3).await;
    fs.hold_syncs(true);
    let a = spawn_append(&log, 10);
    fs.wait_for_held_sync();
    fs.fail(FaultOp::Write, 0, ErrorKind::Other);
    let err = spawn_append(&log, 11).await.unwrap().unwrap_err();
    assert!(matches!(err, StorageError::ReadOnly { .. }), "{err}");
    assert!(log.stats().read_only.is_some());
    // A was written before the failed write: its sync still runs, and then it is answered.
    assert!(!a.is_finished(), "answered before its sync");
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3]);
    fs.hold_syncs(false);
    assert_eq!(a.await.unwrap().unwrap(), [4]);
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3, 4]);
    drop(log);
    fs.power_loss().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_the_sync_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, _) = open_fs(dir.path(), LogConfig::default(), Arc::new(fs.clone())).unwrap();
    let log = Arc::new(log);
    fs.hold_syncs(true);
    let a = spawn_append(&log, 0);
    fs.wait_for_held_sync();
    {
        let close = log.close();
        tokio::pin!(close);
        // The first poll asks the writer to stop; the close then waits for it.
        assert!(futures::poll!(&mut close).is_pending());
        assert!(!a.is_finished(), "answered before its sync");
        fs.hold_syncs(false);
        tokio::time::timeout(WAIT, close).await.expect("close hung");
    }
    assert_eq!(a.await.unwrap().unwrap(), [1]);
    drop(log);
    fs.power_loss().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default());
    assert!(report.clean_shutdown);
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1]);
}

/// Appends from several tasks, "loses power" once 300 appends were acknowledged (others
/// in flight), reopens, and returns the acknowledged (sequence, payload) pairs that are
/// missing or different. Also checks the survivors are in order with no gap.
async fn power_loss_run(config: LogConfig, skip_syncs: bool) -> Vec<(u64, String)> {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    fs.skip_syncs(skip_syncs);
    let (log, _) = open_fs(dir.path(), config.clone(), Arc::new(fs.clone())).unwrap();
    let log = Arc::new(log);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for t in 0..8u64 {
        let (log, tx) = (log.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0..1000u64 {
                let payload = format!("t{t}-{i}");
                let event = NewEvent::new("user.p", payload.clone().into_bytes());
                match log.append(vec![event]).await {
                    Ok(r) => {
                        let _ = tx.send((r[0].sequence, payload));
                    }
                    Err(_) => return,
                }
            }
        });
    }
    drop(tx);
    let mut acked = Vec::new();
    while acked.len() < 300 {
        acked.push(rx.recv().await.expect("appenders stopped early"));
    }
    log.halt();
    // Acknowledgements sent before the halt still count.
    while let Ok(a) = rx.try_recv() {
        acked.push(a);
    }
    fs.power_loss().unwrap();
    drop(log);

    let (log, _) = open(dir.path(), config);
    let all = read_all(&log, Start::Oldest);
    assert_eq!(
        seqs(&all),
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "gap or disorder"
    );
    let found: std::collections::HashMap<u64, Bytes> =
        all.into_iter().map(|e| (e.sequence, e.payload)).collect();
    acked
        .into_iter()
        .filter(|(seq, p)| {
            found
                .get(seq)
                .is_none_or(|got| got.as_ref() != p.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_a_power_loss() {
    for config in [LogConfig::default(), small_segments()] {
        let lost = power_loss_run(config, false).await;
        assert!(lost.is_empty(), "acknowledged appends lost: {lost:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_power_loss_test_catches_an_acknowledgement_before_the_sync() {
    // A disk that lies about syncing: acknowledged appends are lost, and the check sees it.
    let lost = power_loss_run(LogConfig::default(), true).await;
    assert!(lost.len() >= 300, "only {} losses detected", lost.len());
}

#[tokio::test]
async fn dedup_ids_are_remembered_within_the_window_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let with_id = |id: &str, i: u64| NewEvent {
        msg_id: Some(id.into()),
        ..ev(i)
    };
    let (log, _) = open(dir.path(), LogConfig::default());
    let first = log.append(vec![with_id("a", 0)]).await.unwrap().remove(0);
    assert!(!first.duplicate);
    let again = log.append(vec![with_id("a", 1)]).await.unwrap().remove(0);
    assert!(again.duplicate);
    assert_eq!((again.sequence, &again.id()), (first.sequence, &first.id()));
    // Within one batch: the second use of an id is a duplicate of the first.
    let batch = log
        .append(vec![with_id("b", 2), with_id("b", 3), ev(4)])
        .await
        .unwrap();
    assert_eq!(
        batch
            .iter()
            .map(|r| (r.sequence, r.duplicate))
            .collect::<Vec<_>>(),
        [(2, false), (2, true), (3, false)]
    );
    assert_eq!(log.stats().events, 3);
    assert_eq!(log.lookup_msg_id("b").await.map(|r| r.sequence), Some(2));

    // Across a clean restart (from the checkpoint) and a crash (from the active segment).
    log.close().await;
    drop(log);
    let (log, _) = open(dir.path(), LogConfig::default());
    assert!(log.append(vec![with_id("a", 5)]).await.unwrap()[0].duplicate);
    let c = log.append(vec![with_id("c", 6)]).await.unwrap().remove(0);
    drop(log);
    let (log, report) = open(dir.path(), LogConfig::default());
    assert!(!report.clean_shutdown);
    let r = log
        .append(vec![with_id("c", 7), with_id("b", 8)])
        .await
        .unwrap();
    assert!(r.iter().all(|r| r.duplicate));
    assert_eq!(r[0].sequence, c.sequence);
    assert_eq!(log.stats().events, 4);

    // Outside the window, the same id stores a new event.
    let dir2 = tempfile::tempdir().unwrap();
    let (log, _) = open(
        dir2.path(),
        LogConfig {
            dedup_window: Duration::from_nanos(1),
            ..LogConfig::default()
        },
    );
    log.append(vec![with_id("a", 0)]).await.unwrap();
    assert!(!log.append(vec![with_id("a", 1)]).await.unwrap()[0].duplicate);
}

#[tokio::test]
async fn ids_of_a_recreated_namespace_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let id = log.append(vec![ev(0)]).await.unwrap().remove(0).id();
    assert_eq!(log.lookup_id(&id).await, IdLookup::Found(1));
    assert_eq!(log.lookup_id("user-2-00000000").await, IdLookup::Unknown);
    assert_eq!(log.lookup_id("garbage").await, IdLookup::Unknown);
    drop(log);
    std::fs::remove_dir_all(dir.path()).unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    log.append(vec![ev(0)]).await.unwrap();
    assert_eq!(
        log.lookup_id(&id).await,
        IdLookup::Unknown,
        "old incarnation's id resolved"
    );
}

#[tokio::test]
async fn a_reader_at_the_end_waits_for_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let mut r = log.reader(Start::Newest).await.unwrap();
    assert!(r.try_next().unwrap().is_none());
    let waiter = tokio::spawn(async move {
        match r.next().await {
            Ok(Some(ReadItem::Event(e))) => e.sequence,
            other => panic!("{other:?}"),
        }
    });
    tokio::task::yield_now().await;
    append(&log, vec![ev(0)]).await;
    let got = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("reader never woke")
        .unwrap();
    assert_eq!(got, 1);
    // A waiting reader ends when the log closes.
    let mut r = log.reader(Start::Newest).await.unwrap();
    let waiter = tokio::spawn(async move { r.next().await.map(|i| i.is_none()) });
    tokio::task::yield_now().await;
    log.close().await;
    assert!(
        tokio::time::timeout(WAIT, waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    );
}

#[tokio::test]
async fn interval_and_never_policies_resolve_after_the_write() {
    for fsync in [
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(
            dir.path(),
            LogConfig {
                fsync,
                ..LogConfig::default()
            },
        );
        append_n(&log, 20).await;
        assert_eq!(seqs(&read_all(&log, Start::Oldest)).len(), 20);
        log.close().await;
        drop(log);
        let (log, report) = open(dir.path(), LogConfig::default());
        assert!(report.clean_shutdown);
        assert_eq!(log.stats().events, 20);
    }
}

#[tokio::test]
async fn group_commit_serves_many_appends_with_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let log = Arc::new(log);
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![ev(i)]).await.map(|r| r[0].sequence) })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    got.sort();
    assert_eq!(got, (1..=256).collect::<Vec<_>>());
    let s = log.stats();
    assert!(
        s.syncs < 256,
        "{} syncs for 256 appends: no grouping",
        s.syncs
    );
}

#[tokio::test]
async fn the_data_directory_is_locked_while_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, _) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
    let log = storage.namespace("user", true).await.unwrap().unwrap();
    log.append(vec![ev(0)]).await.unwrap();
    let err = DiskStorage::open(StorageOptions::new(dir.path())).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&std::process::id().to_string()),
        "{err}"
    );
    storage.close().await.unwrap();
    drop(log);
    drop(storage);
    let (storage, reports) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].namespace.as_str(), reports[0].events),
        ("user", 1)
    );
    assert_eq!(storage.namespaces().await.unwrap(), ["user"]);
    assert!(storage.namespace("nope", false).await.unwrap().is_none());
    assert!(storage.namespace("a.b", true).await.is_err());
}

#[tokio::test]
async fn the_state_store_persists_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (storage, _) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
        let st = storage.state();
        st.put("consumer/a", Bytes::from("1")).await.unwrap();
        st.put("consumer/b", Bytes::from("2")).await.unwrap();
        st.put("other", Bytes::from("x")).await.unwrap();
        st.delete("consumer/b").await.unwrap();
        for i in 0..10_000 {
            st.put("consumer/a", Bytes::from(format!("v{i}")))
                .await
                .unwrap();
        }
        assert_eq!(
            st.get("consumer/a").await.unwrap(),
            Some(Bytes::from("v9999"))
        );
        assert_eq!(st.list("consumer/").await.unwrap().len(), 1);
        storage.close().await.unwrap();
    }
    let state_dir = dir.path().join(".state");
    let bytes: u64 = files_with_ext(&state_dir, "log")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        bytes < 2 * 1024 * 1024,
        "state log not compacted: {bytes} bytes"
    );
    let (storage, _) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
    let st = storage.state();
    assert_eq!(
        st.get("consumer/a").await.unwrap(),
        Some(Bytes::from("v9999"))
    );
    assert_eq!(st.get("consumer/b").await.unwrap(), None);
    assert_eq!(
        st.list("").await.unwrap(),
        vec![
            ("consumer/a".into(), Bytes::from("v9999")),
            ("other".into(), Bytes::from("x"))
        ]
    );
}

/// Waits (bounded) until the log heals: its writer probes every `PROBE_INTERVAL`.
async fn wait_writable(log: &bus_broker::storage::Log) {
    let mut heals = log.heals();
    tokio::time::timeout(WAIT, heals.wait_for(|_| log.stats().read_only.is_none()))
        .await
        .expect("the log did not heal")
        .expect("the log closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_heals_once_the_disk_works_and_leaves_no_gap() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let fs = SimFs::new();
        let config = LogConfig {
            fsync,
            ..LogConfig::default()
        };
        let (log, _) = open_fs(dir.path(), config.clone(), Arc::new(fs.clone())).unwrap();
        append_n(&log, 3).await;
        fs.fail(FaultOp::Write, 0, ErrorKind::StorageFull);
        let err = log.append(vec![ev(10), ev(11)]).await.unwrap_err();
        assert!(err.to_string().contains("full"), "{fsync:?}: {err}");
        // Read-only while the disk is full: refused at once, and the probes keep failing.
        let again = log.append(vec![ev(12)]).await.unwrap_err();
        assert!(
            matches!(
                again,
                StorageError::ReadOnly { .. } | StorageError::DiskFull { .. }
            ),
            "{again}"
        );
        assert!(log.stats().read_only.is_some());
        fs.clear_faults();
        wait_writable(&log).await;
        assert_eq!(log.stats().heals, 1);
        // Resumes where it was: the failed group's sequences are handed out again.
        assert_eq!(append(&log, vec![ev(13)]).await, [4], "{fsync:?}");
        assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2, 3, 4]);
        log.close().await;
        drop(log);
        let (log, report) = open(dir.path(), config);
        assert_eq!(report.torn, None, "{fsync:?}");
        let events = read_all(&log, Start::Oldest);
        assert_eq!(seqs(&events), [1, 2, 3, 4]);
        assert_eq!(events[3].payload, ev(13).payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_heals_from_the_last_successful_sync() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let (log, a, b) = two_groups_behind_a_failing_sync(dir.path(), &fs).await;
    fs.hold_syncs(false);
    for t in [a, b] {
        assert!(t.await.unwrap().is_err());
    }
    fs.clear_faults();
    wait_writable(&log).await;
    // What was written after the last good sync is cut: A and B are gone, 4 is new.
    assert_eq!(append(&log, vec![ev(12)]).await, [4]);
    let events = read_all(&log, Start::Oldest);
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
    assert_eq!(events[3].payload, ev(12).payload);
    drop(log);
    // A crash now: recovery finds exactly what was answered.
    fs.power_loss().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let events = read_all(&log, Start::Oldest);
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
    assert_eq!(events[3].payload, ev(12).payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_under_never_stays_read_only_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let config = LogConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(1)),
        ..LogConfig::default()
    };
    let (log, _) = open_fs(dir.path(), config, Arc::new(fs.clone())).unwrap();
    // The first append syncs the reservation of sequences (2.4) before it is answered: the
    // fault is armed after it, for an interval sync. That may be the first append's own, if
    // it has not run yet; the second append is then refused, the namespace read-only already.
    append_n(&log, 1).await;
    fs.fail(FaultOp::Sync, 0, ErrorKind::Other);
    match tokio::time::timeout(WAIT, log.append(vec![ev(1)]))
        .await
        .expect("append timed out")
    {
        Ok(_) | Err(StorageError::ReadOnly { .. }) => {}
        Err(e) => panic!("append: {e:?}"),
    }
    tokio::time::timeout(WAIT, async {
        while log.stats().read_only.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the interval sync did not fail");
    fs.clear_faults();
    // Answered events may never have reached the disk: no probe makes it writable again.
    let calls = fs.sync_calls();
    tokio::time::sleep(bus_broker::storage::PROBE_INTERVAL * 2).await;
    assert!(log.stats().read_only.is_some());
    assert_eq!(fs.sync_calls(), calls);
}

/// Busy namespaces sync in parallel on the shared sync pool: four namespaces each have a
/// sync in flight at once (held by the simulator), and none is answered before its sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_namespaces_sync_at_once_on_the_shared_pool() {
    const BUSY: u64 = 4;
    assert!(bus_broker::storage::ThreadPools::current().syncers as u64 >= BUSY);
    let dirs: Vec<_> = (0..BUSY).map(|_| tempfile::tempdir().unwrap()).collect();
    let fs = SimFs::new();
    let logs: Vec<_> = dirs
        .iter()
        .map(|d| {
            Arc::new(
                open_fs(d.path(), LogConfig::default(), Arc::new(fs.clone()))
                    .unwrap()
                    .0,
            )
        })
        .collect();
    fs.hold_syncs(true);
    let appends: Vec<_> = logs.iter().map(|l| spawn_append(l, 1)).collect();
    fs.wait_for_held_syncs(BUSY);
    assert!(
        appends.iter().all(|a| !a.is_finished()),
        "answered before its sync"
    );
    fs.hold_syncs(false);
    for a in appends {
        assert_eq!(a.await.unwrap().unwrap(), [1]);
    }
    for log in &logs {
        assert_eq!(seqs(&read_all(log, Start::Oldest)), [1]);
        log.close().await;
    }
}

/// Under `never` (and `interval`), appends ready at once on one thread are written together:
/// the first leads the group and lets the others run before it hands it to the writer, so one
/// `pwrite` covers them all.
#[tokio::test(flavor = "current_thread")]
async fn appends_ready_together_are_written_in_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = never_log(dir.path());
    let appends: Vec<_> = (1..=8).map(|i| spawn_append(&log, i)).collect();
    for (a, seq) in appends.into_iter().zip(1..) {
        assert_eq!(a.await.unwrap().unwrap(), [seq]);
    }
    assert_eq!(log.stats().groups, 1, "one group for all eight");
    assert_eq!(
        seqs(&read_all(&log, Start::Oldest)),
        (1..=8).collect::<Vec<_>>()
    );
}

/// An append dropped while it leads its group (its caller went away) still has the group
/// written: those who joined it are answered, and the dropped one is stored as a cancelled
/// append always was once queued.
#[tokio::test(flavor = "current_thread")]
async fn a_group_whose_leader_is_dropped_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = never_log(dir.path());
    let mut lead = log.append(vec![ev(1)]);
    // Polled once, it queues its event, leads the group and lets other tasks run.
    assert!(futures::poll!(&mut lead).is_pending());
    let joined = spawn_append(&log, 2);
    tokio::task::yield_now().await;
    assert!(
        !joined.is_finished(),
        "answered before its group was written"
    );
    drop(lead);
    assert_eq!(joined.await.unwrap().unwrap(), [2]);
    assert_eq!(log.stats().groups, 1, "the follower joined the group");
    assert_eq!(seqs(&read_all(&log, Start::Oldest)), [1, 2]);
}

/// A log in `dir` under `never`, on a simulated file system.
fn never_log(dir: &std::path::Path) -> Arc<bus_broker::storage::Log> {
    let config = LogConfig {
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    };
    Arc::new(open_fs(dir, config, Arc::new(SimFs::new())).unwrap().0)
}
