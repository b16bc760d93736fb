//! Crash test: a child process appends under `fsync=always` from several tasks and prints
//! each sequence once its append resolved; the parent SIGKILLs it at a random moment,
//! reopens the log and checks that every printed sequence is present, intact and in order
//! with no gaps. Repeated over many random moments, on the same growing log.
//!
//! This test binary is also the child (it re-executes itself with `BUS_CRASH_CHILD_DIR`
//! set), so it runs without the libtest harness. Set `BUS_CRASH_SEED` to replay a run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus_broker::storage::io::StdFs;
use bus_broker::storage::{EventLog, Log, LogConfig, LogReader as _, NewEvent, ReadItem, Start};
use bus_testkit::Rng;

const CHILD_ENV: &str = "BUS_CRASH_CHILD_DIR";
const ROUNDS: usize = 25;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let seed = std::env::var("BUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(bus_broker::storage::now_ns);
    println!("running 1 test (crash seed {seed}: set BUS_CRASH_SEED={seed} to replay)");
    let result = std::panic::catch_unwind(|| parent(seed));
    match result {
        Ok(()) => {
            println!("test sigkill_at_random_moments_loses_no_acknowledged_append ... ok");
            println!(
                "\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
            );
        }
        Err(_) => {
            println!(
                "test sigkill_at_random_moments_loses_no_acknowledged_append ... FAILED (seed {seed})"
            );
            println!(
                "\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"
            );
            std::process::exit(101);
        }
    }
}

/// The payload the child writes for a tag: its size varies so that kills land inside
/// records of many shapes.
fn payload_for(tag: &str) -> Vec<u8> {
    let n = tag.bytes().map(u64::from).sum::<u64>() * 37 % 3000;
    let mut p = tag.as_bytes().to_vec();
    p.extend(std::iter::repeat_n(b'x', n as usize));
    p
}

fn child(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (log, _) = Log::open(
            dir,
            "crash",
            LogConfig {
                segment_bytes: 64 * 1024,
                ..LogConfig::default()
            },
            Arc::new(StdFs),
        )
        .expect("child open");
        let log = Arc::new(log);
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let run = std::process::id();
        let mut tasks = Vec::new();
        for t in 0..6u32 {
            let (log, out) = (log.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                // Bounded: the parent kills the child long before this ends.
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0..100_000u32 {
                    if Instant::now() > deadline {
                        break;
                    }
                    // Every third task appends batches of 3: batches are atomic.
                    let n = if t % 3 == 0 { 3 } else { 1 };
                    let tags: Vec<String> = (0..n).map(|k| format!("{run}-{t}-{i}-{k}")).collect();
                    let events = tags
                        .iter()
                        .map(|tag| NewEvent::new("crash.e", payload_for(tag)))
                        .collect();
                    let Ok(receipts) = log.append(events).await else {
                        return;
                    };
                    let mut o = out.lock().unwrap();
                    for (r, tag) in receipts.iter().zip(&tags) {
                        writeln!(o, "{} {tag}", r.sequence).unwrap();
                    }
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn parent(seed: u64) {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<u64, String> = HashMap::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = 1 + rng.next() % 400;
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child stopped early").unwrap();
            record(&mut acked, &line);
            seen += 1;
        }
        child.kill().unwrap();
        // Lines printed before the kill are acknowledgements too.
        for line in lines {
            record(&mut acked, &line.unwrap());
        }
        child.wait().unwrap();

        let (log, report) = Log::open(
            dir.path(),
            "crash",
            LogConfig {
                segment_bytes: 64 * 1024,
                ..LogConfig::default()
            },
            Arc::new(StdFs),
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let mut r = log.open_reader(Start::Oldest).unwrap();
        let mut expect = 1;
        let mut found: HashMap<u64, Vec<u8>> = HashMap::new();
        while let Some(item) = r
            .try_next()
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
        {
            let ReadItem::Event(e) = item else {
                panic!("round {round}: unexpected gap")
            };
            assert_eq!(e.sequence, expect, "round {round}: gap or disorder");
            expect += 1;
            found.insert(e.sequence, e.payload.to_vec());
        }
        for (seq, tag) in &acked {
            let got = found.get(seq).unwrap_or_else(|| {
                panic!("round {round}: acknowledged {seq} ({tag}) lost; {report:?}")
            });
            assert_eq!(
                got,
                &payload_for(tag),
                "round {round}: sequence {seq} damaged"
            );
        }
        drop(log);
    }
    assert!(
        acked.len() >= ROUNDS,
        "too few acknowledgements to mean anything"
    );
}

fn record(acked: &mut HashMap<u64, String>, line: &str) {
    let (seq, tag) = line.split_once(' ').expect("malformed child line");
    let seq: u64 = seq.parse().expect("malformed sequence");
    assert!(
        acked.insert(seq, tag.to_owned()).is_none(),
        "sequence {seq} acknowledged twice"
    );
}
