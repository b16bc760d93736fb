//! [`LimitedListener`]: a TCP listener that holds at most `max` connections open; past it,
//! accepting waits until one closes (the kernel's backlog holds the waiting ones). The
//! connection timeouts (`connection/activity.rs`) make sure that silent, idle and stalled
//! connections do close, so a waiting client gets in within the header timeout.
//! It also turns off Nagle's algorithm, since events and replies are small.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A listener with a bound on open connections.
pub struct LimitedListener {
    /// The socket.
    inner: TcpListener,
    /// One per open connection.
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    /// At most `max` connections open at once.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// The next connection, with its slot (give it back by dropping it when the connection
    /// closes). Waits for a slot first, then for a connection.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        // The semaphore is never closed, so acquiring cannot fail; if it ever did, accepting
        // without a slot is better than refusing forever.
        let permit = loop {
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                break p;
            }
        };
        // Retries (after a short pause) on errors such as too many open files.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        (stream, addr, permit)
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
