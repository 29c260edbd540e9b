//! The position tracker: a thread that records driver positions into the history.
//!
//! Guarantees: a slow disk never slows the engine (the tracker is a subscriber like any
//! other: its channel is bounded, and when it falls behind it is disconnected, counts the
//! loss in `Stats::track_lost` and subscribes again); positions are written at most once a
//! second, or sooner when a batch grows past its bound.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::command::Event;
use crate::error::{Error, Result};
use crate::history::History;

/// Starts the thread that records driver positions into the history: it follows the
/// engine's events and writes what arrived since its last write in one transaction. A
/// slow disk never slows the engine: the tracker's channel is bounded, and a tracker
/// that falls behind is disconnected like any subscriber — it then counts the loss
/// (`Stats::track_lost`) and subscribes again.
///
/// How often the tracker writes positions to the history.
const TRACK_EVERY: Duration = Duration::from_secs(1);
/// Positions that make the tracker write before its second is up.
const TRACK_BATCH_MAX: usize = 50_000;

pub(super) fn start_tracker(shared: Arc<Shared>, history: Arc<History>) -> Result<JoinHandle<()>> {
    let subscribe = |shared: &Shared| {
        let (tx, rx) = crossbeam_channel::bounded::<Arc<[Event]>>(1024);
        shared.subscribers.lock().push(tx);
        rx
    };
    let mut rx = subscribe(&shared);
    std::thread::Builder::new()
        .name("dispatch-tracker".into())
        .spawn(move || {
            let mut points = Vec::new();
            let mut last_write = Instant::now();
            loop {
                // At most one write a second (each redb commit costs two fsyncs, which
                // the WAL's group commit would otherwise queue behind), or sooner when a
                // lot is waiting.
                // With nothing gathered there is nothing to write when the second is
                // up: wait a whole interval (a zero timeout here would spin the thread).
                let wait =
                    if points.is_empty() { TRACK_EVERY } else { TRACK_EVERY.saturating_sub(last_write.elapsed()) };
                match rx.recv_timeout(wait) {
                    Ok(events) => {
                        for batch in std::iter::once(events).chain(rx.try_iter()) {
                            for e in batch.iter() {
                                if let Event::DriverMoved { driver_id, trip_id, point, heading_deg, at } = e {
                                    let p = crate::history::LocationPoint {
                                        at: *at,
                                        point: *point,
                                        heading_deg: *heading_deg,
                                        trip_id: *trip_id,
                                    };
                                    points.push((*driver_id, p));
                                }
                            }
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        let stopping = shared.stopping.load(Ordering::Relaxed);
                        if !stopping {
                            shared.track_lost.fetch_add(1, Ordering::Relaxed);
                            rx = subscribe(&shared);
                        }
                        if stopping && points.is_empty() {
                            return;
                        }
                        if !stopping {
                            continue;
                        }
                    }
                }
                if points.is_empty() {
                    // The interval counts from the first position waiting to be written.
                    last_write = Instant::now();
                }
                let due = last_write.elapsed() >= TRACK_EVERY || points.len() >= TRACK_BATCH_MAX;
                let stopping = shared.stopping.load(Ordering::Relaxed);
                if !points.is_empty() && (due || stopping) {
                    // Best effort: a failed write loses these positions, never the engine.
                    if history.write_locations(&points).is_err() {
                        shared.track_lost.fetch_add(1, Ordering::Relaxed);
                    }
                    points.clear();
                    last_write = Instant::now();
                }
                if stopping && points.is_empty() && rx.is_empty() {
                    // The writer has stopped: nothing more will come.
                    if matches!(rx.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected)) {
                        return;
                    }
                }
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the position tracker: {e}")))
}
