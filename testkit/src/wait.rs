//! Bounded waits: [`within`] for one await, [`eventually`] (and [`eventually_blocking`] for
//! tests without a runtime) for a condition polled until a hard deadline.
//!
//! Bound: [`WAIT`] for every single await, so that a bug fails a test fast instead of
//! hanging it. Polling is only for state the server reaches on its own (a disconnect noticed,
//! a consumer dropped) — never instead of awaiting something that can be awaited.

use std::future::Future;
use std::time::{Duration, Instant};

/// Bound on every single await on the network or the broker.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`eventually`] checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Awaits `fut` for at most [`WAIT`], panicking with `what` when it takes longer.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// Checks `condition` every [`POLL_INTERVAL`] until it holds, panicking with `what` when it
/// still does not after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?}: {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`eventually`] for a test with no runtime (one that runs processes), with its own
/// `bound`: checks `condition` every [`POLL_INTERVAL`] on this thread.
pub fn eventually_blocking(what: &str, bound: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?}: {what}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}
