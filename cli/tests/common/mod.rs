//! Helpers shared by the tests that run the built `bus` binary: running it with a bounded
//! wait, a broker served in-process on a loopback port ([`TestBroker`], the shared
//! `bus_testkit::TestServer` on its own runtime), `bus server` as a
//! child process ([`ServerProcess`]), and a long-running `bus get` whose output is read
//! line by line with timeouts ([`Reader`]). Every wait is bounded; nothing sleeps for a fixed
//! time hoping something happened.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest any one run of the binary, or any wait for a line, may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// The `bus` command, with the caller's `BUS_*` environment removed and colour off.
pub fn bus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bus"));
    // Keep the caller's environment from changing what is tested.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BUS_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

/// Polls `child` until it exits or [`RUN_TIMEOUT`] passes (`None`). Polling: a child's exit
/// announces itself to no one we can await without a runtime.
fn exit_within_timeout(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` at most [`RUN_TIMEOUT`], killing it past that.
pub fn wait(mut child: Child) -> Output {
    if exit_within_timeout(&mut child).is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().expect("output");
        panic!(
            "bus did not exit within {RUN_TIMEOUT:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().expect("output")
}

pub fn run(cmd: &mut Command) -> Output {
    wait(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bus"),
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each stdout line parsed as JSON.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Asserts status 0, showing stderr otherwise.
pub fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    o
}

/// The lines `r` yields, read on a thread so the test can wait for them with a timeout.
/// The thread reads to the end even when nobody listens any more, so a child writing to
/// the pipe never blocks on it.
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    rx
}

/// A broker serving on a loopback port until dropped: the shared [`bus_testkit::TestServer`]
/// on a runtime of its own, since these tests run processes, not futures.
pub struct TestBroker {
    /// The server; `None` once dropped.
    server: Option<bus_testkit::TestServer>,
    /// The runtime the server runs on.
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(bus_testkit::TestServer::start_default());
        TestBroker {
            server: Some(server),
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("server").base()
    }

    /// `bus --url <this broker> args...`.
    pub fn bus(&self, args: &[&str]) -> Command {
        let mut c = bus();
        c.arg("--url").arg(self.url()).args(args);
        c
    }

    /// Starts the broker's shutdown.
    pub fn stop(&mut self) {
        if let Some(s) = self.server.as_mut() {
            s.trigger_shutdown();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Dropping the server fires its shutdown trigger.
        drop(self.server.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Waits for `child` to exit, at most [`RUN_TIMEOUT`]; kills it and panics past that.
pub fn wait_status(child: &mut Child, what: &str) -> ExitStatus {
    match exit_within_timeout(child) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {RUN_TIMEOUT:?}");
        }
    }
}

/// A loopback port nothing listens on now: bound to port 0, then let go.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// `bus server` as a child process on a free loopback port (`--addr 127.0.0.1:0`), its log
/// read on a thread. Killed (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Child,
    url: String,
    /// The log lines after the one naming the address.
    pub log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `bus server` on `data` and waits for the start-up line that names its address.
    pub fn start(data: &Path) -> ServerProcess {
        ServerProcess::start_with(data, &[])
    }

    /// Like [`ServerProcess::start`], with more `bus server` flags.
    pub fn start_with(data: &Path, flags: &[&str]) -> ServerProcess {
        ServerProcess::start_at(data, "127.0.0.1:0", flags)
    }

    /// Like [`ServerProcess::start_with`], listening on `addr` (a port from [`free_port`], to
    /// start a broker again where its clients look for it).
    pub fn start_at(data: &Path, addr: &str, flags: &[&str]) -> ServerProcess {
        let mut cmd = bus();
        cmd.args(["server", "--addr", addr, "--log-level", "info"])
            .arg("--data")
            .arg(data)
            .args(flags);
        ServerProcess::spawn(cmd)
    }

    /// Starts `cmd` (a `bus server` command line) and waits for the start-up line that names
    /// its address.
    pub fn spawn(mut cmd: Command) -> ServerProcess {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bus server");
        let log = lines_of(child.stderr.take().unwrap());
        // Recovery may log first; the line naming the address comes once it listens.
        let deadline = Instant::now() + RUN_TIMEOUT;
        let mut seen = Vec::new();
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line
                        .split("listening on ")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        break url.to_owned();
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("bus server did not say where it listens; its log: {seen:?}");
                }
            }
        };
        ServerProcess { url, child, log }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line holding `text` (bounded by [`RUN_TIMEOUT`]) and returns it.
    pub fn wait_log(&self, text: &str) -> String {
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("the server never logged {text:?}"),
            }
        }
    }

    /// `bus --url <this server> args...`.
    pub fn bus(&self, args: &[&str]) -> Command {
        let mut c = bus();
        c.arg("--url").arg(&self.url).args(args);
        c
    }

    /// Sends `signal` (`-9`, `-TERM`) with kill(1) and waits until the process is gone.
    pub fn signal_and_wait(mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
        wait_status(&mut self.child, "bus server")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `bus get` (or any long-running `bus`), its stdout and stderr read line by line
/// on threads. Killed when dropped.
pub struct Reader {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    /// Stderr lines seen so far, for failure messages.
    err_seen: Vec<String>,
}

impl Reader {
    pub fn spawn(cmd: &mut Command) -> Reader {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bus");
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Reader {
            child,
            out,
            err,
            err_seen: Vec::new(),
        }
    }

    /// The next stdout line, waiting at most [`RUN_TIMEOUT`].
    pub fn line(&mut self) -> String {
        match self.out.recv_timeout(RUN_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                self.err_seen.extend(self.err.try_iter());
                panic!(
                    "no stdout line within {RUN_TIMEOUT:?}; stderr: {:?}",
                    self.err_seen
                )
            }
        }
    }

    /// The next stdout line as JSON.
    pub fn json(&mut self) -> serde_json::Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The next stdout line as JSON if one has arrived; does not wait.
    pub fn try_json(&mut self) -> Option<serde_json::Value> {
        let line = self.out.try_recv().ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// Waits for a stderr line containing `text` and returns it.
    pub fn wait_stderr(&mut self, text: &str) -> String {
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(line) => {
                    self.err_seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {text:?} within {RUN_TIMEOUT:?}; stderr: {:?}",
                    self.err_seen
                ),
            }
        }
    }

    /// Waits for the process to exit; returns its status, the stdout lines not yet taken
    /// and all of stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = wait_status(&mut self.child, "bus");
        // The pipes close when the process exits; the reader threads then end.
        let mut rest = Vec::new();
        while let Ok(line) = self.out.recv_timeout(RUN_TIMEOUT) {
            rest.push(line);
        }
        while let Ok(line) = self.err.recv_timeout(RUN_TIMEOUT) {
            self.err_seen.push(line);
        }
        (status, rest, self.err_seen.join("\n"))
    }

    /// Sends `signal` (`-INT`, `-TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
