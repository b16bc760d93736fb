//! The salvaging repair (log format 7.5b) against a model: a log of small segments is
//! damaged (bits flipped, sealed segments cut short) at seeded offsets, repaired offline, and
//! reopened. Every record the damage did not touch must come back with its sequence and
//! payload, the repair must name exactly the sequences lost, readers must get them as gaps
//! with the reason `damaged`, and no sequence may be handed out again.
//!
//! The seed is printed; `BUS_REPAIR_SEED=<seed>` replays a run.

mod common;

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use bus_broker::storage::inspect::{DataDir, DirLock, NamespaceDir, Scanned};
use bus_broker::storage::repair::ranges;
use bus_broker::storage::segment::{self, SEGMENT_VERSION, SEGMENT_VERSION_HOLES};
use bus_broker::storage::{GapReason, LogReader as _, NewEvent, ReadItem, Start};
use bus_testkit::{Rng, record_starts};
use common::*;

fn seed() -> u64 {
    Rng::seed_from_env("BUS_REPAIR_SEED", "repair")
}

/// The segment files of `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

fn first_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

fn version_of(path: &Path) -> u16 {
    segment::header_version(&std::fs::read(path).unwrap())
}

/// One record of the log as written: its segment, its byte range, its sequence.
#[derive(Debug, Clone)]
struct Placed {
    segment: usize,
    range: std::ops::Range<usize>,
    sequence: u64,
}

/// Every record of the namespace directory `dir`, with where it lies.
fn layout(dir: &Path) -> Vec<Placed> {
    let mut out = Vec::new();
    for (i, path) in segments(dir).iter().enumerate() {
        let data = std::fs::read(path).unwrap();
        let starts = record_starts(&data);
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(data.len());
            out.push(Placed {
                segment: i,
                range: s..end,
                sequence: first_of(path) + k as u64,
            });
        }
    }
    out
}

/// Repairs every namespace of `data` as `bus inspect --repair` does; the lost ranges of
/// `user`.
fn repair(data: &Path) -> Vec<RangeInclusive<u64>> {
    let lock = DirLock::acquire(data).unwrap();
    let mut lost = Vec::new();
    for ns in DataDir::open(data).unwrap().open_namespaces(false).unwrap() {
        lost = ns.repair(&lock).unwrap().lost;
    }
    lost
}

/// Events read, as (sequence, payload).
type Read = Vec<(u64, Vec<u8>)>;

/// Reads the whole log: its events and its gaps (each checked to be `damaged`).
fn read_with_gaps(log: &bus_broker::storage::Log) -> (Read, Vec<RangeInclusive<u64>>) {
    let mut r = log.open_reader(Start::Oldest).unwrap();
    let (mut events, mut gaps) = (Vec::new(), Vec::new());
    while let Some(item) = r.try_next().unwrap() {
        match item {
            ReadItem::Event(e) => events.push((e.sequence, e.payload.to_vec())),
            ReadItem::Gap {
                missed_from,
                resume_at,
                reason,
            } => {
                assert_eq!(reason, GapReason::Damaged, "{missed_from}..{resume_at}");
                gaps.push(missed_from..=resume_at - 1);
            }
        }
    }
    (events, gaps)
}

const EVENTS: u64 = 60;

/// Event `i` (sequence `i + 1` in a fresh log): about 300 bytes, so that 60 make five
/// segments of 4 KiB.
fn big(i: u64) -> NewEvent {
    NewEvent::new(format!("user.e{i}"), payload(i))
}

fn payload(i: u64) -> Vec<u8> {
    format!("payload-{i}-{}", "x".repeat(256)).into_bytes()
}

async fn fill(log: &bus_broker::storage::Log, from: u64) {
    for i in from..from + EVENTS {
        append(log, vec![big(i)]).await;
    }
}

/// A data directory whose namespace `user` holds [`EVENTS`] events in small segments, closed.
struct Filled {
    /// Keeps the directory alive.
    _tmp: tempfile::TempDir,
    /// The data directory.
    data: PathBuf,
    /// The namespace's directory.
    dir: PathBuf,
    /// Its segment files, oldest first.
    segs: Vec<PathBuf>,
}

async fn filled() -> Filled {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = data.join("user");
    let (log, _) = open(&dir, small_segments());
    fill(&log, 0).await;
    log.close().await;
    let segs = segments(&dir);
    Filled {
        _tmp: tmp,
        data,
        dir,
        segs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_keeps_every_record_the_damage_missed_at_seeded_offsets() {
    let mut rng = Rng(seed());
    for round in 0..24 {
        let Filled {
            _tmp,
            data,
            dir,
            segs,
        } = filled().await;
        assert!(segs.len() >= 4, "{segs:?}");
        let placed = layout(&dir);
        let active = segs.len() - 1;
        let last_seq = placed.last().unwrap().sequence;

        // The damage: one to three flips (in a record, or a segment header), and sometimes a
        // sealed segment cut short. The active segment's last record is left alone: damage to
        // it cannot be told from a torn write, which open cuts (7.5), not repair.
        let mut hit = BTreeSet::new();
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let target = &placed[rng.below(placed.len() as u64 - 1) as usize];
            let path = &segs[target.segment];
            let mut bytes = std::fs::read(path).unwrap();
            let header = rng.below(8) == 0;
            let at = if header {
                rng.below(segment::SEGMENT_HEADER_BYTES as u64) as usize
            } else {
                target.range.start + rng.below(target.range.len() as u64) as usize
            };
            bytes[at] ^= 1 << rng.below(8);
            std::fs::write(path, &bytes).unwrap();
            if !header {
                hit.insert(target.sequence);
            }
            what.push(format!("flip {} at {at}", path.display()));
        }
        if rng.below(3) == 0 {
            let seg = rng.below(active as u64) as usize;
            let path = &segs[seg];
            let mut bytes = std::fs::read(path).unwrap();
            let at = segment::SEGMENT_HEADER_BYTES
                + rng.below((bytes.len() - segment::SEGMENT_HEADER_BYTES) as u64) as usize;
            bytes.truncate(at);
            std::fs::write(path, &bytes).unwrap();
            for p in placed
                .iter()
                .filter(|p| p.segment == seg && p.range.end > at)
            {
                hit.insert(p.sequence);
            }
            what.push(format!("cut {} at {at}", path.display()));
        }
        let ctx = format!("round {round}: {what:?}");

        let lost = repair(&data);
        assert_eq!(lost, ranges(hit.iter().copied()), "{ctx}");
        if rng.below(2) == 0 {
            // A crash after the original bytes were quarantined but before the rewritten
            // segment was renamed over them: the damaged segment is back, its temporary file
            // left behind. Running the repair again finishes it.
            let q = dir.join("quarantine");
            let mut cuts: Vec<PathBuf> = std::fs::read_dir(&q)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            cuts.sort();
            let cut = &cuts[rng.below(cuts.len() as u64) as usize];
            let name = cut.file_name().unwrap().to_str().unwrap();
            let seg = dir.join(name.split(".0.cut").next().unwrap());
            std::fs::copy(cut, &seg).unwrap();
            let _ = std::fs::remove_file(segment::index_path_for(&seg));
            std::fs::write(
                dir.join(format!(
                    "tmp.{}",
                    seg.file_name().unwrap().to_str().unwrap()
                )),
                b"half",
            )
            .unwrap();
            let again = repair(&data);
            let again: BTreeSet<u64> = again.iter().flat_map(|r| r.clone()).collect();
            assert!(again.is_subset(&hit), "{ctx}: again {again:?}");
            assert_eq!(
                version_of(&seg),
                SEGMENT_VERSION_HOLES,
                "{ctx}: {} not rewritten again",
                seg.display()
            );
        }
        // Verifies everywhere now, and every segment the repair wrote or made active is
        // version 2.
        let ns = NamespaceDir::open(&dir).unwrap();
        for seg in &ns.segments {
            assert!(
                matches!(ns.scan(seg).unwrap(), Scanned::Healthy(_)),
                "{ctx}: {} still damaged",
                seg.path.display()
            );
        }
        let now = segments(&dir);
        assert_eq!(
            &now[..segs.len() - 1],
            &segs[..segs.len() - 1],
            "{ctx}: segments kept"
        );
        assert_eq!(
            version_of(now.last().unwrap()),
            SEGMENT_VERSION_HOLES,
            "{ctx}"
        );

        let (log, report) = open(&dir, small_segments());
        assert!(report.torn.is_none(), "{ctx}: {report:?}");
        let (events, gaps) = read_with_gaps(&log);
        let want: Vec<u64> = (1..=last_seq).filter(|s| !hit.contains(s)).collect();
        let got: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
        assert_eq!(got, want, "{ctx}");
        for (s, payload) in &events {
            assert_eq!(payload, &self::payload(s - 1), "{ctx}");
        }
        // A run of losses that spans segments may come as one gap per segment.
        let gap_seqs = gaps.iter().flat_map(|g| g.clone());
        assert_eq!(ranges(gap_seqs), ranges(hit.iter().copied()), "{ctx}");
        // A new event takes a sequence never handed out.
        let next = append(&log, vec![big(99)]).await;
        assert_eq!(next, vec![last_seq + 1], "{ctx}");
        log.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_lost_at_the_end_of_a_segment_is_a_gap_to_the_next_segment() {
    let Filled {
        _tmp,
        data,
        dir,
        segs,
    } = filled().await;
    let placed = layout(&dir);
    // The last record of the first segment, cut off.
    let last = placed.iter().rfind(|p| p.segment == 0).unwrap().clone();
    let bytes = std::fs::read(&segs[0]).unwrap();
    std::fs::write(&segs[0], &bytes[..last.range.start + 3]).unwrap();
    assert_eq!(repair(&data), vec![last.sequence..=last.sequence]);

    let (log, _) = open(&dir, small_segments());
    // A reader started inside the hole resumes in the next segment.
    let mut r = log.open_reader(Start::Sequence(last.sequence)).unwrap();
    assert_eq!(
        r.try_next().unwrap(),
        Some(ReadItem::Gap {
            missed_from: last.sequence,
            resume_at: last.sequence + 1,
            reason: GapReason::Damaged,
        })
    );
    match r.try_next().unwrap() {
        Some(ReadItem::Event(e)) => assert_eq!(e.sequence, last.sequence + 1),
        other => panic!("{other:?}"),
    }
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_directory_opens_unchanged_and_stays_version_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("user");
    let (log, _) = open(&dir, small_segments());
    fill(&log, 0).await;
    log.close().await;
    let before: Vec<(PathBuf, Vec<u8>)> = segments(&dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert!(before.len() >= 4);
    assert!(before.iter().all(|(p, _)| version_of(p) == SEGMENT_VERSION));

    let (log, _) = open(&dir, small_segments());
    let (events, gaps) = read_with_gaps(&log);
    assert_eq!(events.len() as u64, EVENTS);
    assert!(gaps.is_empty());
    log.close().await;
    for (p, b) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} rewritten", p.display());
    }
    // New segments of a version-1 directory are version 1 too.
    let (log, _) = open(&dir, small_segments());
    fill(&log, 0).await;
    log.close().await;
    assert!(
        segments(&dir)
            .iter()
            .all(|p| version_of(p) == SEGMENT_VERSION)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_repair_new_segments_are_version_2() {
    let Filled {
        _tmp,
        data,
        dir,
        segs,
    } = filled().await;
    let placed = layout(&dir);
    let victim = &placed[1];
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[victim.range.start + 12] ^= 0x04;
    std::fs::write(&segs[0], &bytes).unwrap();
    assert_eq!(repair(&data), vec![2..=2]);
    assert!(
        dir.join("quarantine")
            .join(format!("{}.0.cut", segment::segment_name(1)))
            .exists()
    );
    let (log, _) = open(&dir, small_segments());
    fill(&log, 0).await;
    log.close().await;
    let after = segments(&dir);
    assert!(after.len() > segs.len() + 1);
    for p in &after[segs.len()..] {
        assert_eq!(version_of(p), SEGMENT_VERSION_HOLES, "{}", p.display());
    }
    // The sealed segments the repair did not touch stay version 1.
    assert!(segs[1..].iter().all(|p| version_of(p) == SEGMENT_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeking_by_time_passes_a_segment_whose_every_record_was_lost() {
    let Filled {
        _tmp,
        data,
        dir,
        segs,
    } = filled().await;
    assert!(segs.len() >= 4);
    // The second segment keeps only its header: every record of it is lost.
    let bytes = std::fs::read(&segs[1]).unwrap();
    std::fs::write(&segs[1], &bytes[..segment::SEGMENT_HEADER_BYTES]).unwrap();
    let (first, next) = (first_of(&segs[1]), first_of(&segs[2]));
    assert_eq!(repair(&data), vec![first..=next - 1]);

    let (log, _) = open(&dir, small_segments());
    let all = read_all(&log, Start::Oldest);
    assert_eq!(all.len() as u64, EVENTS - (next - first));
    for e in &all {
        let mut r = log.open_reader(Start::Time(e.time_ns)).unwrap();
        let want = all.iter().find(|x| x.time_ns >= e.time_ns).unwrap();
        let got = loop {
            match r.try_next().unwrap() {
                Some(ReadItem::Event(got)) => break got,
                Some(ReadItem::Gap { .. }) => continue,
                None => panic!("nothing read from the time of {}", e.sequence),
            }
        };
        assert_eq!(
            got.sequence, want.sequence,
            "seek to the time of {}",
            e.sequence
        );
    }
    log.close().await;
}
