//! Counters and histograms for `GET /metrics`, rendered in the Prometheus text format.
//!
//! Per-namespace counters live in a map that grows with the number of namespaces (bounded by
//! the namespaces that exist); the storage engine's own figures (fsyncs, write groups,
//! corrupt reads) are read from its stats when rendering.
//!
//! **Label bound.** Each per-namespace family shows at most [`MAX_NAMESPACE_LABELS`]
//! namespaces by name (in name order); the figures of the others are summed into one series
//! labelled `namespace="*"` (`*` is never a namespace name), so a scrape stays small with
//! 10,000 namespaces.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::live::{LiveCounters, LiveFigures};
use crate::process_stats::ProcessStats;
use crate::storage::LogStats;

/// Namespaces shown by name in each per-namespace family; the rest are summed under
/// `namespace="*"`.
pub const MAX_NAMESPACE_LABELS: usize = 1_000;

/// Writes one per-namespace family's series: the first [`MAX_NAMESPACE_LABELS`] by name, the
/// rest summed under `namespace="*"`.
fn write_capped<'a>(out: &mut String, name: &str, series: impl Iterator<Item = (&'a str, f64)>) {
    let mut rest: Option<f64> = None;
    for (i, (ns, v)) in series.enumerate() {
        if i < MAX_NAMESPACE_LABELS {
            let _ = writeln!(out, "{name}{{namespace=\"{ns}\"}} {v}");
        } else {
            *rest.get_or_insert(0.0) += v;
        }
    }
    if let Some(v) = rest {
        let _ = writeln!(out, "{name}{{namespace=\"*\"}} {v}");
    }
}

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Counters of one namespace.
#[derive(Debug, Default)]
pub struct NamespaceCounters {
    /// Events published (duplicates not counted).
    pub published: AtomicU64,
    /// Payload bytes published.
    pub published_bytes: AtomicU64,
    /// Events delivered to subscribers (each delivery counts).
    pub delivered: AtomicU64,
    /// Payload bytes delivered.
    pub delivered_bytes: AtomicU64,
}

/// The broker's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    namespaces: RwLock<BTreeMap<String, Arc<NamespaceCounters>>>,
    /// Time from receiving a publish to answering it durable.
    pub publish_latency: Histogram,
    /// Acknowledgements answered `acked` (durable).
    pub acked: AtomicU64,
    /// Nacks (now or delayed).
    pub nacked: AtomicU64,
    /// Redeliveries (ack wait ran out, nack, holder left, restart).
    pub redelivered: AtomicU64,
    /// Dead letters published.
    pub dead_lettered: AtomicU64,
    /// Requests answered by a reply.
    pub requests_replied: AtomicU64,
    /// Requests answered by an error reply.
    pub requests_failed: AtomicU64,
    /// Requests refused because nothing subscribed to their subject.
    pub requests_no_responders: AtomicU64,
    /// Requests that got no reply within their timeout.
    pub requests_timed_out: AtomicU64,
    /// Stored requests whose caller hung up before a reply or the timeout.
    pub requests_abandoned: AtomicU64,
    /// Replies dropped: late, a second answer, or to an inbox that never was.
    pub replies_dropped: AtomicU64,
    /// The live path's counters.
    pub live: Arc<LiveCounters>,
}

impl Metrics {
    /// The counters of `namespace`, created on first use.
    pub fn namespace(&self, namespace: &str) -> Arc<NamespaceCounters> {
        if let Some(c) = self
            .namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
        {
            return c.clone();
        }
        let mut w = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        w.entry(namespace.to_owned()).or_default().clone()
    }

    /// The Prometheus text: these metrics, the storage figures of each namespace, and the
    /// number of live subscriptions.
    pub fn render(
        &self,
        stats: &[(String, LogStats)],
        subscriptions: usize,
        live: &LiveFigures,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let counters: Vec<(String, Arc<NamespaceCounters>)> = self
            .namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        type Get = fn(&NamespaceCounters) -> &AtomicU64;
        let families: [(&str, &str, Get); 4] = [
            ("bus_events_published_total", "Events published.", |c| {
                &c.published
            }),
            (
                "bus_bytes_published_total",
                "Payload bytes published.",
                |c| &c.published_bytes,
            ),
            (
                "bus_events_delivered_total",
                "Events delivered to subscribers.",
                |c| &c.delivered,
            ),
            (
                "bus_bytes_delivered_total",
                "Payload bytes delivered to subscribers.",
                |c| &c.delivered_bytes,
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            write_capped(
                &mut out,
                name,
                counters
                    .iter()
                    .map(|(ns, c)| (ns.as_str(), get(c).load(Ordering::Relaxed) as f64)),
            );
        }
        type Stat = fn(&LogStats) -> f64;
        let storage: [(&str, &str, &str, Stat); 9] = [
            ("bus_namespace_events", "gauge", "Events held.", |s| {
                s.events as f64
            }),
            ("bus_namespace_bytes", "gauge", "Bytes on disk.", |s| {
                s.bytes as f64
            }),
            ("bus_fsync_total", "counter", "fdatasync calls.", |s| {
                s.syncs as f64
            }),
            (
                "bus_fsync_seconds_total",
                "counter",
                "Time in fdatasync.",
                |s| s.sync_ns as f64 / 1e9,
            ),
            (
                "bus_write_groups_total",
                "counter",
                "Group-committed writes.",
                |s| s.groups as f64,
            ),
            (
                "bus_events_appended_total",
                "counter",
                "Events appended since start (appended / groups = group size).",
                |s| s.appended as f64,
            ),
            (
                "bus_corrupt_reads_total",
                "counter",
                "Damaged records reported to readers.",
                |s| s.corrupt_reads as f64,
            ),
            (
                "bus_namespace_read_only",
                "gauge",
                "1 while the namespace refuses appends after a storage failure (it probes and heals by itself).",
                |s| f64::from(u8::from(s.read_only.is_some())),
            ),
            (
                "bus_namespace_heals_total",
                "counter",
                "Times the namespace became writable again after a storage failure.",
                |s| s.heals as f64,
            ),
        ];
        let mut sorted: Vec<&(String, LogStats)> = stats.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind, help, get) in storage {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            write_capped(
                &mut out,
                name,
                sorted.iter().map(|(ns, s)| (ns.as_str(), get(s))),
            );
        }
        let _ = writeln!(
            out,
            "# HELP bus_subscriptions Live subscriptions.\n# TYPE bus_subscriptions gauge\nbus_subscriptions {subscriptions}"
        );
        self.render_live(&mut out, live);
        for (name, help, v) in [
            (
                "bus_acks_total",
                "Deliveries acknowledged (durably).",
                &self.acked,
            ),
            ("bus_nacks_total", "Deliveries nacked.", &self.nacked),
            (
                "bus_redeliveries_total",
                "Events delivered again to a consumer.",
                &self.redelivered,
            ),
            (
                "bus_dead_letters_total",
                "Events published to a dead-letter subject.",
                &self.dead_lettered,
            ),
        ] {
            counter(&mut out, name, help, v.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP bus_requests_total Requests by outcome.\n# TYPE bus_requests_total counter"
        );
        for (outcome, v) in [
            ("replied", &self.requests_replied),
            ("error", &self.requests_failed),
            ("no_responders", &self.requests_no_responders),
            ("timeout", &self.requests_timed_out),
            ("abandoned", &self.requests_abandoned),
        ] {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(out, "bus_requests_total{{outcome=\"{outcome}\"}} {v}");
        }
        let v = self.replies_dropped.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP bus_replies_dropped_total Replies no request waited for (late, repeated, unknown).\n# TYPE bus_replies_dropped_total counter\nbus_replies_dropped_total {v}"
        );
        self.publish_latency.render(
            &mut out,
            "bus_publish_duration_seconds",
            "Publish until durable.",
        );
        if let Some(p) = ProcessStats::read() {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total User and system CPU time of the broker process.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
                p.cpu_seconds
            );
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory of the broker process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
                p.resident_bytes
            );
        }
        out
    }

    /// The live path: subscriptions by state, routing and fall-backs, the trie's size.
    fn render_live(&self, out: &mut String, live: &LiveFigures) {
        let c = &self.live;
        let _ = writeln!(
            out,
            "# HELP bus_subscription_readers Open subscriptions (streams, consumers' readers, waiting pulls) by state: live (new events routed to them) or catching_up (reading a log).\n# TYPE bus_subscription_readers gauge"
        );
        for (state, v) in [("live", &c.live), ("catching_up", &c.catching_up)] {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(out, "bus_subscription_readers{{state=\"{state}\"}} {v}");
        }
        for (name, help, v) in [
            (
                "bus_live_routed_total",
                "Events the routers handed to live subscriptions.",
                &c.routed,
            ),
            (
                "bus_live_joins_total",
                "Times a subscription caught up and joined the live path in a namespace.",
                &c.joined,
            ),
            (
                "bus_live_fallbacks_total",
                "Times a live subscription went back to reading the log (its queue was full).",
                &c.fell_back,
            ),
        ] {
            counter(out, name, help, v.load(Ordering::Relaxed));
        }
        for (name, help, v) in [
            (
                "bus_trie_subscriptions",
                "Subscriptions in the subject trie.",
                live.slots,
            ),
            (
                "bus_trie_nodes",
                "Nodes of the subject trie.",
                live.trie_nodes,
            ),
            (
                "bus_live_routers",
                "Namespaces whose new events are being routed.",
                live.routers,
            ),
        ] {
            gauge(out, name, help, v);
        }
    }
}

/// What recovery found at open: namespaces set aside as damaged (now, including damage
/// readers found since), and the torn tails cut (namespaces and the state log).
pub fn render_recovery(out: &mut String, damaged: usize, recovery: &crate::storage::Recovery) {
    gauge(
        out,
        "bus_namespaces_damaged",
        "Namespaces set aside because their log is damaged (every request for them answers 503 namespace_damaged until bus inspect --repair).",
        damaged,
    );
    counter(
        out,
        "bus_recovery_tail_cuts_total",
        "Torn last records cut by recovery at open (namespaces and the state log); the bytes are kept in the directory's quarantine/.",
        recovery.tail_cuts,
    );
    counter(
        out,
        "bus_recovery_tail_cut_bytes_total",
        "Bytes recovery cut as torn tails at open.",
        recovery.tail_cut_bytes,
    );
}

/// `bus_info{version="…",fsync="…"} 1`: what is running, so that a figure read from
/// `/metrics` (by `bus bench`, or a dashboard) can say under which version and default fsync
/// policy it was measured. `fsync` is the policy of every namespace without an override.
pub fn render_info(out: &mut String, version: &str, fsync: &crate::storage::FsyncPolicy) {
    let _ = writeln!(
        out,
        "# HELP bus_info The broker's version and default fsync policy.\n# TYPE bus_info gauge\nbus_info{{version=\"{version}\",fsync=\"{fsync}\"}} 1"
    );
}

/// One unlabelled counter: its help, type and value.
fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// One unlabelled gauge: its help, type and value.
fn gauge(out: &mut String, name: &str, help: &str, v: usize) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(events: u64) -> LogStats {
        LogStats {
            events,
            bytes: 0,
            first_seq: 1,
            last_seq: events,
            last_time_ns: 0,
            segments: 1,
            read_only: None,
            damaged: None,
            appended: events,
            groups: 0,
            syncs: 0,
            sync_ns: 0,
            corrupt_reads: 0,
            heals: 0,
        }
    }

    #[test]
    fn namespaces_past_the_label_cap_are_summed_under_a_star() {
        let extra = 5;
        let all: Vec<(String, LogStats)> = (0..MAX_NAMESPACE_LABELS + extra)
            .rev()
            .map(|i| (format!("ns{i:05}"), stats(2)))
            .collect();
        let m = Metrics::default();
        for (ns, _) in &all {
            m.namespace(ns).published.fetch_add(1, Ordering::Relaxed);
        }
        let text = m.render(&all, 0, &LiveFigures::default());
        for family in ["bus_namespace_events", "bus_events_published_total"] {
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .collect();
            assert_eq!(lines.len(), MAX_NAMESPACE_LABELS + 1, "{family}");
            // By name: the first shown is the smallest name, the last line sums the rest.
            assert!(lines[0].contains("namespace=\"ns00000\""), "{}", lines[0]);
            let per = if family == "bus_namespace_events" {
                2
            } else {
                1
            };
            assert_eq!(
                lines[MAX_NAMESPACE_LABELS],
                format!("{family}{{namespace=\"*\"}} {}", per * extra)
            );
        }
    }
}
