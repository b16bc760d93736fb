//! [`ReconnectPolicy`]: how often and how patiently the client tries again after a dropped
//! connection — a subscription reconnecting and resuming, a publish retried with its dedup
//! id.

use std::time::Duration;

/// How the client retries after a connection was refused or dropped: up to
/// [`max_attempts`](ReconnectPolicy::max_attempts) consecutive attempts, waiting
/// [`initial_delay`](ReconnectPolicy::initial_delay) before the first and doubling up to
/// [`max_delay`](ReconnectPolicy::max_delay). A successful attempt resets the count.
///
/// The default is 30 attempts from 100 ms up to 2 s apart: about 53 s of a broker being away
/// (a restart, say) before the operation fails. That stays inside the broker's default dedup
/// window (2 min), so a publish retried with its dedup id is still recognised as a repeat; a
/// longer policy, a shorter `--dedup-window`, or more than the table's 1,000,000 remembered ids
/// per namespace in between, and a late retry may store the event twice.
///
/// ```no_run
/// # async fn demo() -> Result<(), bus_client::Error> {
/// use std::time::Duration;
/// use bus_client::{ConnectOptions, ReconnectPolicy};
/// let client = ConnectOptions::new()
///     .reconnect(ReconnectPolicy::new().max_attempts(10).max_delay(Duration::from_secs(1)))
///     .connect("http://127.0.0.1:2021")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy::new()
    }
}

impl ReconnectPolicy {
    /// The default policy: 30 attempts, 100 ms doubling up to 2 s.
    ///
    /// ```no_run
    /// use bus_client::ReconnectPolicy;
    /// assert_eq!(ReconnectPolicy::new(), ReconnectPolicy::default());
    /// ```
    pub fn new() -> ReconnectPolicy {
        ReconnectPolicy {
            max_attempts: 30,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }

    /// No retries: a dropped connection ends the subscription (with an
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) item) and fails the publish.
    ///
    /// ```no_run
    /// use bus_client::{ConnectOptions, ReconnectPolicy};
    /// let options = ConnectOptions::new().reconnect(ReconnectPolicy::never());
    /// ```
    pub fn never() -> ReconnectPolicy {
        ReconnectPolicy {
            max_attempts: 0,
            ..ReconnectPolicy::new()
        }
    }

    /// Consecutive attempts before giving up. Default: 30.
    ///
    /// ```no_run
    /// let policy = bus_client::ReconnectPolicy::new().max_attempts(5);
    /// ```
    pub fn max_attempts(mut self, n: u32) -> ReconnectPolicy {
        self.max_attempts = n;
        self
    }

    /// The wait before the first attempt. Default: 100 ms.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let policy = bus_client::ReconnectPolicy::new().initial_delay(Duration::from_millis(20));
    /// ```
    pub fn initial_delay(mut self, d: Duration) -> ReconnectPolicy {
        self.initial_delay = d;
        self
    }

    /// The longest wait between attempts. Default: 2 s.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// // Keep trying for a long while, at most once every 10 s.
    /// let policy = bus_client::ReconnectPolicy::new()
    ///     .max_attempts(1_000)
    ///     .max_delay(Duration::from_secs(10));
    /// ```
    pub fn max_delay(mut self, d: Duration) -> ReconnectPolicy {
        self.max_delay = d;
        self
    }

    /// The wait before attempt `n` (1 for the first), or `None` when `n` is past the limit.
    pub(crate) fn delay(&self, n: u32) -> Option<Duration> {
        if n == 0 || n > self.max_attempts {
            return None;
        }
        let factor = 1u32 << (n - 1).min(16);
        Some(
            self.initial_delay
                .saturating_mul(factor)
                .min(self.max_delay),
        )
    }
}

/// Runs `attempt` until it succeeds, fails in a way a retry cannot help, or the policy says
/// stop. Only errors of a refused or dropped connection are retried, and only when
/// `retry_safe` (the operation is idempotent, as a publish with a dedup id is).
pub(crate) async fn with_retries<T, F, Fut>(
    policy: ReconnectPolicy,
    retry_safe: bool,
    mut attempt: F,
) -> Result<T, crate::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::Error>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if retry_safe && is_disconnect(&e) => {
                n += 1;
                match policy.delay(n) {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(e),
                }
            }
            other => return other,
        }
    }
}

/// Whether `e` is a refused or dropped connection.
pub(crate) fn is_disconnect(e: &crate::Error) -> bool {
    matches!(e.kind(), crate::ErrorKind::Connect | crate::ErrorKind::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_limit_then_stop() {
        let p = ReconnectPolicy::new().max_attempts(6);
        let ms: Vec<_> = (1..=7).map(|n| p.delay(n).map(|d| d.as_millis())).collect();
        assert_eq!(
            ms,
            [
                Some(100),
                Some(200),
                Some(400),
                Some(800),
                Some(1600),
                Some(2000),
                None
            ]
        );
        assert_eq!(ReconnectPolicy::never().delay(1), None);
        assert_eq!(
            ReconnectPolicy::new().max_attempts(u32::MAX).delay(1000),
            Some(Duration::from_secs(2))
        );
    }
}
