//! [`WatchedIo`]: a connection's socket that tells its [`Activity`] when bytes were read and
//! whether the socket accepts output, which is what the watchdog needs to tell a silent,
//! idle or stalled connection from a busy one. It sits under TLS, so it sees the socket's own
//! progress.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::activity::Activity;

/// A socket reporting to an [`Activity`].
#[derive(Debug)]
pub struct WatchedIo<T> {
    /// The socket.
    inner: T,
    /// Where reads and writes are reported.
    activity: Arc<Activity>,
    /// Whether the socket refused output last time: only a change is reported, so a
    /// socket that keeps accepting costs no lock and no clock read per write.
    blocked: bool,
}

impl<T> WatchedIo<T> {
    /// `inner`, reporting to `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        WatchedIo {
            inner,
            activity,
            blocked: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                self.activity.on_read(Instant::now(), read);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> WatchedIo<T> {
    fn report(&mut self, r: &Poll<io::Result<usize>>) {
        let blocked = match r {
            Poll::Ready(Ok(n)) if *n > 0 => false,
            Poll::Pending => true,
            _ => return,
        };
        if blocked != self.blocked {
            self.blocked = blocked;
            self.activity.on_write(Instant::now(), !blocked);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.report(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.report(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
