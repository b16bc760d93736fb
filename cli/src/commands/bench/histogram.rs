//! [`Latency`]: a latency histogram (HdrHistogram, 3 significant digits, 1 ns to 1 h) and
//! its summary in microseconds. Each load task records into its own and the results are
//! merged, so recording takes no lock.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The largest latency recorded as itself, in nanoseconds (1 h); longer ones are recorded
/// as this.
const MAX_NS: u64 = 3_600_000_000_000;

/// Latencies of one kind of operation.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // The bounds are constants that `new_with_bounds` accepts (low >= 1, high >= 2 low,
        // sigfig <= 5), so this cannot fail.
        let histogram = Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid bounds");
        Latency { histogram }
    }

    /// Records one latency (at least 1 ns, at most [`MAX_NS`]).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(MAX_NS)
            .clamp(1, MAX_NS);
        self.histogram.saturating_record(ns);
    }

    /// Adds `other`'s records to these.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The percentile `q` (0 to 100) in microseconds.
    pub fn percentile_us(&self, q: f64) -> f64 {
        us(self.histogram.value_at_percentile(q))
    }

    /// `{"p50","p90","p99","p99_9","max","mean"}` in microseconds, one decimal; `null` when
    /// nothing was recorded.
    pub fn summary(&self) -> Value {
        if self.histogram.is_empty() {
            return Value::Null;
        }
        json!({
            "p50": round1(self.percentile_us(50.0)),
            "p90": round1(self.percentile_us(90.0)),
            "p99": round1(self.percentile_us(99.0)),
            "p99_9": round1(self.percentile_us(99.9)),
            "max": round1(us(self.histogram.max())),
            "mean": round1(self.histogram.mean() / 1000.0),
        })
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// `x` rounded to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_and_in_microseconds() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for i in 1..=1000u64 {
            a.record(Duration::from_micros(i));
        }
        b.record(Duration::from_secs(7200));
        a.merge(&b);
        assert_eq!(a.count(), 1001);
        let s = a.summary();
        let p = |k: &str| s[k].as_f64().unwrap();
        // The median of 1..=1000 µs and one 2 h outlier is the 501st value, 501 µs, within
        // the histogram's 3 significant digits.
        assert!((p("p50") - 501.0).abs() < 1.0, "{s}");
        assert!(p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p99_9"));
        assert!(p("p99_9") <= p("max"));
        // Past the bound it is recorded as the bound (1 h).
        assert!((p("max") - 3.6e9).abs() / 3.6e9 < 0.001, "{s}");
        assert_eq!(Latency::new().summary(), Value::Null);
    }
}
