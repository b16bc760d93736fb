//! A full disk, for real: a small tmpfs mounted for the test (needs root, which CI has).
//! Publishes are refused while it is full, acks keep working from the state log's reserve,
//! and once space is freed the namespace heals by itself; nothing answered is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bus_testkit::*;
use hyper::StatusCode;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot: not root (fails instead when `CI=true`, where the
    /// test must run), or no `mount`.
    fn mount(size: &str) -> Option<Tmpfs> {
        let skip = |why: &str| {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "disk-full test cannot run in CI: {why}"
            );
            eprintln!("skipped: {why}");
            None
        };
        // The effective user, by `id -u` (no libc dependency for one call).
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return skip("mounting a tmpfs needs root");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match ok {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            Ok(s) => skip(&format!("mount -t tmpfs failed: {s}")),
            Err(e) => skip(&format!("mount: {e}")),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system with one file until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![1u8; 64 * 1024];
    for _ in 0..100_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // The last partial chunk may sit in no page yet: a few small writes take what is left.
    while f.write_all(&[1u8; 512]).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_work_on_a_full_disk_and_publishing_heals_when_space_returns() {
    let Some(fs) = Tmpfs::mount("48m") else {
        return;
    };
    let data = fs.path().join("data");
    let mut s = TestServer::start(move |c| {
        c.data_dir = data.clone();
        c.log.segment_bytes = 256 * 1024;
    })
    .await;
    let (mut st, _) = s
        .attach("pattern=user.%3E&durable=w&ack=manual&from=oldest&max_in_flight=1000")
        .await;
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(put(&s, "user.created", &format!("e{i}")).await);
    }
    assert_eq!(next_n(&mut st, 200).await.len(), 200);
    // One ack first: it waits for a state write that records every delivery too, so that no
    // lazy write of them hits the full disk (and takes the reserve) while it fills.
    s.expect_ack("w", &ids[0], "ack", "acked").await;
    let filler = fill(fs.path());
    // Full: a publish is refused, with the JSON error, and stores nothing.
    let big = "x".repeat(200 * 1024);
    let refused = within("a publish on a full disk", async {
        loop {
            let r = s.post("/v1/events/user.created", &[], big.clone()).await;
            if r.status != StatusCode::CREATED {
                break r;
            }
        }
    })
    .await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "read_only");
    let health = s.get_json("/healthz").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["namespaces"]["user"]["read_only"].is_string(),
        "{health}"
    );
    // Acks still work: each is answered only once durable, from the reserve.
    for id in &ids[1..] {
        s.expect_ack("w", id, "ack", "acked").await;
    }
    assert_eq!(s.consumer("w").await["pending"], 0);
    // Space comes back: the namespace probes and heals by itself.
    std::fs::remove_file(&filler).expect("remove filler");
    let receipt = within("the namespace to heal", async {
        loop {
            let r = s.post("/v1/events/user.created", &[], "after").await;
            if r.status == StatusCode::CREATED {
                break r.json();
            }
            r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "read_only");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        receipt["sequence"], 201,
        "no gap after the refused appends: {receipt}"
    );
    assert_eq!(s.get_json("/healthz").await["status"], "ok");
    assert!(
        metric(
            &s.get("/metrics").await.text(),
            "bus_namespace_heals_total{namespace=\"user\"}"
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(next(&mut st).await, d("after", 1));
    drop(st);
    // After a restart: every acked event stays acked; the unacked new one comes back.
    s.restart().await;
    let (mut st, _) = s
        .attach("pattern=user.%3E&durable=w&ack=manual&from=oldest")
        .await;
    assert_eq!(next(&mut st).await, d("after", 2));
    assert_eq!(s.pull_all("user.>").await.len(), 201);
}
