//! The serving loop: accepts connections on a listener and serves each with the API
//! (`crate::api::handle`, WebSocket upgrades included), runs the background tasks beside
//! it (the 1 s ticker, the WebSocket fan-out and ops snapshots), and shuts down
//! gracefully. It sits above everything else: nothing in the crate but `lib.rs` names it.
//!
//! Guarantees:
//! - at most [`MAX_CONNECTIONS`] connections are served at once; more wait in the
//!   kernel's backlog; headers must arrive within 30 s;
//! - shutdown (SIGTERM, ctrl-c, or the handle's signal) stops accepting at once, lets
//!   in-flight requests finish for at most [`DRAIN_TIMEOUT`], gives WebSockets time to
//!   send their close frames, then stops the background tasks (the caller then shuts the
//!   engine down, which flushes the WAL);
//! - a `Tick` is submitted every second, fire and forget, so deadlines fire on an idle
//!   server, and presence reports the engine could not take are sent again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dispatch_core::{Actor, Command};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::server::{App, until_shutdown};

/// How long in-flight requests may run after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most HTTP connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Serves `listener` until `shutdown` flips, then drains and returns.
pub async fn run(app: Arc<App>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let ticker = tokio::spawn(ticker(Arc::clone(&app), shutdown.clone()));
    let fanout = crate::ws::spawn_fanout(Arc::clone(&app));
    let snapshots = tokio::spawn(crate::ws::ops_snapshots(Arc::clone(&app)));
    let mut conns = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = serve_connection(Arc::clone(&app), stream, peer, shutdown.clone());
                conns.spawn(async move {
                    conn.await;
                    drop(slot);
                });
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

async fn serve_connection(
    app: Arc<App>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc_app = Arc::clone(&app);
    let service = service_fn(move |req| {
        let app = Arc::clone(&svc_app);
        async move { Ok::<_, std::convert::Infallible>(crate::api::handle(app, peer.ip(), req).await) }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
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
                // Fire and forget: an overloaded or read-only engine just skips a tick.
                let _ = app.engine.submit_with(Actor::System, Command::Tick, |_| {});
                // Presence reports an overloaded or read-only engine could not take.
                crate::hub::presence::retry_presence(&app.engine, &app.hub.presence);
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

/// Resolves when SIGTERM or ctrl-c arrives.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
