//! The WebSocket gateway, `GET /v1/ws`: the upgrade, and each socket's two tasks, the
//! reader here and the writer (`writer`), over the hub's registry and outboxes
//! (`crate::hub`), which the engine's events reach through the fan-out (`fanout`). Client
//! frames are parsed and answered in `frames`.
//!
//! Guarantees:
//! - at most [`MAX_SOCKETS`] sockets are open at once (fewer when descriptors are:
//!   `crate::admission`'s budget); one more upgrade is `503 overloaded`; a rider or driver
//!   holds at most `[server] ws_per_user` sockets, staff `ws_per_staff`, one more upgrade
//!   is `429 rate_limited` with `Retry-After` (`crate::hub::caps`); the place is claimed
//!   before the `101` is sent and kept, with the connection's place in the descriptor
//!   budget, until the socket closes;
//! - a client frame is at most [`MAX_FRAME_BYTES`]; a larger one closes the socket with
//!   1009 (message too big), a text frame that is not UTF-8 with 1007 (invalid payload
//!   data), any other breach of RFC 6455 with 1002, each with its close frame (RFC 6455
//!   §7.4.1); a frame that is UTF-8 but not a valid request gets an `error` frame;
//! - a write that does not finish within `WsTiming::send_timeout` (a client that stopped
//!   reading) closes the socket (1008), as does an outbox overflow noticed mid-write: a
//!   writer never waits on a client for longer than that;
//! - the server pings every `WsTiming::ping_every` and closes a socket it heard nothing
//!   from for `WsTiming::idle_timeout`;
//! - a bad frame gets an `error` frame and the connection stays open;
//! - a driver's socket connecting and dropping is reported to the engine (`presence`):
//!   only a user's first open and last close, in order; a report the engine could not
//!   take is kept and sent again on every tick (`crate::hub::presence`).

mod fanout;
mod frames;
mod writer;

pub use fanout::{Fanout, ops_snapshots, spawn_fanout};
pub use frames::{ClientFrame, SubscribeIn, parse_client_frame};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dispatch_core::Role;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};

use crate::admission::ConnTicket;
use crate::auth::Principal;
use crate::http::{ApiError, Resp};
use crate::hub::outbox::OutFrame;
use crate::hub::presence::submit_presence;
use crate::server::App;
use frames::{error_frame, on_text};
use writer::{WriterEnd, write_loop};

/// Most sockets open at once (fewer when the descriptor budget is smaller: see
/// `crate::admission`); one more upgrade is `503 overloaded`.
pub const MAX_SOCKETS: usize = crate::admission::MAX_WEBSOCKETS;
/// Largest client frame, bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// A socket's read buffer, bytes: client frames are a few hundred bytes; a larger frame
/// (up to `MAX_FRAME_BYTES`) still arrives, over several reads.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// The longest a close frame may take to be written to a socket being closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Validates the upgrade request, claims the socket's place (the caps) and answers `101`;
/// the socket is served on a task, which keeps the claim and the connection's place in
/// the descriptor budget (its [`ConnTicket`], from the request's extensions) until it ends.
pub fn upgrade(app: Arc<App>, who: Principal, mut req: Request<Incoming>) -> Result<Resp, ApiError> {
    let h = req.headers();
    let has = |name, want: &str| {
        h.get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(want))))
    };
    if !has(UPGRADE, "websocket") || !has(CONNECTION, "upgrade") {
        return Err(ApiError::invalid("a WebSocket upgrade is required here"));
    }
    if h.get(SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(ApiError::invalid("Sec-WebSocket-Version must be 13"));
    }
    let key = h.get(SEC_WEBSOCKET_KEY).ok_or_else(|| ApiError::invalid("Sec-WebSocket-Key is missing"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let claim = app.socket_caps.claim(who).inspect_err(|e| {
        if e.code == "rate_limited" {
            app.metrics.rate_limited("ws_sockets");
        }
    })?;
    let ticket = req.extensions_mut().remove::<ConnTicket>();
    // Counted from the claim, before the `101` goes out: a client that got its `101` finds
    // its socket in `dispatch_ws_sockets_open` at once.
    app.metrics.sockets_open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => serve_socket(Arc::clone(&app), who, TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
        // The socket's places, given back only now.
        app.metrics.sockets_open.fetch_sub(1, Ordering::Relaxed);
        drop((claim, ticket));
    });
    let mut resp = Resp::new(http_body_util::Full::new(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = resp.headers_mut();
    hs.insert(UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    hs.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).map_err(|_| ApiError::invalid("bad key"))?);
    Ok(resp)
}

/// The presence hook: a driver's socket connected or dropped. Never blocks (`submit_with`),
/// so it may run under the hub's lock. A report the engine cannot take now is kept and
/// sent again by [`crate::hub::presence::retry_presence`]: a lost disconnect would leave
/// the engine offering trips to a driver without a socket.
fn presence(app: &App, who: Principal, connected: bool) {
    if let (Role::Driver, Some(driver)) = (who.role(), who.user_id()) {
        let seq = app.hub.presence.record(driver, connected);
        send_presence(app, driver, connected, seq);
    }
}

/// Sends presence report `seq`: to this engine when it leads, else (a follower, issue 21)
/// to the leader.
pub(crate) fn send_presence(app: &App, driver: dispatch_core::UserId, connected: bool, seq: u64) {
    match app.follower() {
        Some(node) => crate::cluster::forward_presence(node, &app.hub.presence, driver, connected, seq),
        None => submit_presence(&app.engine, &app.hub.presence, driver, connected, seq),
    }
}

/// The close a read error calls for (RFC 6455 §7.4.1), or `None` when the connection
/// itself is gone (nothing can be sent).
fn breach(e: &WsError) -> Option<WriterEnd> {
    match e {
        WsError::Capacity(_) => Some(WriterEnd::Breach(CloseCode::Size, "frame over 64 KiB")),
        WsError::Utf8(_) => Some(WriterEnd::Breach(CloseCode::Invalid, "text frame is not UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(WriterEnd::Breach(CloseCode::Protocol, "WebSocket protocol error")),
        _ => None,
    }
}

/// Serves one upgraded socket until it closes: registers it with the hub (presence),
/// spawns its writer, and reads client frames on this task.
async fn serve_socket<S>(app: Arc<App>, who: Principal, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // A city keeps tens of thousands of mostly idle sockets open, each receiving small
    // frames: tungstenite's default 128 KiB read buffer per socket (zeroed as it is
    // used) cost a profile's largest item and over a GiB for 10,000 drivers.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(config)).await;
    let (mut sink, mut stream) = ws.split();
    // A driver with two sockets (two devices, a reconnect racing the old one) is present
    // while either is open: only the first open and the last close are reported, in order.
    let (id, outbox, _) = app.hub.register(who, || presence(&app, who, true));
    let user = who.user_id().map_or_else(|| "admin".to_owned(), |u| u.to_string());
    tracing::info!(socket = id, user_id = %user, role = who.role().as_str(), "websocket open");
    let timing = app.ws_timing;
    let mut shutdown = app.shutdown.clone();
    // The reader tells the writer why the socket ends (idle, a protocol breach); dropping
    // the sender says the peer is gone (it closed, or the connection failed).
    let (close_tx, mut close_rx) = oneshot::channel::<WriterEnd>();

    // The writer: drains the outbox, pings, and closes (on overflow, a stuck write, idle,
    // a protocol breach or shutdown).
    let writer_box = Arc::clone(&outbox);
    let metrics = Arc::clone(&app.metrics);
    let mut writer = tokio::spawn(async move {
        let why = write_loop(&mut sink, &writer_box, &mut close_rx, timing, &mut shutdown).await;
        let (code, reason) = match why {
            WriterEnd::Failed => return,
            WriterEnd::PeerGone => {
                // Sends the reply to the peer's close frame, if any, and closes.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                return;
            }
            WriterEnd::TooSlow => {
                metrics.slow_sockets_closed.fetch_add(1, Ordering::Relaxed);
                (CloseCode::Policy, "too slow: resynchronise over HTTP")
            }
            WriterEnd::Idle => (CloseCode::Away, "idle"),
            WriterEnd::Shutdown => (CloseCode::Away, "server shutting down"),
            WriterEnd::Breach(code, reason) => (code, reason),
        };
        // A client that stopped reading cannot take a close frame either: bounded too.
        let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
    });

    // The reader: this task.
    let mut writer_done = false;
    let mut close_tx = Some(close_tx);
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(timing.idle_timeout, stream.next()) => n,
            _ = &mut writer => {
                writer_done = true;
                break;
            }
        };
        let msg = match next {
            Err(_) => {
                if let Some(tx) = close_tx.take() {
                    let _ = tx.send(WriterEnd::Idle);
                }
                break;
            }
            Ok(Some(Err(e))) => {
                if let (Some(end), Some(tx)) = (breach(&e), close_tx.take()) {
                    tracing::debug!(socket = id, error = %e, "websocket protocol breach");
                    let _ = tx.send(end);
                }
                break;
            }
            Ok(None) => {
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                if let Some(reply) = on_text(&app, who, id, t.as_str()).await {
                    outbox.push(OutFrame::Event(reply.into()), &app.metrics);
                }
            }
            Message::Binary(_) => outbox
                .push(OutFrame::Event(error_frame("invalid_request", "frames are JSON text").into()), &app.metrics),
            Message::Close(_) => break,
            _ => {} // pings are answered by tungstenite; pongs just prove liveness
        }
    }
    // Whatever ended the reading, the writer ends too: with the reason sent, or `PeerGone`.
    drop(close_tx);
    if !writer_done {
        // Let the writer send its close frame (a JoinHandle must not be polled after it completed).
        let _ = tokio::time::timeout(Duration::from_secs(2) + 2 * CLOSE_TIMEOUT, &mut writer).await;
    }
    writer.abort();
    app.hub.unregister(id, || presence(&app, who, false));
    tracing::info!(socket = id, user_id = %user, "websocket closed");
}
