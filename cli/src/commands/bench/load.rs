//! [`drive`]: the load loop shared by every mode that publishes, against the broker and the
//! baseline alike.
//!
//! Flow: open every connection first (connecting is not measured), then each connection
//! claims request numbers 0, 1, 2, ... from one counter and sends them one at a time.
//! Closed loop: a connection sends its next request once the last is answered, and a
//! latency runs from sending to the answer. Open loop (`rate`): request `j` is due at
//! `start + j / rate`; a connection waits until the [`Pacer`] releases it, and its latency
//! runs from when it was due, so time spent waiting for a free connection counts (no
//! coordinated omission). The part of it before the request was sent, its send lag, is
//! reported apart: waiting for a free connection, and the bench's own wake (the pacer's
//! timer, then the connection's task). A send lag close to the latency says the bench (or
//! too few connections), not the server, set the latency.
//!
//! Invariant: the requests answered are exactly numbers `0..requests` of the outcome (a
//! number is claimed only when it will be sent), which the subscriber bench relies on to
//! know what each subject received.
//!
//! Bound: `plan.requests` requests, and time: `plan.duration` ends the run normally,
//! `plan.deadline` (`--max-time`) with an error; each request within
//! [`REQUEST_TIMEOUT`](super::connection::REQUEST_TIMEOUT). The first failure (a refused
//! connection, an error status) stops every connection and is the bench's error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::{Call, Connection, Endpoint, excerpt};
use super::histogram::Latency;
use super::pacer::{Pacer, Schedule};
use super::progress::Progress;
use crate::error::CliError;

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Connections, each with one request at a time.
    pub connections: usize,
    /// Requests at most.
    pub requests: u64,
    /// Stop sending after this long (a normal end).
    pub duration: Option<Duration>,
    /// Open loop at this many requests per second in all; `None`: closed loop.
    pub rate: Option<f64>,
    /// Past this the run fails (`--max-time`).
    pub deadline: Instant,
}

/// Request number `j`: the call, and the events and payload bytes it carries.
pub type MakeCall = Arc<dyn Fn(u64) -> (Call, u64, u64) + Send + Sync>;

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Requests answered with success: numbers `0..requests`.
    pub requests: u64,
    /// Events they carried.
    pub events: u64,
    /// Payload bytes they carried.
    pub payload_bytes: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Each request's latency.
    pub latency: Latency,
    /// Open loop: each request's send lag, from when it was due to when it was sent;
    /// `None` in a closed loop.
    pub send_lag: Option<Latency>,
}

impl Outcome {
    /// Events per second.
    pub fn events_per_s(&self) -> f64 {
        per_s(self.events, self.elapsed)
    }
}

/// `n` per second over `d`.
pub fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// What one connection did.
struct Share {
    requests: u64,
    events: u64,
    payload_bytes: u64,
    latency: Latency,
    /// Open loop only, as in [`Outcome::send_lag`].
    send_lag: Option<Latency>,
}

/// Runs `plan` against `endpoint`, request `j` being `make(j)`.
pub async fn drive(
    endpoint: &Endpoint,
    plan: &Plan,
    make: MakeCall,
    progress: &Progress,
) -> Result<Outcome, CliError> {
    let mut opening = JoinSet::new();
    for _ in 0..plan.connections {
        let endpoint = endpoint.clone();
        opening.spawn(async move { Connection::open(&endpoint).await });
    }
    let mut connections = Vec::with_capacity(plan.connections);
    while let Some(c) = opening.join_next().await {
        connections.push(c.map_err(|e| CliError::with_cause("a connection task failed", e))??);
    }
    let start = Instant::now();
    let stop = match plan.duration {
        Some(d) => (start + d).min(plan.deadline),
        None => plan.deadline,
    };
    let pacer = match plan.rate {
        Some(rate) => {
            let schedule = Schedule {
                start: start.into_std(),
                interval: 1.0 / rate,
                stop: stop.into_std(),
                requests: plan.requests,
            };
            Some(Arc::new(Pacer::start(schedule, plan.connections)?))
        }
        None => None,
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for conn in connections {
        tasks.spawn(one_connection(
            conn,
            plan.clone(),
            stop,
            pacer.clone(),
            next.clone(),
            make.clone(),
            progress.clone(),
        ));
    }
    let mut outcome = Outcome {
        requests: 0,
        events: 0,
        payload_bytes: 0,
        elapsed: Duration::ZERO,
        latency: Latency::new(),
        send_lag: pacer.as_ref().map(|_| Latency::new()),
    };
    while let Some(share) = tasks.join_next().await {
        // On an error, dropping `tasks` aborts the other connections.
        let share = share.map_err(|e| CliError::with_cause("a load task failed", e))??;
        outcome.requests += share.requests;
        outcome.events += share.events;
        outcome.payload_bytes += share.payload_bytes;
        outcome.latency.merge(&share.latency);
        if let (Some(lag), Some(part)) = (outcome.send_lag.as_mut(), &share.send_lag) {
            lag.merge(part);
        }
    }
    outcome.elapsed = start.elapsed();
    if plan.duration.is_none() && outcome.requests < plan.requests {
        return Err(CliError::msg(format!(
            "stopped at --max-time after {} of {} requests",
            outcome.requests, plan.requests
        )));
    }
    Ok(outcome)
}

async fn one_connection(
    mut conn: Connection,
    plan: Plan,
    stop: Instant,
    pacer: Option<Arc<Pacer>>,
    next: Arc<AtomicU64>,
    make: MakeCall,
    progress: Progress,
) -> Result<Share, CliError> {
    let mut share = Share {
        requests: 0,
        events: 0,
        payload_bytes: 0,
        latency: Latency::new(),
        send_lag: pacer.as_ref().map(|_| Latency::new()),
    };
    loop {
        match &pacer {
            Some(p) => p.wait().await,
            None if Instant::now() >= stop => break,
            None => {}
        }
        let j = next.fetch_add(1, Ordering::Relaxed);
        if j >= plan.requests {
            break;
        }
        let due = match pacer.as_ref().map(|p| p.schedule().due(j)) {
            Some(Some(due)) => Instant::from_std(due),
            // Due at `stop` or later: every later number is too, and none of them is sent.
            Some(None) => break,
            None => Instant::now(),
        };
        let (call, events, bytes) = make(j);
        let path = call.path.clone();
        if let Some(lag) = share.send_lag.as_mut() {
            lag.record(due.elapsed());
        }
        let (status, body) = conn.send(call).await?;
        share.latency.record(due.elapsed());
        if !status.is_success() {
            return Err(CliError::msg(format!(
                "{path} was answered {status}: {}",
                excerpt(&body)
            )));
        }
        share.requests += 1;
        share.events += events;
        share.payload_bytes += bytes;
        progress.inc(events);
    }
    Ok(share)
}
