//! [`WriteDeadline`]: a connection whose pending output must reach the kernel within a
//! bound, or the connection fails. It wraps every accepted TCP stream, under TLS and
//! under the WebSocket, so it bounds HTTP responses, upgrades and socket frames alike.
//!
//! Why: a client that stops reading (a slow-read attack: pipelined requests whose answers
//! are never read) fills the socket's buffers, after which every write waits for ever;
//! hyper has a timeout for reading headers but none for writing, so such a connection held
//! its descriptor for ever.
//!
//! Guarantees:
//! - from the moment a write or a flush has to wait, the connection has the deadline to
//!   get *all* its pending output accepted (a flush that completes; hyper and tungstenite
//!   flush after every answer and every frame): a client that drips a byte now and then
//!   cannot stretch one answer beyond it;
//! - when the deadline passes, the pending write, flush or shutdown fails with
//!   `ErrorKind::TimedOut` (hyper and tungstenite then drop the connection) and the
//!   timeout is counted;
//! - writes that never wait cost nothing (no timer is armed); reads pass through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A stream whose pending output must be written within `timeout` (see the module doc).
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write first has to wait; disarmed when a flush completes.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Counts the connections closed by the deadline.
    timeouts: Arc<AtomicU64>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`; `timeouts` is incremented once per deadline that passes.
    pub fn new(inner: S, timeout: Duration, timeouts: Arc<AtomicU64>) -> Self {
        WriteDeadline { inner, timeout, deadline: None, timeouts }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Called when the inner stream said `Pending`: arms the deadline if it is not armed,
    /// and fails once it has passed.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer did not take our output within {} ms", timeout.as_millis()),
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            // Still armed if it was: the deadline covers all the pending output, up to
            // the flush that completes.
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(r) => {
                this.deadline = None;
                Poll::Ready(r)
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(r) => {
                this.deadline = None;
                Poll::Ready(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn wrap(
        inner: tokio::io::DuplexStream,
        timeout: Duration,
    ) -> (WriteDeadline<tokio::io::DuplexStream>, Arc<AtomicU64>) {
        let timeouts = Arc::new(AtomicU64::new(0));
        (WriteDeadline::new(inner, timeout, Arc::clone(&timeouts)), timeouts)
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_fails_the_write_at_the_deadline() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let (mut io, timeouts) = wrap(ours, Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let err = io.write_all(&[7u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10), "the paused clock jumped to the deadline");
        assert_eq!(timeouts.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_drips_cannot_stretch_one_answer_beyond_the_deadline() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let (mut io, _) = wrap(ours, Duration::from_secs(10));
        // The peer takes 512 bytes every 4 s: progress, but 64 KiB would take ~8 minutes.
        let drip = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_secs(4)).await;
                match theirs.read(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
            }
        });
        let started = tokio::time::Instant::now();
        let err = io.write_all(&[7u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= Duration::from_secs(11), "{:?}", started.elapsed());
        drop(io);
        drip.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_peer_is_never_timed_out_between_answers() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let (mut io, timeouts) = wrap(ours, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 4096];
            while got < 3 * 8 * 1024 {
                got += theirs.read(&mut buf).await.unwrap();
            }
        });
        for _ in 0..3 {
            // Each answer waits on the peer's buffer, then completes: the deadline is
            // disarmed by the flush, so a long pause between answers is fine.
            io.write_all(&[1u8; 8 * 1024]).await.unwrap();
            io.flush().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        reader.await.unwrap();
        assert_eq!(timeouts.load(Ordering::Relaxed), 0);
    }
}
