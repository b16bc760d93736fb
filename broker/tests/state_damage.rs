//! A damaged state log never stops the start and never rolls back what it acknowledged: one
//! flipped byte anywhere in `.state/` (a record, a segment header, a sealed segment, the
//! last record, an index, the checkpoint) opens with every key at the last value written;
//! a cut at any length (a torn write) keeps every write whose first copy it left whole.
//!
//! The state is written through [`LogStateStore`] and compared with a `BTreeMap` model. The
//! offsets are drawn from a seeded generator: the seed and every offset are printed; set
//! `BUS_DAMAGE_SEED` to replay a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bus_broker::storage::io::StdFs;
use bus_broker::storage::{LogStateStore, StateStore};
use bus_testkit::{Rng, record_starts};
use bytes::Bytes;

fn seed() -> u64 {
    Rng::seed_from_env("BUS_DAMAGE_SEED", "damage")
}

type Model = BTreeMap<String, Bytes>;

fn open(dir: &Path) -> LogStateStore {
    LogStateStore::open(dir, Arc::new(StdFs))
        .unwrap_or_else(|e| panic!("the state opens: {e}"))
        .0
}

/// Every key of `store` (prefix ""), as a model.
async fn contents(store: &LogStateStore) -> Model {
    store.list("").await.unwrap().into_iter().collect()
}

/// Writes a state of `keys` keys, `writes` times over (values of varying sizes, some
/// deletions), so that segments are sealed and, with enough writes, compacted.
async fn write_state(dir: &Path, keys: u64, writes: u64, rng: &mut Rng) -> Model {
    let store = open(dir);
    let mut model = Model::new();
    for w in 0..writes {
        let key = format!("consumer/c{}", rng.below(keys));
        if rng.below(50) == 0 {
            store.delete(&key).await.unwrap();
            model.remove(&key);
        } else {
            let value = Bytes::from(format!("{w}:{}", "p".repeat(rng.below(900) as usize)));
            store.put(&key, value.clone()).await.unwrap();
            model.insert(key, value);
        }
    }
    assert_eq!(contents(&store).await, model);
    store.close().await;
    model
}

/// The files of `dir` (not directories), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "reserve"))
        .collect();
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in files(from) {
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flipped_byte_anywhere_in_the_state_log_rolls_nothing_back() {
    let mut rng = Rng(seed());
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    // Enough writes to seal segments of 1 MiB and to compact once (at 4,096 records past
    // twice the live ones), then more.
    let model = write_state(&clean, 24, 3600, &mut rng).await;
    let all = files(&clean);
    let logs: Vec<&PathBuf> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert!(logs.len() >= 2, "sealed segments to damage: {all:?}");

    // Offsets: every segment header, the first and last records of every segment, and
    // seeded ones over every file.
    let mut flips: Vec<(PathBuf, usize)> = Vec::new();
    for log in &logs {
        let data = std::fs::read(log).unwrap();
        let starts = record_starts(&data);
        flips.push(((*log).clone(), rng.below(32) as usize));
        if let (Some(&first), Some(&last)) = (starts.first(), starts.last()) {
            flips.push(((*log).clone(), first + rng.below(48) as usize));
            flips.push((
                (*log).clone(),
                last + rng.below((data.len() - last) as u64) as usize,
            ));
            flips.push(((*log).clone(), data.len() - 1));
        }
    }
    flips.push((clean.join("checkpoint"), 20));
    let sizes: Vec<u64> = all
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    let total: u64 = sizes.iter().sum();
    for _ in 0..40 {
        let mut at = rng.below(total);
        let i = sizes
            .iter()
            .position(|&s| {
                let here = at < s;
                if !here {
                    at -= s;
                }
                here
            })
            .unwrap();
        flips.push((all[i].clone(), at as usize));
    }

    for (n, (file, byte)) in flips.iter().enumerate() {
        let mask = 1u8 << rng.below(8);
        println!("flip {n}: {} byte {byte} mask {mask:#04x}", file.display());
        let dir = base.path().join(format!("flip{n}"));
        copy_dir(&clean, &dir);
        let target = dir.join(file.file_name().unwrap());
        let mut data = std::fs::read(&target).unwrap();
        data[*byte] ^= mask;
        std::fs::write(&target, data).unwrap();

        let store = open(&dir);
        assert_eq!(
            contents(&store).await,
            model,
            "flip {n}: every key at its last value"
        );
        // It writes on, and opens again with the same state.
        store.put("after", Bytes::from_static(b"x")).await.unwrap();
        store.close().await;
        drop(store);
        let store = open(&dir);
        let mut want = model.clone();
        want.insert("after".into(), Bytes::from_static(b"x"));
        assert_eq!(contents(&store).await, want, "flip {n}: reopened");
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_at_any_length_keeps_every_write_left_whole() {
    let mut rng = Rng(seed());
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    // The model after each write, to find what a cut leaves.
    let store = open(&clean);
    let mut models = vec![Model::new()];
    for w in 0..40u64 {
        let key = format!("consumer/c{}", w % 5);
        let value = Bytes::from(format!("{w}:{}", "q".repeat(rng.below(200) as usize)));
        store.put(&key, value.clone()).await.unwrap();
        let mut m = models.last().unwrap().clone();
        m.insert(key, value);
        models.push(m);
    }
    store.close().await;
    drop(store);
    let active = files(&clean)
        .into_iter()
        .rfind(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let data = std::fs::read(&active).unwrap();
    let starts = record_starts(&data);
    // Each write is two records: write w's first copy is record 2w.
    assert_eq!(starts.len(), 80, "two records a write");
    let mut cuts: Vec<usize> = (0..30)
        .map(|_| rng.below(data.len() as u64) as usize)
        .collect();
    cuts.extend(starts.iter().flat_map(|&s| [s, s + 1]));
    for cut in cuts {
        println!("cut at {cut}");
        let dir = base.path().join(format!("cut{cut}"));
        copy_dir(&clean, &dir);
        let target = dir.join(active.file_name().unwrap());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        // Writes whose first copy ends at or before the cut survive.
        let whole = starts
            .iter()
            .enumerate()
            .filter(|&(i, _)| i % 2 == 0)
            .filter(|&(i, _)| starts.get(i + 1).copied().unwrap_or(data.len()) <= cut)
            .count();
        let store = open(&dir);
        assert_eq!(contents(&store).await, models[whole], "cut at {cut}");
        store.close().await;
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_segment_of_a_newer_format_refuses_the_start_and_is_not_salvaged() {
    let mut rng = Rng(seed());
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("state");
    write_state(&dir, 3, 10, &mut rng).await;
    let active = files(&dir)
        .into_iter()
        .rfind(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let mut data = std::fs::read(&active).unwrap();
    data[8..10].copy_from_slice(&7u16.to_le_bytes());
    let crc = crc32fast::hash(&data[..28]);
    data[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&active, &data).unwrap();
    let err = LogStateStore::open(&dir, Arc::new(StdFs))
        .expect_err("a newer format refuses the open")
        .to_string();
    assert!(
        err.contains("segment format version 7 is not supported"),
        "{err}"
    );
    assert_eq!(std::fs::read(&active).unwrap(), data, "nothing rewritten");
}
