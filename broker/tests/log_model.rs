//! Property test: random interleavings of append, batch append, clean reopen, crash and
//! reopen, retention and reads agree with a simple in-memory model (a Vec).

mod common;

use std::sync::Arc;

use bus_broker::storage::io::StdFs;
use bus_broker::storage::{
    EventLog, FsyncPolicy, Log, LogConfig, NewEvent, ReadItem, Retention, Start,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append these payload sizes: one event alone, several as one atomic batch.
    Append(Vec<usize>),
    /// Close cleanly and open again.
    Reopen,
    /// Drop without closing (a process crash) and open again.
    Crash,
    /// Apply retention keeping at least this many events.
    Retain(u64),
    /// Read from this sequence and compare.
    Read(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(0usize..700, 1..5).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0u64..40).prop_map(Op::Retain),
        3 => (0u64..120).prop_map(Op::Read),
    ]
}

fn config(retain: Option<u64>) -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 4096,
        retention: Retention {
            max_events: retain,
            ..Retention::default()
        },
        ..LogConfig::default()
    }
}

fn payload(seq: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn run(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let open = |retain| {
        Log::open(dir.path(), "model", config(retain), Arc::new(StdFs))
            .unwrap()
            .0
    };
    let mut retain = None;
    let mut log = open(retain);
    // The model: every payload ever appended, by sequence (index = sequence - 1), and the
    // oldest sequence retention left.
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut first = 1u64;
    rt.block_on(async {
        for op in ops {
            match op {
                Op::Append(sizes) => {
                    let base = model.len() as u64 + 1;
                    let events = sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| NewEvent::new("model.e", payload(base + i as u64, n)))
                        .collect();
                    let receipts = log.append(events).await.unwrap();
                    for (i, (r, &n)) in receipts.iter().zip(&sizes).enumerate() {
                        assert_eq!(r.sequence, base + i as u64);
                        model.push(payload(r.sequence, n));
                    }
                }
                Op::Reopen => {
                    log.close().await;
                    drop(log);
                    log = open(retain);
                }
                Op::Crash => {
                    drop(log);
                    log = open(retain);
                }
                Op::Retain(keep) => {
                    retain = Some(keep);
                    log.close().await;
                    drop(log);
                    log = open(retain);
                    log.apply_retention().await.unwrap();
                }
                Op::Read(from) => {
                    let mut r = log.reader(Start::Sequence(from)).await.unwrap();
                    let mut next = from.max(1);
                    if next < first {
                        assert_eq!(
                            r.try_next().unwrap(),
                            Some(ReadItem::Gap {
                                missed_from: next,
                                resume_at: first,
                                reason: bus_broker::storage::GapReason::Retention,
                            })
                        );
                        next = first;
                    }
                    while let Some(item) = r.try_next().unwrap() {
                        let ReadItem::Event(e) = item else {
                            panic!("unexpected {item:?}")
                        };
                        assert_eq!(e.sequence, next);
                        assert_eq!(e.payload.as_ref(), model[next as usize - 1].as_slice());
                        next += 1;
                    }
                    assert_eq!(next.max(from), (model.len() as u64 + 1).max(from));
                }
            }
            let s = log.stats();
            assert_eq!(s.last_seq, model.len() as u64);
            match retain {
                None => assert_eq!(s.first_seq, first),
                // Retention (which also runs by itself) deletes whole segments, oldest
                // first: never below the limit, never the newest events.
                Some(keep) => {
                    assert!(s.first_seq >= first, "{s:?}");
                    assert!(
                        s.events >= keep.min(model.len() as u64 + 1 - first),
                        "{s:?}"
                    );
                    first = s.first_seq;
                }
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_log_agrees_with_a_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
