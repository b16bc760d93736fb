//! End-to-end tests of `bus bench` (the built binary): each mode against `--embedded` with
//! tiny counts, its `--json` report parsed and checked — the counts equal what was sent, the
//! percentiles are ordered, the fsync policy, cores and version are reported — `--csv` as a
//! header and one row, a run against a broker at `--url`, and the clear errors of bad flags.
//!
//! Nothing sleeps: every run is bounded by the harness's timeout and the bench's own
//! `--max-time`; the embedded broker listens on a port the system picks.

mod common;

use common::{TestBroker, bus, ok, run, stderr, stdout};
use serde_json::Value;

/// `bus bench <args> --json`, which must succeed: its report.
fn bench(args: &[&str]) -> Value {
    let o = ok(run(bus().arg("bench").args(args).args([
        "--json",
        "--max-time",
        "15s",
    ])));
    let out = stdout(&o);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Asserts that `v` holds ordered percentiles.
fn ordered(v: &Value) {
    let p = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(p("p50") > 0.0, "{v}");
    assert!(p("p50") <= p("p90"), "{v}");
    assert!(p("p90") <= p("p99"), "{v}");
    assert!(p("p99") <= p("p99_9"), "{v}");
    assert!(p("p99_9") <= p("max"), "{v}");
}

/// Asserts that the send lags `lag` are ordered percentiles, each at most the same percentile
/// of the latencies `latency`: each request's lag is a part of its latency.
fn within(lag: &Value, latency: &Value) {
    let p = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    let keys = ["p50", "p90", "p99", "p99_9", "max"];
    for pair in keys.windows(2) {
        assert!(p(lag, pair[0]) <= p(lag, pair[1]), "{lag}");
    }
    for k in keys {
        assert!(
            p(lag, k) <= p(latency, k),
            "{k}: lag {lag}, latency {latency}"
        );
    }
}

/// Asserts the machine and the versions are reported, with fsync `policy`.
fn described(r: &Value, mode: &str, policy: &str) {
    assert_eq!(r["mode"], mode, "{r}");
    assert_eq!(r["fsync"], policy, "{r}");
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"), "{r}");
    assert_eq!(r["broker_version"], env!("CARGO_PKG_VERSION"), "{r}");
    assert!(r["cores"].as_u64().is_some_and(|n| n >= 1), "{r}");
}

#[test]
fn pub_single_counts_every_event_and_reports_the_policy() {
    let r = bench(&[
        "pub",
        "--embedded",
        "--fsync",
        "never",
        "-c",
        "2",
        "-n",
        "50",
    ]);
    described(&r, "pub", "never");
    assert_eq!(r["target"], "embedded");
    let res = &r["results"];
    assert_eq!(
        (res["events"].as_u64(), res["requests"].as_u64()),
        (Some(50), Some(50)),
        "{r}"
    );
    assert!(res["events_per_s"].as_u64().is_some_and(|n| n > 0), "{r}");
    ordered(&res["latency_us"]);
    assert_eq!(r["params"]["loop"], "closed");
    // A closed loop sends each request when it is ready: it has no send lag.
    assert!(res.get("send_lag_us").is_none(), "{r}");
}

#[test]
fn pub_batches_with_a_baseline_report_a_ratio() {
    let r = bench(&[
        "pub",
        "--embedded",
        "-c",
        "2",
        "-n",
        "95",
        "-b",
        "10",
        "--baseline",
    ]);
    described(&r, "pub", "always");
    let res = &r["results"];
    // 9 full batches and one of 5.
    assert_eq!(
        (res["events"].as_u64(), res["requests"].as_u64()),
        (Some(95), Some(10)),
        "{r}"
    );
    assert!(
        res["baseline_events_per_s"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    assert!(
        res["ratio_to_baseline"].as_f64().is_some_and(|x| x > 0.0),
        "{r}"
    );
    ordered(&res["baseline_latency_us"]);
}

#[test]
fn pub_with_the_log_alone_makes_the_same_appends_and_times_the_disk() {
    let r = bench(&[
        "pub",
        "--embedded",
        "--fsync",
        "always",
        "-c",
        "3",
        "-n",
        "95",
        "-b",
        "10",
        "--log-alone",
    ]);
    let res = &r["results"];
    assert_eq!(res["events"].as_u64(), Some(95), "{r}");
    // The same appends: 9 batches of 10 and one of 5.
    assert_eq!(res["log_alone_events"].as_u64(), Some(95), "{r}");
    for k in ["log_alone_events_per_s", "disk_fdatasync_per_s"] {
        assert!(res[k].as_u64().is_some_and(|n| n > 0), "{k}: {r}");
    }
    // Under `always` every acknowledged append was synced: at least one event per sync.
    assert!(
        res["log_alone_events_per_fdatasync"]
            .as_f64()
            .is_some_and(|x| x >= 1.0),
        "{r}"
    );
    assert!(
        res["ratio_to_log_alone"].as_f64().is_some_and(|x| x > 0.0),
        "{r}"
    );
    // The broker's own group size, from its /metrics: every event synced, none twice.
    assert!(
        res["events_per_fdatasync"]
            .as_f64()
            .is_some_and(|x| (1.0..=95.0).contains(&x)),
        "{r}"
    );
}

#[test]
fn pub_open_loop_sends_at_its_rate() {
    let r = bench(&[
        "pub",
        "--embedded",
        "--fsync",
        "never",
        "-n",
        "40",
        "--rate",
        "4000",
        "--baseline",
    ]);
    assert_eq!(r["params"]["loop"], "open");
    let res = &r["results"];
    assert_eq!(res["events"], 40);
    // 40 events due over 10 ms at least.
    assert!(res["elapsed_s"].as_f64().is_some_and(|s| s >= 0.009), "{r}");
    ordered(&res["latency_us"]);
    within(&res["send_lag_us"], &res["latency_us"]);
    ordered(&res["baseline_latency_us"]);
    within(&res["baseline_send_lag_us"], &res["baseline_latency_us"]);
}

#[test]
fn a_rate_too_small_to_schedule_ends_with_an_error_not_a_panic() {
    // At 1e-300 events/s the second request is due later than any time there is.
    let o = run(bus().args([
        "bench",
        "pub",
        "--embedded",
        "--fsync",
        "never",
        "-n",
        "3",
        "--rate",
        "1e-300",
    ]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("after 1 of 3 requests"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn csv_is_a_header_and_one_row() {
    let o = ok(run(bus().args([
        "bench",
        "pub",
        "--embedded",
        "--fsync",
        "never",
        "-n",
        "10",
        "--csv",
    ])));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(header.len(), row.len(), "{out}");
    let col = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
    assert_eq!(
        (col("mode"), col("fsync"), col("events")),
        ("pub", "never", "10")
    );
    assert!(header.contains(&"latency_us_p99_9"), "{out}");
}

#[test]
fn sub_dense_delivers_every_event_to_every_subscriber() {
    let r = bench(&[
        "sub",
        "--embedded",
        "--fsync",
        "never",
        "-m",
        "3",
        "-c",
        "2",
        "-n",
        "30",
    ]);
    described(&r, "sub", "never");
    let res = &r["results"];
    assert_eq!(
        (res["events"].as_u64(), res["deliveries"].as_u64()),
        (Some(30), Some(90)),
        "{r}"
    );
    ordered(&res["publish_to_receive_us"]);
    ordered(&res["publish_latency_us"]);
    assert!(
        res["per_subscriber_per_s"]["min"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{r}"
    );
}

#[test]
fn sub_sparse_delivers_each_event_once() {
    let r = bench(&[
        "sub",
        "--embedded",
        "--fsync",
        "never",
        "-m",
        "3",
        "-n",
        "31",
        "--layout",
        "sparse",
    ]);
    let res = &r["results"];
    assert_eq!(
        (res["events"].as_u64(), res["deliveries"].as_u64()),
        (Some(31), Some(31)),
        "{r}"
    );
    assert_eq!(r["params"]["layout"], "sparse");
    ordered(&res["publish_to_receive_us"]);
}

#[test]
fn sub_from_oldest_catches_up_on_what_was_published() {
    let r = bench(&[
        "sub",
        "--embedded",
        "--fsync",
        "never",
        "-m",
        "2",
        "-n",
        "1500",
        "--from",
        "oldest",
    ]);
    let res = &r["results"];
    assert_eq!(
        (res["events"].as_u64(), res["deliveries"].as_u64()),
        (Some(1500), Some(3000)),
        "{r}"
    );
    assert!(
        res["deliveries_per_s"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
}

#[test]
fn ack_drains_the_namespace_with_one_consumer_or_a_group() {
    let r = bench(&["ack", "--embedded", "-n", "50"]);
    described(&r, "ack", "always");
    let res = &r["results"];
    assert_eq!(
        (res["consumed"].as_u64(), res["pending_after"].as_u64()),
        (Some(50), Some(0)),
        "{r}"
    );
    assert_eq!(r["params"]["kind"], "durable");
    let r = bench(&[
        "ack",
        "--embedded",
        "--fsync",
        "never",
        "-n",
        "1200",
        "--group",
        "3",
    ]);
    let res = &r["results"];
    assert_eq!(
        (res["consumed"].as_u64(), res["pending_after"].as_u64()),
        (Some(1200), Some(0)),
        "{r}"
    );
    assert_eq!(
        (
            r["params"]["kind"].as_str(),
            r["params"]["members"].as_u64()
        ),
        (Some("group"), Some(3))
    );
}

#[test]
fn req_answers_every_request() {
    let r = bench(&[
        "req",
        "--embedded",
        "--fsync",
        "never",
        "-c",
        "2",
        "-r",
        "2",
        "-n",
        "20",
    ]);
    described(&r, "req", "never");
    assert_eq!(r["results"]["requests"], 20, "{r}");
    ordered(&r["results"]["round_trip_us"]);
}

#[test]
fn drives_a_running_broker_at_url() {
    let b = TestBroker::start();
    let o = ok(run(
        &mut b.bus(&["bench", "pub", "-n", "20", "-c", "2", "--json"])
    ));
    let r: Value = serde_json::from_str(stdout(&o).trim()).expect("JSON");
    described(&r, "pub", "always");
    assert_eq!(r["target"], b.url());
    assert_eq!(r["results"]["events"], 20);
}

#[test]
fn bad_flags_are_refused_clearly() {
    for (args, want) in [
        (&["pub", "--fsync", "never"][..], "--embedded"),
        (
            &["pub", "--embedded", "--csv", "--json"],
            "--csv and --json",
        ),
        (
            &["pub", "--embedded", "-c", "0"],
            "--connections must be between 1 and 10000",
        ),
        (
            &["pub", "--embedded", "-b", "20000"],
            "--batch must be between 1 and 10000",
        ),
        (
            &["pub", "--embedded", "--rate", "0"],
            "--rate must be a positive",
        ),
        (
            &["pub", "--embedded", "-n", "5", "-d", "1s"],
            "cannot be used with",
        ),
        (
            &["pub", "--embedded", "--fsync", "sometimes"],
            "invalid fsync policy",
        ),
        (&["sub", "--embedded", "-s", "8"], "at least 16 bytes"),
        (
            &["sub", "--embedded", "--from", "oldest", "-d", "1s"],
            "--from oldest",
        ),
        (
            &["ack", "--embedded", "--group", "0"],
            "--group must be between",
        ),
        (&["pub", "--url", "https://127.0.0.1:1"], "plain http://"),
        (&["pub", "--log-alone"], "needs --embedded"),
        (
            &["pub", "--embedded", "--namespace", "_bus_"],
            "invalid --namespace",
        ),
    ] {
        let o = run(bus().arg("bench").args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}
