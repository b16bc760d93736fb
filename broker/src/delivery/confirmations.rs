//! [`Confirmations`]: publishes that wait until N distinct consumers acked their event.
//!
//! A publisher declares interest in its namespace before appending, so that acks arriving
//! between the append and the registration of its wait are not missed: while a namespace
//! has interest, acks there are recorded (consumer names per event). Without interest an
//! ack costs one atomic load.
//!
//! Bounded: records exist only while a confirming publish is in flight in the namespace, and
//! at most [`MAX_RECORDED`] events are tracked at once; past that, acks of events nobody
//! waits for yet are not recorded (a publish then may see fewer confirmations than were
//! made, never more).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::sync::lock;

/// Most events tracked at once.
pub const MAX_RECORDED: usize = 100_000;

#[derive(Default)]
struct Entry {
    acked_by: HashSet<String>,
    waiter: Option<watch::Sender<usize>>,
}

#[derive(Default)]
struct Inner {
    interest: HashMap<String, usize>,
    entries: HashMap<(String, u64), Entry>,
}

/// Pending publish confirmations. See the module documentation.
#[derive(Default)]
pub struct Confirmations {
    /// Publishes in flight with a confirmation; 0 lets acks skip the lock.
    interest: AtomicUsize,
    inner: Mutex<Inner>,
}

/// Interest of one confirming publish in a namespace; dropping it withdraws it.
pub struct Interest<'a> {
    owner: &'a Confirmations,
    namespace: String,
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        let mut inner = lock(&self.owner.inner);
        let left = match inner.interest.get_mut(&self.namespace) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => 0,
        };
        if left == 0 {
            inner.interest.remove(&self.namespace);
            let ns = self.namespace.clone();
            inner
                .entries
                .retain(|(n, _), e| *n != ns || e.waiter.is_some());
        }
        self.owner.interest.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Confirmations {
    /// Declares a confirming publish into `namespace`; call before appending.
    pub fn interest(&self, namespace: &str) -> Interest<'_> {
        self.interest.fetch_add(1, Ordering::AcqRel);
        *lock(&self.inner)
            .interest
            .entry(namespace.to_owned())
            .or_insert(0) += 1;
        Interest {
            owner: self,
            namespace: namespace.to_owned(),
        }
    }

    /// Records that `consumer` acked event `sequence` of `namespace` (durably).
    pub fn acked(&self, namespace: &str, sequence: u64, consumer: &str) {
        if self.interest.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        if !inner.interest.contains_key(namespace) {
            return;
        }
        let key = (namespace.to_owned(), sequence);
        if !inner.entries.contains_key(&key) && inner.entries.len() >= MAX_RECORDED {
            return;
        }
        let e = inner.entries.entry(key).or_default();
        if e.acked_by.insert(consumer.to_owned())
            && let Some(w) = &e.waiter
        {
            w.send_replace(e.acked_by.len());
        }
    }

    /// Waits until `required` distinct consumers acked the event, or `timeout`; returns how
    /// many did (capped at `required`). `interest` must be held since before the append.
    pub async fn wait(
        &self,
        _interest: &Interest<'_>,
        namespace: &str,
        sequence: u64,
        required: usize,
        timeout: Duration,
    ) -> usize {
        let key = (namespace.to_owned(), sequence);
        let mut rx = {
            let mut inner = lock(&self.inner);
            let e = inner.entries.entry(key.clone()).or_default();
            let (tx, rx) = watch::channel(e.acked_by.len());
            e.waiter = Some(tx);
            rx
        };
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n >= required)).await;
        let n = *rx.borrow();
        lock(&self.inner).entries.remove(&key);
        n.min(required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_distinct_consumers_including_acks_before_the_wait() {
        let c = Confirmations::default();
        {
            let interest = c.interest("user");
            c.acked("user", 7, "a");
            c.acked("user", 7, "a");
            c.acked("other", 7, "b");
            let wait = c.wait(&interest, "user", 7, 2, Duration::from_secs(5));
            tokio::pin!(wait);
            tokio::select! {
                _ = &mut wait => panic!("confirmed by one consumer"),
                _ = tokio::task::yield_now() => {}
            }
            c.acked("user", 7, "b");
            assert_eq!(wait.await, 2);
        }
        assert!(lock(&c.inner).entries.is_empty());
        assert!(lock(&c.inner).interest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_count_reached() {
        let c = Confirmations::default();
        let interest = c.interest("user");
        c.acked("user", 1, "a");
        assert_eq!(
            c.wait(&interest, "user", 1, 3, Duration::from_millis(50))
                .await,
            1
        );
    }

    #[test]
    fn acks_without_interest_are_not_recorded() {
        let c = Confirmations::default();
        c.acked("user", 1, "a");
        assert!(lock(&c.inner).entries.is_empty());
    }
}
