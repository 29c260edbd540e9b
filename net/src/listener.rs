//! The serving loop: accepts connections on a listener and serves each with the API
//! (`crate::api::handle`, WebSocket upgrades included), over TLS when `[server] tls_cert`
//! is set, runs the background tasks beside it (the 1 s ticker, the WebSocket fan-out and
//! ops snapshots), and shuts down gracefully. It sits above everything else: nothing in
//! the crate but `lib.rs` names it.
//!
//! Guarantees:
//! - every accepted connection is admitted, put in the probe lane, or closed at once by
//!   `crate::admission` (the descriptor budget, the per-IP cap): the accept loop never
//!   waits for a free place, so a health check is never stuck in the kernel's backlog
//!   behind connections that will not be served; an `accept` error (EMFILE, ENFILE…)
//!   pauses the loop for [`ACCEPT_ERROR_PAUSE`], never spins;
//! - headers must arrive within [`HEADER_READ_TIMEOUT`] (on an idle keep-alive connection
//!   too); output a client does not take within `[server] write_timeout_s` closes its
//!   connection (`crate::timed_io`: responses, upgrades and WebSocket frames alike);
//! - unread output per connection is bounded: hyper answers pipelined requests one at a
//!   time and writes the next answer's head only once the previous answer has left its
//!   buffer, so a client that never reads holds one answer (at most the largest response:
//!   a zone list or a console file) plus the kernel's socket buffer, until the write
//!   timeout closes it; the read buffer is [`MAX_BUF_BYTES`];
//! - a TLS handshake runs on the connection's task within `crate::tls::HANDSHAKE_TIMEOUT`;
//!   over TLS every response carries `Strict-Transport-Security`;
//! - the client's address (the TCP peer, or what a trusted proxy says: `crate::proxy`)
//!   keys the rate limits and is on every log line of the request (`client_ip`);
//! - shutdown (SIGTERM, ctrl-c, or the handle's signal) stops accepting at once, lets
//!   in-flight requests finish for at most [`DRAIN_TIMEOUT`], gives WebSockets time to
//!   send their close frames, then stops the background tasks (the caller then shuts the
//!   engine down, which flushes the WAL);
//! - a `Tick` is submitted every second, fire and forget, so deadlines fire on an idle
//!   server, and presence reports the engine could not take are sent again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dispatch_core::{Actor, Command};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::admission::{Admit, Admitted, ConnTicket, PROBE_DEADLINE, Refusal};
use crate::http::{ApiError, Resp};
use crate::server::{App, until_shutdown};
use crate::timed_io::WriteDeadline;

/// How long in-flight requests may run after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most HTTP connections (not upgraded) served at once (`crate::admission`).
pub const MAX_CONNECTIONS: usize = crate::admission::MAX_HTTP_CONNECTIONS;
/// The longest a request's headers may take to arrive, and an idle keep-alive connection
/// may wait for its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// hyper's buffer per connection, bytes: bounds a request's head (hyper refuses a larger
/// one with `431`), and how much of its output it keeps besides the answer being written.
pub const MAX_BUF_BYTES: usize = 64 * 1024;
/// The accept loop's pause after `accept` fails (out of descriptors): the pending
/// connection stays in the backlog and is tried again, without spinning.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The least time between two warnings of refused connections (each is counted).
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` flips, then drains and returns. With `tls`, every
/// connection speaks TLS.
pub async fn run(app: Arc<App>, listener: TcpListener, tls: Option<TlsAcceptor>, mut shutdown: watch::Receiver<bool>) {
    // The request schemas are compiled before the first connection is taken, not during
    // the first requests (tens of milliseconds, which every request of the first burst
    // would wait for). Here, so every embedding of the server gets it, not only `dispatchd`.
    crate::api::openapi::init();
    let ticker = tokio::spawn(ticker(Arc::clone(&app), shutdown.clone()));
    let fanout = crate::ws::spawn_fanout(Arc::clone(&app));
    let snapshots = tokio::spawn(crate::ws::ops_snapshots(Arc::clone(&app)));
    let mut conns = tokio::task::JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        app.metrics.transport.accept_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                let (admitted, probe) = match app.admission.admit(peer.ip()) {
                    Admit::Serve(a) => (a, false),
                    Admit::Probe(a) => (a, true),
                    Admit::Refuse(why) => {
                        // Closed at once (counted); a warning now and then, not per connection.
                        drop(stream);
                        if last_warning.is_none_or(|t| t.elapsed() >= REFUSAL_WARNING_EVERY) {
                            last_warning = Some(Instant::now());
                            let (reason, limit) = match why {
                                Refusal::PerIp => ("per_ip", app.config.server.max_connections_per_ip),
                                Refusal::Budget => ("budget", app.admission.budget()),
                            };
                            tracing::warn!(peer = %peer.ip(), reason, limit, "connections refused: a cap is reached");
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = serve_connection(Arc::clone(&app), stream, peer, admitted, probe, tls.clone(), shutdown.clone());
                conns.spawn(conn);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(connections = conns.len(), "shutting down: draining connections");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("drain timed out; closing the remaining connections");
        conns.abort_all();
    }
    // Upgraded sockets live on their own tasks: give them time to send their close frames.
    let sockets_closed = tokio::time::timeout(Duration::from_secs(3), async {
        while app.metrics.sockets_open.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if sockets_closed.is_err() {
        tracing::warn!("some sockets did not close in time");
    }
    ticker.abort();
    snapshots.abort();
    fanout.stop();
}

/// One accepted connection: the write deadline, TLS if configured, then HTTP. A probe
/// connection (`crate::admission`'s lane) has [`PROBE_DEADLINE`] for all of it.
async fn serve_connection(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    probe: bool,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let write_timeout = if probe { PROBE_DEADLINE } else { app.config.server.write_timeout() };
    let io = WriteDeadline::new(stream, write_timeout, Arc::clone(&app.metrics.transport.write_timeouts));
    let served = async {
        match tls {
            None => serve_http(app, io, peer, &admitted, probe, false, shutdown).await,
            Some(acceptor) => match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(tls)) => serve_http(app, tls, peer, &admitted, probe, true, shutdown).await,
                Ok(Err(e)) => tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %peer.ip(), "TLS handshake timed out"),
            },
        }
    };
    if probe {
        let _ = tokio::time::timeout(PROBE_DEADLINE, served).await;
    } else {
        served.await;
    }
    // The connection's places go back now (its WebSocket, if it upgraded, keeps the TCP one).
    drop(admitted);
}

/// Whether a probe-lane request is one the lane answers: the health, readiness and
/// metrics endpoints.
fn is_probe_request(req: &Request<Incoming>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        && matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics")
}

/// Serves HTTP/1.1 on `io` until the client or the server ends it.
async fn serve_http<I>(
    app: Arc<App>,
    io: I,
    peer: SocketAddr,
    admitted: &Admitted,
    probe: bool,
    hsts: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ticket = ConnTicket(Arc::clone(&admitted.tcp));
    let service = service_fn(move |mut req: Request<Incoming>| {
        let app = Arc::clone(&app);
        let ticket = ticket.clone();
        async move {
            let client = app.proxies.client_ip(peer.ip(), req.headers());
            let mut resp: Resp = if probe && !is_probe_request(&req) {
                let request_id = crate::http::request_id(req.headers());
                let mut r = ApiError::new("overloaded", "the server is at its connection limit; try again shortly")
                    .into_response(&request_id);
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    r.headers_mut().insert("x-request-id", v);
                }
                r
            } else {
                req.extensions_mut().insert(ticket);
                let span = tracing::info_span!("http", client_ip = %client);
                crate::api::handle(app, client, req).instrument(span).await
            };
            if hsts {
                resp.headers_mut().insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(crate::tls::HSTS));
            }
            // A checkpoint for a peer is streamed from its file; anything else goes whole.
            Ok::<_, Infallible>(crate::cluster::checkpoint::into_streaming(resp))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(if probe { PROBE_DEADLINE } else { HEADER_READ_TIMEOUT })
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(!probe);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(error = %e, "connection ended with an error"); } }
        _ = until_shutdown(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Sends a `Tick` every second (deadlines fire even when no request arrives), sends
/// again the presence reports the engine could not take, and samples the fsync latency.
async fn ticker(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoints_failed = 0;
    loop {
        tokio::select! {
            _ = every.tick() => {
                // Fire and forget: an overloaded or read-only engine just skips a tick. A
                // follower of a cluster ticks nothing: the leader's ticks reach it in the log.
                if app.engine.is_leader() {
                    let _ = app.engine.submit_with(Actor::System, Command::Tick, |_| {});
                }
                // Presence reports the engine (or, on a follower, the leader) could not take.
                if app.follower().is_some() {
                    let due = app.hub.presence.due(crate::hub::presence::PRESENCE_RETRIES_PER_TICK);
                    for (driver, connected, seq) in due {
                        crate::ws::send_presence(&app, driver, connected, seq);
                    }
                } else {
                    crate::hub::presence::retry_presence(&app.engine, &app.hub.presence);
                }
                app.sample_fsync();
                let checkpoints = &app.engine.stats().checkpoints;
                let failed = checkpoints.failed.load(Ordering::Relaxed);
                if failed > checkpoints_failed {
                    checkpoints_failed = failed;
                    let why = checkpoints.last_error.lock().clone().unwrap_or_default();
                    tracing::error!(failed, error = %why, "checkpoint failed: the WAL keeps every record until one succeeds");
                }
            }
            _ = until_shutdown(&mut shutdown) => return,
        }
    }
}

/// SIGTERM and SIGINT (ctrl-c), caught from the moment [`Signals::catch`] returns: the
/// server announces that it listens only after, so a signal sent as soon as it does (a
/// supervisor, a test) is a graceful shutdown, not the default action killing the process.
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers now (on the current runtime).
    pub fn catch() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate())
                .inspect_err(|e| tracing::warn!(error = %e, "SIGTERM cannot be caught"))
                .ok();
            let int = signal(SignalKind::interrupt())
                .inspect_err(|e| tracing::warn!(error = %e, "SIGINT cannot be caught"))
                .ok();
            Signals { term, int }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves when one of them arrives.
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {}
                _ = next(self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
