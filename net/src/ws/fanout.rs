//! The tasks that feed the hub: the one engine subscriber that turns each event batch
//! into frames in the sockets' outboxes, and the once-a-second ops snapshots.
//!
//! Guarantees: one subscriber for every socket (a thread of its own, since the engine's
//! channel is blocking), which resubscribes when it fell more than
//! [`SUBSCRIBER_CAPACITY`] batches behind; both stop with the server ([`Fanout::stop`],
//! shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::server::App;

/// Event batches the fan-out may lag behind the engine before it is cut off (and resubscribes).
const SUBSCRIBER_CAPACITY: usize = 4096;

/// Sends ops snapshots once a second until shutdown.
pub async fn ops_snapshots(app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => app.hub.send_ops_snapshots(&app.engine),
            _ = crate::server::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// The fan-out thread; stopped by [`Fanout::stop`].
pub struct Fanout {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Fanout {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts the one engine-event subscriber that feeds every socket.
pub fn spawn_fanout(app: Arc<App>) -> Fanout {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("dispatch-ws-fanout".into())
        .spawn(move || {
            let mut rx = app.engine.subscribe(SUBSCRIBER_CAPACITY);
            while !flag.load(Ordering::Relaxed) {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(batch) => app.hub.fan_out(&app.engine, &app.etas, &batch),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        tracing::warn!("the WebSocket fan-out fell behind the engine and resubscribes");
                        rx = app.engine.subscribe(SUBSCRIBER_CAPACITY);
                    }
                }
            }
        })
        .ok();
    Fanout { stop, handle }
}
