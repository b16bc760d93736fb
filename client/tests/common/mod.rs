//! Shared by the client's integration tests: a real broker served in-process on a loopback
//! port, and bounded waits for stream items.

#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use futures::StreamExt as _;
use tokio::time::timeout;

use bus_broker::broker::Broker;
use bus_broker::config::Config;
use bus_client::{Client, Message, StreamItem, Subscription};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A broker on a loopback port for the test's lifetime, and a client of it.
pub struct TestBroker {
    pub client: Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let (broker, _) = timeout(TIMEOUT, Broker::open(config))
            .await
            .unwrap()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bus_broker::server::run(listener, broker, async {
            let _ = rx.await;
        }));
        let client = timeout(TIMEOUT, Client::connect(&url))
            .await
            .unwrap()
            .unwrap();
        TestBroker {
            client,
            shutdown: Some(tx),
            _dir: dir,
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The next event of `sub`, skipping the confirmation.
pub async fn next_event(sub: &mut Subscription) -> Message {
    loop {
        let item = timeout(TIMEOUT, sub.next())
            .await
            .expect("an item in time")
            .expect("the stream goes on")
            .expect("not an error");
        if let StreamItem::Event(m) = item {
            return m;
        }
    }
}
