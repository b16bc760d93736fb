//! [`ServerThread`]: a server (the `--embedded` broker, the baseline) on a runtime and
//! threads of its own in this process, so that it runs beside the load generator as a
//! separate server would, with as many worker threads as the machine has cores.
//!
//! Bound: starting must report an address within [`START_TIMEOUT`]; stopping signals the
//! server and joins its thread (the server drains its connections, which the bench has
//! closed by then).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::CliError;

/// Longest a server may take to start (open its data directory, bind).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Tells the starter where the server listens, once it serves.
#[derive(Debug)]
pub struct Ready(mpsc::Sender<Result<SocketAddr, String>>);

impl Ready {
    /// The server listens on `addr`.
    pub fn listening(&self, addr: SocketAddr) {
        let _ = self.0.send(Ok(addr));
    }
}

/// A server running on its own thread until stopped or dropped.
#[derive(Debug)]
pub struct ServerThread {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve` on a new multi-threaded runtime; `serve` calls [`Ready::listening`]
    /// once it serves and returns when its shutdown receiver fires.
    pub fn spawn<F, Fut>(name: &str, serve: F) -> Result<ServerThread, CliError>
    where
        F: FnOnce(oneshot::Receiver<()>, Ready) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>>,
    {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let failed = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("bench-server")
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = failed.send(Err(format!("cannot start its runtime: {e}")));
                        return;
                    }
                };
                if let Err(e) = runtime.block_on(serve(stop_rx, Ready(ready_tx))) {
                    let _ = failed.send(Err(e));
                }
            })
            .map_err(|e| CliError::with_cause(format!("cannot start the {name} thread"), e))?;
        let mut server = ServerThread {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => {
                server.addr = addr;
                Ok(server)
            }
            Ok(Err(e)) => Err(CliError::msg(format!("the {name} failed: {e}"))),
            Err(_) => Err(CliError::msg(format!(
                "the {name} did not start within {}s",
                START_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Stops the server and waits for its thread.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}
