//! [`Proxy`]: a TCP proxy on a loopback port whose open connections can be cut at once, as a
//! network failure would; and [`next_message`], the next event of a `bus_client`
//! subscription, bounded. For the client's failure tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bus_client::{Message, StreamItem, Subscription};
use futures::StreamExt as _;

use crate::wait::within;

/// The next event of `sub`, skipping other stream items (the confirmation, gaps), each
/// bounded by [`WAIT`](crate::WAIT).
pub async fn next_message(sub: &mut Subscription) -> Message {
    loop {
        let item = within("the next subscription item", sub.next())
            .await
            .expect("the stream goes on")
            .expect("not an error");
        if let StreamItem::Event(m) = item {
            return m;
        }
    }
}

/// A TCP proxy on a loopback port in front of an upstream address; new connections go
/// through again after a [`Proxy::cut`], and are refused between [`Proxy::down`] and
/// [`Proxy::up`].
pub struct Proxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Bumped to cut every open connection.
    cut: tokio::sync::watch::Sender<u64>,
    /// Whether new connections are refused.
    down: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = within("bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cuts = cut.clone();
        let down = Arc::new(AtomicBool::new(false));
        let is_down = down.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
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
        self.down.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Lets connections through again.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
