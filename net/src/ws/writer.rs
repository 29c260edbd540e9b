//! One socket's writer: drains its outbox, pings, and says why it stopped.
//!
//! Guarantees: every write is bounded by `WsTiming::send_timeout` and cut short by an
//! overflow of the outbox, so a client that stops reading cannot hold the writer; frames
//! are written in the order they were queued, and what was queued together goes out in one
//! flush (one write to the connection, not one per frame; each frame's text is the one
//! shared by every socket that hears it, framed into this socket's buffer); no lock is
//! held while writing; the reader's word (idle, a protocol breach, the peer gone) ends the
//! loop at once.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::hub::outbox::Outbox;
use crate::server::WsTiming;

/// Why a socket's writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriterEnd {
    /// The connection failed: nothing more can be written.
    Failed,
    /// The outbox overflowed, or a write did not finish within the send timeout: close 1008.
    TooSlow,
    /// The reader heard nothing for the idle timeout: close 1001.
    Idle,
    /// The server is shutting down: close 1001.
    Shutdown,
    /// The client broke the protocol (a frame too big, text not UTF-8): close with this
    /// code and reason (1009, 1007, 1002).
    Breach(CloseCode, &'static str),
    /// The reader stopped without a word (the peer closed, or the connection failed):
    /// answer a close frame if one is owed, then stop.
    PeerGone,
}

/// Writes the outbox's frames and the pings until the socket must close, and says why.
/// Every write is bounded by `timing.send_timeout` and cut short by an overflow of the
/// outbox, so a client that stops reading cannot hold the writer.
pub(super) async fn write_loop<S>(
    sink: &mut S,
    outbox: &Outbox,
    closing: &mut oneshot::Receiver<WriterEnd>,
    timing: WsTiming,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> WriterEnd
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + timing.ping_every, timing.ping_every);
    // Made once and kept: a new wait at every wake-up would take and leave a place among
    // the shutdown flag's waiters, which every socket's writer shares.
    let shutting = crate::server::until_shutdown(shutdown);
    tokio::pin!(shutting);
    loop {
        tokio::select! {
            _ = outbox.notify.notified() => {
                if outbox.overflowed.load(Ordering::Relaxed) {
                    return WriterEnd::TooSlow;
                }
                // Everything queued goes out together: each frame is fed (framed into the
                // socket's write buffer) and one flush writes them all, one write to the
                // connection for a burst rather than one per frame.
                let mut fed = false;
                while let Some(text) = outbox.pop() {
                    if let Err(end) = bounded(sink.feed(Message::Text(text)), outbox, timing.send_timeout).await {
                        return end;
                    }
                    fed = true;
                }
                if fed && let Err(end) = bounded(sink.flush(), outbox, timing.send_timeout).await {
                    return end;
                }
            }
            _ = ping.tick() => {
                if let Err(end) = bounded(sink.send(Message::Ping(Default::default())), outbox, timing.send_timeout).await {
                    return end;
                }
            }
            why = &mut *closing => return why.unwrap_or(WriterEnd::PeerGone),
            _ = &mut shutting => return WriterEnd::Shutdown,
        }
    }
}

/// Runs one write (a frame fed, a flush, a ping sent) within `timeout`; gives up early
/// when the outbox overflows meanwhile.
async fn bounded<F, E>(send: F, outbox: &Outbox, timeout: Duration) -> Result<(), WriterEnd>
where
    F: Future<Output = Result<(), E>>,
{
    tokio::pin!(send);
    // Most writes finish at once (there is room in the socket's buffer): those take no
    // timer and no place among the outbox's waiters. A fan-out makes one feed and one
    // flush per socket, and registering then cancelling a timer for each, under the time
    // driver's lock that every worker shares, was a measurable part of it.
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
        return r.map_err(|_| WriterEnd::Failed);
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = &mut send => return r.map_err(|_| WriterEnd::Failed),
            _ = &mut deadline => return Err(WriterEnd::TooSlow),
            // A frame pushed meanwhile is written after this one (it is in the queue);
            // only an overflow ends the wait.
            _ = outbox.notify.notified() => {
                if outbox.overflowed.load(Ordering::Relaxed) {
                    return Err(WriterEnd::TooSlow);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

    use super::*;
    use crate::hub::outbox::{OUTBOX_CAP, OutFrame};
    use crate::metrics::Metrics;

    fn timing(send_timeout: Duration) -> WsTiming {
        WsTiming { ping_every: Duration::from_secs(3600), idle_timeout: Duration::from_secs(3600), send_timeout }
    }

    /// A server socket over an in-memory pipe of `buffer` bytes whose client end never reads.
    async fn stuck_socket(
        buffer: usize,
    ) -> (futures_util::stream::SplitSink<WebSocketStream<tokio::io::DuplexStream>, Message>, tokio::io::DuplexStream)
    {
        let (server_io, client_io) = tokio::io::duplex(buffer);
        let ws = WebSocketStream::from_raw_socket(server_io, WsRole::Server, None).await;
        let (sink, _stream) = ws.split();
        (sink, client_io)
    }

    /// An I/O end that counts the writes made to it.
    struct Counting {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl tokio::io::AsyncRead for Counting {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Counting {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn frames_queued_together_go_out_in_order_in_one_write() {
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let io = Counting { inner: server_io, writes: Arc::clone(&writes) };
        let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, None).await;
        let (mut sink, _stream) = ws.split();
        let mut client = WebSocketStream::from_raw_socket(client_io, WsRole::Client, None).await;
        let outbox = Outbox::new();
        let m = Metrics::default();
        for i in 0..20 {
            outbox.push(OutFrame::Event(format!("{{\"n\":{i}}}").into()), &m);
        }
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let (_close, mut closing) = oneshot::channel();
        let writer =
            async { write_loop(&mut sink, &outbox, &mut closing, timing(Duration::from_secs(3600)), &mut rx).await };
        let reader = async {
            let mut got = Vec::new();
            while got.len() < 20 {
                match client.next().await {
                    Some(Ok(Message::Text(t))) => got.push(t.as_str().to_owned()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let _ = tx.send(true);
            got
        };
        let (end, got) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(writer, reader) })
            .await
            .expect("the frames arrived");
        assert_eq!(end, WriterEnd::Shutdown);
        assert_eq!(got, (0..20).map(|i| format!("{{\"n\":{i}}}")).collect::<Vec<_>>(), "in the order queued");
        assert_eq!(writes.load(Ordering::SeqCst), 1, "twenty frames queued together, one write");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_when_a_write_outlasts_the_send_timeout() {
        let (mut sink, _client) = stuck_socket(1024).await;
        let outbox = Outbox::new();
        outbox.push(OutFrame::Event("x".repeat(32 * 1024).into()), &Metrics::default());
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        let (_close, mut closing) = oneshot::channel();
        let run = write_loop(&mut sink, &outbox, &mut closing, timing(Duration::from_millis(50)), &mut rx);
        let end = tokio::time::timeout(Duration::from_secs(30), run).await;
        assert_eq!(end, Ok(WriterEnd::TooSlow), "the stuck write was given up");
    }

    #[tokio::test]
    async fn an_outbox_overflowing_while_a_write_is_stuck_closes_at_once() {
        let (mut sink, _client) = stuck_socket(1024).await;
        let outbox = Arc::new(Outbox::new());
        let m = Metrics::default();
        outbox.push(OutFrame::Event("x".repeat(32 * 1024).into()), &m);
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        let (_close, mut closing) = oneshot::channel();
        let filler = Arc::clone(&outbox);
        let fill = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let m = Metrics::default();
            for i in 0..=OUTBOX_CAP {
                filler.push(OutFrame::Event(format!("e{i}").into()), &m);
            }
        });
        // The send timeout is an hour: only the overflow can end this.
        let run = write_loop(&mut sink, &outbox, &mut closing, timing(Duration::from_secs(3600)), &mut rx);
        let end = tokio::time::timeout(Duration::from_secs(30), run).await;
        assert_eq!(end, Ok(WriterEnd::TooSlow));
        fill.await.unwrap();
    }
}
