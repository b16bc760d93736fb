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
    /// Where the broker listens.
    pub addr: std::net::SocketAddr,
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
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
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
            addr,
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

/// A TCP proxy on a loopback port in front of `upstream` whose open connections can be cut
/// at once ([`Proxy::cut`]), as a network failure would; new connections go through again.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_down = down.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let mut cut = cuts.subscribe();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                    // Dropping both sockets closes them: the client sees its connection drop.
                });
            }
        });
        Proxy { addr, cut, down }
    }

    /// `http://<proxy>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection open through the proxy now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Cuts every connection and refuses new ones until [`Proxy::up`].
    pub fn down(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }

    /// Lets connections through again.
    pub fn up(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
