//! Publish confirmation by N consumers: two consumers (the queue groups `mailer` and
//! `audit`) follow `order.placed` with manual acks, and a publish with `confirm(2, ..)`
//! answers only once both acked the event: the publish is synchronous with its handlers.
//! A second publish asks for three confirmations, which only two consumers can give: it
//! answers when its timeout runs out, with 2 of 3, and the event stays stored.
//!
//! Run it with the broker of the README's first command running
//! (`cargo run --release -p bus-cli -- server`):
//!
//! ```sh
//! cargo run -p bus-example-confirm
//! BUS_URL=http://127.0.0.1:4222 cargo run -p bus-example-confirm   # another broker
//! ```

use std::time::Duration;

use bus_client::{AckMode, Client, Receipt, Start, StreamItem, SubscribeOptions};
use futures::StreamExt as _;
use tokio::task::JoinHandle;

/// The subject published and followed.
const SUBJECT: &str = "order.placed";
/// How long the satisfiable publish may wait for its two confirmations.
const CONFIRM_WITHIN: Duration = Duration::from_secs(10);
/// How long the publish asking for one confirmation too many waits.
const SHORT_WAIT: Duration = Duration::from_millis(300);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("BUS_URL").unwrap_or_else(|_| "http://127.0.0.1:2021".into());
    let report = run(&url).await?;
    for line in &report.lines {
        println!("{line}");
    }
    // The run is a success when the first publish was confirmed and the second was not.
    if !report.confirmed.is_confirmed() || report.short.is_confirmed() || report.acked.len() != 2 {
        return Err("the confirmations were not as expected".into());
    }
    Ok(())
}

/// What a run did.
#[derive(Debug)]
struct Report {
    /// One line per step, as printed.
    lines: Vec<String>,
    /// The receipt of the publish confirmed by both consumers.
    confirmed: Receipt,
    /// The receipt of the publish that asked for three.
    short: Receipt,
    /// Per consumer, the ids it acked.
    acked: Vec<(String, Vec<String>)>,
}

/// Runs both consumers and the publisher against the broker at `url`.
async fn run(url: &str) -> Result<Report, BoxError> {
    let client = Client::connect(url).await?;
    // Each consumer is subscribed once `subscribe_with` returns: the broker confirmed it.
    let mailer = consumer(&client, "mailer", 2).await?;
    let audit = consumer(&client, "audit", 2).await?;

    let confirmed = client
        .publish(SUBJECT, r#"{"id":7}"#)
        .content_type("application/json")
        .confirm(2, CONFIRM_WITHIN)
        .await?;
    let short = client
        .publish(SUBJECT, r#"{"id":8}"#)
        .content_type("application/json")
        .confirm(3, SHORT_WAIT)
        .await?;

    let mut lines = vec![
        figures("order 7, confirm=2", &confirmed),
        figures("order 8, confirm=3", &short),
    ];
    let mut acked = Vec::new();
    for (name, task) in [("mailer", mailer), ("audit", audit)] {
        let ids = task.await??;
        lines.push(format!("{name} acked {}", ids.join(", ")));
        acked.push((name.to_string(), ids));
    }
    Ok(Report {
        lines,
        confirmed,
        short,
        acked,
    })
}

/// A consumer: a queue group of one member with manual acks, acking `n` events (each ack
/// answered by the broker) and returning their ids.
async fn consumer(
    client: &Client,
    name: &str,
    n: usize,
) -> Result<JoinHandle<Result<Vec<String>, BoxError>>, BoxError> {
    let options = SubscribeOptions::new()
        .group(name)
        .ack(AckMode::Manual)
        .from(Start::Newest);
    let mut sub = client.subscribe_with(SUBJECT, options).await?;
    Ok(tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < n {
            match tokio::time::timeout(CONFIRM_WITHIN, sub.next()).await {
                Err(_) => return Err("no delivery within 10 s".into()),
                Ok(None) => return Err("the stream ended".into()),
                Ok(Some(item)) => {
                    if let StreamItem::Event(m) = item? {
                        m.double_ack().await?;
                        ids.push(m.id.clone());
                    }
                }
            }
        }
        Ok(ids)
    }))
}

fn figures(what: &str, r: &Receipt) -> String {
    format!(
        "{what}: stored as {}, confirmed by {} of {}{}",
        r.id,
        r.confirmed.unwrap_or(0),
        r.required.unwrap_or(0),
        if r.is_confirmed() { "" } else { " (timed out)" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_testkit::TestServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_answers_once_both_consumers_acked_it() {
        let server = TestServer::start_default().await;
        let report = bus_testkit::within("the example", run(&server.base()))
            .await
            .expect("the example runs");

        assert_eq!(report.confirmed.confirmed, Some(2), "{:#?}", report.lines);
        assert_eq!(report.confirmed.required, Some(2));
        assert!(report.confirmed.is_confirmed());
        assert_eq!(report.short.confirmed, Some(2));
        assert_eq!(report.short.required, Some(3));
        assert!(!report.short.is_confirmed());
        // Each consumer acked both events, in order.
        let ids = vec![report.confirmed.id.clone(), report.short.id.clone()];
        for (name, acked) in &report.acked {
            assert_eq!(acked, &ids, "{name}");
        }
        assert!(report.lines[1].ends_with("confirmed by 2 of 3 (timed out)"));
        // Both events stayed stored.
        assert_eq!(server.pull_all("order.>").await.len(), 2);
    }
}
