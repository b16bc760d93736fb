//! A bus broker embedded in a program, over the memory engine: no HTTP server, no data
//! directory. Everything the HTTP API offers is a method of [`Broker`]; this program
//! publishes to `user.*`, follows it live, works through a durable consumer with acks, and
//! answers a request in the `rpc` namespace.
//!
//! Run it with `cargo run -p bus-example-embedded`. Nothing is written to disk, so
//! everything is gone when it exits; open the broker with `Broker::open` instead to keep
//! events in a data directory.

use std::time::Duration;

use bus_broker::broker::{Broker, Publish};
use bus_broker::config::Config;
use bus_broker::delivery::{AckItem, AckMode, Attach, ConsumerSettings, Out, Verb};
use bus_broker::error::Error;
use bus_broker::subscription::Delivery;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for line in run().await? {
        println!("{line}");
    }
    Ok(())
}

/// Runs the tour and returns what it saw, one line per step.
async fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut seen = Vec::new();
    let broker = Broker::in_memory(Config::default()).await?;

    // 1. A live subscription, then two events: it sees both, in order.
    let mut live = broker.subscribe("user.*", "newest").await?;
    for name in ["ada", "grace"] {
        let receipt = broker.publish(event("user.created", name)).await?;
        seen.push(format!("published {} as {}", name, receipt.id()));
    }
    for _ in 0..2 {
        if let Some(Delivery::Event { event, .. }) = live.next().await? {
            seen.push(format!("live: {} {}", event.subject, text(&event.payload)));
        }
    }

    // 2. A durable consumer with manual acks reads from the oldest event; acking takes
    //    the event off its list, so a member attaching later starts after it.
    let attach = Attach {
        durable: Some("mailer".into()),
        settings: ConsumerSettings {
            ack: AckMode::Manual,
            ..ConsumerSettings::default()
        },
        ..Attach::default()
    };
    let mut member = broker.attach("user.created", "oldest", attach).await?;
    if let Some(Out::Event { event, count, .. }) = member.next().await? {
        let ack = AckItem {
            id: event.id.clone(),
            verb: Verb::Ack,
        };
        let outcome = member.consumer().acknowledge(&[ack]).await;
        seen.push(format!(
            "mailer: {} (delivery {count}), ack: {:?}",
            text(&event.payload),
            outcome[0].as_ref().map_err(|e: &Error| e.message.clone())
        ));
    }

    // 3. Request/reply: a responder follows `rpc.>` and answers each request's inbox.
    let mut requests = broker.subscribe("rpc.>", "newest").await?;
    let responder = broker.clone();
    tokio::spawn(async move {
        while let Ok(Some(Delivery::Event { event, .. })) = requests.next().await {
            if let Some(inbox) = event.reply_to.clone() {
                let answer = format!("hello, {}", text(&event.payload));
                let _ = responder.reply(Publish {
                    subject: inbox,
                    payload: answer.into(),
                    ..Publish::default()
                });
            }
        }
    });
    let (_, reply) = broker
        .request(event("rpc.greet", "linus"), Duration::from_secs(5))
        .await?;
    seen.push(format!("reply: {}", text(&reply.payload)));

    broker.close().await;
    Ok(seen)
}

/// A text event.
fn event(subject: &str, text: &str) -> Publish {
    Publish {
        subject: subject.to_owned(),
        content_type: Some("text/plain".to_owned()),
        payload: bytes::Bytes::copy_from_slice(text.as_bytes()),
        ..Publish::default()
    }
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tour_publishes_follows_acks_and_gets_a_reply() {
        let seen = run().await.expect("the tour runs");
        assert_eq!(seen.len(), 6, "{seen:#?}");
        assert!(
            seen[0].starts_with("published ada as user-1-"),
            "{}",
            seen[0]
        );
        assert_eq!(seen[2], "live: user.created ada");
        assert_eq!(seen[3], "live: user.created grace");
        assert_eq!(seen[4], "mailer: ada (delivery 1), ack: Ok(Acked)");
        assert_eq!(seen[5], "reply: hello, linus");
    }

    #[tokio::test]
    async fn the_memory_engine_leaves_no_data_directory() {
        let dir = tempfile_free_dir();
        let config = Config {
            data_dir: dir.clone(),
            ..Config::default()
        };
        let broker = Broker::in_memory(config).await.expect("opens");
        broker
            .publish(event("user.created", "x"))
            .await
            .expect("publishes");
        broker.close().await;
        assert!(!dir.exists(), "{} was created", dir.display());
    }

    /// A path under the system temp dir that does not exist.
    fn tempfile_free_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("bus-embedded-{}", std::process::id()))
    }
}
