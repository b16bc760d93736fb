//! Work shared by a queue group, at least once: two small services publish `user.created`
//! and `user.deleted` through `bus-client`, and two workers of the queue group
//! `user-workers` process them with manual acks. Worker A stops mid-way, holding a
//! delivery it never acked; the broker hands that delivery to worker B at once (delivery
//! count 2), and B finishes the rest. The last line checks that every published event was
//! acked: nothing lost.
//!
//! Run it with the broker of the README's first command running
//! (`cargo run --release -p bus-cli -- server`):
//!
//! ```sh
//! cargo run -p bus-example-user-events
//! BUS_URL=http://127.0.0.1:4222 cargo run -p bus-example-user-events   # another broker
//! ```
//!
//! The group lives in the broker's memory only while a member is attached, so each run
//! starts afresh; it follows from the newest event, so events already stored are left alone.

use std::collections::BTreeSet;
use std::time::Duration;

use bus_client::{AckMode, Client, Message, Start, StreamItem, SubscribeOptions, Subscription};
use futures::StreamExt as _;

/// The queue group both workers join.
const GROUP: &str = "user-workers";
/// What the workers follow.
const PATTERN: &str = "user.*";
/// Deliveries worker A takes before it stops: it acks all but the last.
const A_TAKES: u64 = 3;
/// The bound on every wait for a delivery: past it the run fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("BUS_URL").unwrap_or_else(|_| "http://127.0.0.1:2021".into());
    let report = run(&url).await?;
    for line in &report.lines {
        println!("{line}");
    }
    Ok(())
}

/// What a run did: the lines it printed, and the figures its test checks.
#[derive(Debug, Default)]
struct Report {
    /// One line per step, as printed.
    lines: Vec<String>,
    /// Ids of the events the two services published.
    published: BTreeSet<String>,
    /// Ids worker A acked.
    acked_by_a: BTreeSet<String>,
    /// The id worker A held, unacked, when it stopped.
    held_by_a: Option<String>,
    /// Ids worker B acked, with the delivery count each had.
    acked_by_b: Vec<(String, u32)>,
}

/// Runs the whole scenario against the broker at `url`.
async fn run(url: &str) -> Result<Report, BoxError> {
    let mut report = Report::default();
    let client = Client::connect(url).await?;

    // Worker A joins first, creating the group. `limit` makes it take three deliveries at
    // most, so that some work is left for B whatever the timing.
    let mut a = client
        .subscribe_with(PATTERN, worker_options().limit(A_TAKES))
        .await?;

    // Two services, each with its own client, publish at the same time.
    let signups = service(
        url,
        "user.created",
        &["ada", "grace", "linus", "barbara", "ken"],
    );
    let cleanups = service(url, "user.deleted", &["mallory", "trudy", "eve"]);
    let (signups, cleanups) = tokio::try_join!(signups, cleanups)?;
    for (subject, name, id) in signups.iter().chain(&cleanups) {
        report
            .lines
            .push(format!("published {subject} {name} as {id}"));
        report.published.insert(id.clone());
    }

    // A works through two deliveries and acks each (waiting for the broker's answer).
    let mut held = Vec::new();
    while (held.len() as u64) < A_TAKES {
        held.push(next_event(&mut a).await?);
    }
    let last = held.pop().ok_or("worker A took nothing")?;
    for m in &held {
        m.double_ack().await?;
        report
            .lines
            .push(format!("worker A: {} {} acked", m.subject, text(m)));
        report.acked_by_a.insert(m.id.clone());
    }

    // B joins before A leaves, so the group (which lives while it has a member) lives on.
    let mut b = client.subscribe_with(PATTERN, worker_options()).await?;

    // A stops mid-way: it had taken one more delivery and leaves without acking it.
    report.lines.push(format!(
        "worker A: stops while holding {} {} ({})",
        last.subject,
        text(&last),
        last.id
    ));
    report.held_by_a = Some(last.id.clone());
    drop(last);
    drop(a);

    // B finishes the rest: everything not acked by A, the delivery A held included.
    let mut done: BTreeSet<String> = report.acked_by_a.clone();
    while !report.published.is_subset(&done) {
        let m = next_event(&mut b).await?;
        let count = m.delivery_count.unwrap_or(1);
        m.ack().await?;
        let again = if count > 1 {
            format!(" (delivery {count}: worker A's)")
        } else {
            String::new()
        };
        report
            .lines
            .push(format!("worker B: {} {} acked{again}", m.subject, text(&m)));
        report.acked_by_b.push((m.id.clone(), count));
        done.insert(m.id.clone());
    }
    // Every ack queued by B reaches the broker before the program ends.
    b.close().await?;

    let lost = report.published.difference(&done).count();
    report.lines.push(format!(
        "done: {} published, {} acked by A, {} by B, {lost} lost",
        report.published.len(),
        report.acked_by_a.len(),
        report.acked_by_b.len()
    ));
    Ok(report)
}

/// The settings both workers attach with: they must agree, or the broker answers
/// `409 consumer_conflict`.
fn worker_options() -> SubscribeOptions {
    SubscribeOptions::new()
        .group(GROUP)
        .ack(AckMode::Manual)
        .from(Start::Newest)
}

/// A service: connects on its own and publishes one event per name on `subject`,
/// returning `(subject, name, id)` for each.
async fn service(
    url: &str,
    subject: &'static str,
    names: &[&str],
) -> Result<Vec<(String, String, String)>, BoxError> {
    let client = Client::connect(url).await?;
    let mut out = Vec::new();
    for name in names {
        let receipt = client
            .publish(subject, format!(r#"{{"name":"{name}"}}"#))
            .content_type("application/json")
            .await?;
        out.push((subject.to_string(), name.to_string(), receipt.id));
    }
    Ok(out)
}

/// The next event of a worker's stream, waiting at most [`WAIT`].
async fn next_event(s: &mut Subscription) -> Result<Message, BoxError> {
    loop {
        match tokio::time::timeout(WAIT, s.next()).await {
            Err(_) => return Err("no delivery within 10 s".into()),
            Ok(None) => return Err("the stream ended".into()),
            Ok(Some(item)) => {
                if let StreamItem::Event(m) = item? {
                    return Ok(m);
                }
            }
        }
    }
}

fn text(m: &Message) -> &str {
    m.text().unwrap_or("(binary)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_testkit::TestServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_is_acked_once_the_stopped_workers_delivery_by_the_other() {
        let server = TestServer::start_default().await;
        let report = bus_testkit::within("the example", run(&server.base()))
            .await
            .expect("the example runs");

        assert_eq!(report.published.len(), 8, "{:#?}", report.lines);
        // A acked what it was meant to, and held one more when it stopped.
        assert_eq!(report.acked_by_a.len() as u64, A_TAKES - 1);
        let held = report.held_by_a.clone().expect("A held a delivery");
        assert!(!report.acked_by_a.contains(&held));
        // B acked everything else, each event once: the held one as a redelivery.
        let b_ids: BTreeSet<_> = report.acked_by_b.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            b_ids.len(),
            report.acked_by_b.len(),
            "B acked an event twice"
        );
        assert!(b_ids.is_disjoint(&report.acked_by_a));
        let all: BTreeSet<_> = b_ids.union(&report.acked_by_a).cloned().collect();
        assert_eq!(all, report.published, "an event was lost or foreign");
        let redelivered: Vec<_> = report.acked_by_b.iter().filter(|(_, n)| *n > 1).collect();
        assert_eq!(redelivered, [&(held, 2)]);
        assert_eq!(
            report.lines.last().map(String::as_str),
            Some("done: 8 published, 2 acked by A, 6 by B, 0 lost")
        );

        // The broker agrees: nothing is pending, and the group left with its last member.
        let client = server.connect().await;
        bus_testkit::eventually("the group is gone", || {
            let client = client.clone();
            async move { client.consumer(GROUP).await.is_err() }
        })
        .await;
    }
}
