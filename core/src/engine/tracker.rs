//! The position tracker: a thread that records driver positions into the history.
//!
//! Guarantees: a slow disk never slows the engine (the tracker is a subscriber like any
//! other: its channel is bounded, and when it falls behind it is disconnected, counts the
//! loss in `Stats::track_lost` and subscribes again); positions are written at most once a
//! second, or sooner when a batch grows past its bound.
//!
//! Retention of positions runs here too, off the writer's path: about once a second the
//! tracker deletes the days older than `positions_days` (`History::prune_positions`), a
//! bounded batch per transaction, going on batch after batch (between its own writes)
//! while old rows remain. The store serialises it with the checkpoint's transaction, which
//! so waits for one batch at most.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::clock::Clock;
use crate::command::Event;
use crate::error::{Error, Result};
use crate::history::{History, PRUNE_BATCH_MAX};

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

/// How often the tracker looks for positions old enough to prune when none were left.
const PRUNE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Positions retention, as the tracker runs it.
pub(super) struct Retention {
    /// Where "now" comes from (the engine's clock).
    pub(super) clock: Arc<dyn Clock>,
    /// Days positions are kept; `None`: forever.
    pub(super) positions_days: Option<u32>,
}

impl Retention {
    /// One batch of pruning, if one is due: whether more may remain.
    fn prune(&self, history: &History) -> bool {
        let Some(days) = self.positions_days else { return false };
        let cutoff = self.clock.now().plus_millis(-i64::from(days) * crate::history::DAY_MS);
        // Best effort: a failed batch is tried again at the next check.
        matches!(history.prune_positions(cutoff, PRUNE_BATCH_MAX), Ok(n) if n == PRUNE_BATCH_MAX as u64)
    }
}

pub(super) fn start_tracker(
    shared: Arc<Shared>,
    history: Arc<History>,
    retention: Retention,
) -> Result<JoinHandle<()>> {
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
            // Old positions remain to prune (another batch at once), and when it was
            // last looked.
            let (mut pruning, mut last_prune) = (true, Instant::now());
            loop {
                if !shared.stopping.load(Ordering::Relaxed) && (pruning || last_prune.elapsed() >= PRUNE_CHECK_EVERY) {
                    pruning = retention.prune(&history);
                    last_prune = Instant::now();
                }
                // At most one write a second (each redb commit costs two fsyncs, which
                // the WAL's group commit would otherwise queue behind), or sooner when a
                // lot is waiting.
                // With nothing gathered there is nothing to write when the second is
                // up: wait a whole interval (a zero timeout here would spin the thread).
                let wait =
                    if points.is_empty() { TRACK_EVERY } else { TRACK_EVERY.saturating_sub(last_write.elapsed()) };
                let wait = if pruning { Duration::ZERO } else { wait.min(PRUNE_CHECK_EVERY) };
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::clock::{Clock, ManualClock, Timestamp};
    use crate::command::{Actor, Command, LocationReport, NewUser};
    use crate::engine::{Engine, EngineConfig};
    use crate::geo::LatLng;
    use crate::id::{RandomIds, UserId};
    use crate::user::{Category, Role, Vehicle};

    const DAY_MS: i64 = crate::history::DAY_MS;

    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(20), "never happened: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn engine(dir: &std::path::Path, clock: &ManualClock, positions_days: Option<u32>) -> Engine {
        let config = EngineConfig {
            positions_days,
            checkpoint_every_records: 3,
            idle_wakeup: Duration::from_millis(20),
            ..EngineConfig::default()
        }
        .with_clock(clock.clone())
        .with_ids(RandomIds::seeded(5))
        .with_data_dir(dir);
        Engine::open(config).unwrap()
    }

    fn user(engine: &Engine, role: Role, n: u64) -> UserId {
        let vehicle = (role == Role::Driver).then(|| Vehicle::new(Category::new("economy").unwrap(), format!("D {n}")));
        let new = NewUser { id: None, role, name: format!("u{n}"), phone: format!("+2010{n:08}"), vehicle };
        engine.create_user(Actor::Admin, new).unwrap().id
    }

    fn at(m: f64) -> LatLng {
        LatLng::new(30.0444 + m / 111_195.08, 31.2357).unwrap()
    }

    /// `positions_days` reaches the tracker: once the engine's clock is past a position's
    /// retention, the tracker prunes it by itself (and counts it), keeping newer ones.
    #[test]
    fn the_tracker_prunes_positions_older_than_positions_days() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(19_700 * DAY_MS + 3_600_000));
        let engine = engine(dir.path(), &clock, Some(1));
        engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap();
        let d = user(&engine, Role::Driver, 1);
        engine.set_driver_status(d, true, Some(at(0.0))).unwrap();
        engine.update_location(d, LocationReport { point: at(50.0), heading_deg: None, speed_mps: None }).unwrap();
        let track = || engine.driver_track(d, Timestamp::from_millis(0), 100).unwrap();
        until("the first positions are recorded", || !track().is_empty());
        assert_eq!(engine.retention_pruned().0, 0, "a day old at most: kept");

        clock.advance_secs(2 * 86_400);
        engine.update_location(d, LocationReport { point: at(100.0), heading_deg: None, speed_mps: None }).unwrap();
        until("old days are pruned and the new position recorded", || {
            let t = track();
            t.len() == 1 && t[0].at == clock.now()
        });
        assert!(engine.retention_pruned().0 >= 1);
        engine.shutdown().unwrap();
    }

    /// Chat retention reaches archived trips: a cancelled trip with a message is archived
    /// by a checkpoint; once the message's retention is up, the checkpoint thread rewrites
    /// the trip's history row without it.
    #[test]
    fn the_checkpoint_thread_prunes_expired_chat_from_archived_trips() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(19_700 * DAY_MS));
        let engine = engine(dir.path(), &clock, None);
        engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap();
        let rider = user(&engine, Role::Rider, 1);
        let d = user(&engine, Role::Driver, 2);
        engine.set_driver_status(d, true, Some(at(100.0))).unwrap();
        let (here, there) = (at(0.0), at(3_000.0));
        let new = dispatch_domain::testkit::cash_ride(here, there);
        let trip = engine.create_trip(rider, new).unwrap().id;
        engine.accept(d, trip).unwrap();
        let post = Command::PostMessage { id: None, trip_id: trip, text: "at the gate".into(), rider_connected: None };
        engine.submit(Actor::User(rider), post).unwrap();
        let cancel = Command::CancelTrip { trip_id: trip, code: crate::trip::CancelReason::Other, reason: "x".into() };
        engine.submit(Actor::User(rider), cancel).unwrap();
        let mut n = 10;
        let mut nudge = || {
            n += 1;
            user(&engine, Role::Rider, n);
        };
        until("the trip is archived", || {
            nudge();
            engine.read(|v| v.trip(trip).is_none())
        });
        assert_eq!(engine.trip(trip).unwrap().messages.len(), 1, "kept in the row while not expired");
        clock.advance_secs(31 * 86_400);
        until("the expired message leaves the row", || {
            nudge();
            engine.trip(trip).unwrap().messages.is_empty()
        });
        assert_eq!(engine.retention_pruned().1, 1);
        engine.shutdown().unwrap();
    }
}
