//! Per-zone load shedding: each zone's share of the writer's queue is bounded, so a spike
//! in one city answers `Overloaded` for that city's commands while the others go on.
//!
//! Owns [`ZoneQueue`]: a counter per zone of the commands about it that are in the queue or
//! in the writer's batch (taken at submit, given back when the writer answers), bounded by
//! `zone_queue_share_pct` of `queue_capacity`, and the count of commands shed per zone.
//! A command's zone ([`zone_of`]) is the pickup's zone for a trip's creation and the
//! trip's `zone_id` for a command about a hot trip; other commands (positions, users,
//! staff, trips only in the history) have none and are bounded by the whole queue only.
//!
//! Guarantees:
//! - a slot never leaks: it is a guard ([`ZoneSlot`]) held by the command's reply, so it
//!   is given back when the reply runs, or when the request is dropped unanswered (a full
//!   queue, a shutdown, a panic);
//! - the bound is strict: a taker that finds the zone full gives its increment back
//!   before answering `Overloaded`, so concurrent takers never hold more than the bound;
//! - the label set stays bounded: counters exist only for zones found in the catalog.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::command::Command;
use crate::error::{Error, Result};
use crate::id::ZoneId;
use crate::view::View;

/// One zone's load.
#[derive(Debug, Default)]
struct ZoneLoad {
    /// Commands about the zone taken and not yet answered.
    queued: AtomicU32,
    /// Commands about the zone refused because it held its share.
    shed: AtomicU64,
}

/// A command's place in its zone's share: given back when dropped.
#[derive(Debug)]
pub(super) struct ZoneSlot(Arc<ZoneLoad>);

impl Drop for ZoneSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The zones' shares of the writer's queue.
#[derive(Debug)]
pub(super) struct ZoneQueue {
    /// Most commands one zone may hold in the queue and the batch.
    max: u32,
    zones: RwLock<HashMap<ZoneId, Arc<ZoneLoad>>>,
}

impl ZoneQueue {
    /// A zone may hold `share_pct` percent (1-100) of `queue_capacity`, at least one.
    pub(super) fn new(queue_capacity: usize, share_pct: u8) -> ZoneQueue {
        let share = queue_capacity.saturating_mul(usize::from(share_pct.clamp(1, 100))) / 100;
        ZoneQueue { max: u32::try_from(share.max(1)).unwrap_or(u32::MAX), zones: RwLock::new(HashMap::new()) }
    }

    fn load(&self, zone: ZoneId) -> Arc<ZoneLoad> {
        if let Some(load) = self.zones.read().get(&zone) {
            return Arc::clone(load);
        }
        Arc::clone(self.zones.write().entry(zone).or_default())
    }

    /// A slot in `zone`'s share, or `Overloaded` when the zone holds its share already.
    pub(super) fn take(&self, zone: ZoneId) -> Result<ZoneSlot> {
        let load = self.load(zone);
        if load.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            load.queued.fetch_sub(1, Ordering::AcqRel);
            load.shed.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Overloaded);
        }
        Ok(ZoneSlot(load))
    }

    /// Whether `zone` holds less than its share just now.
    pub(super) fn has_room(&self, zone: ZoneId) -> bool {
        self.queued(zone) < self.max
    }

    /// Commands about `zone` in the queue or the batch just now.
    pub(super) fn queued(&self, zone: ZoneId) -> u32 {
        self.zones.read().get(&zone).map_or(0, |l| l.queued.load(Ordering::Acquire))
    }

    /// Commands refused per zone so far (zones that ever had a command).
    pub(super) fn shed(&self) -> Vec<(ZoneId, u64)> {
        let mut out: Vec<_> = self.zones.read().iter().map(|(z, l)| (*z, l.shed.load(Ordering::Relaxed))).collect();
        out.sort_unstable();
        out
    }
}

/// The zone `command` is about, as the published view says: the pickup's zone for a trip's
/// creation, the trip's zone for a command about a hot trip, else none.
pub(super) fn zone_of(view: &View, command: &Command) -> Option<ZoneId> {
    match command {
        Command::CreateTrip(new) => view.catalog().lookup(new.pickup.point).ok().map(|z| z.id),
        Command::Keyed { command, .. } => zone_of(view, command),
        other => other.trip_id().and_then(|id| view.trip(id)).map(|t| t.zone_id),
    }
}

/// Whether `command` can have a zone (checked before the view's lock is taken, so that
/// positions and the other zone-less commands never take it).
pub(super) fn may_have_zone(command: &Command) -> bool {
    match command {
        Command::CreateTrip(_) => true,
        Command::Keyed { command, .. } => may_have_zone(command),
        other => other.trip_id().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    use dispatch_storage::{CommandLog, Lsn, MemLog, Records, StorageError};

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::command::{Actor, NewTrip, NewUser};
    use crate::engine::{Engine, EngineConfig};
    use crate::geo::LatLng;
    use crate::id::{RandomIds, UserId};
    use crate::state::State;
    use crate::user::Role;

    /// A gate the test closes to stall the writer inside its log append.
    #[derive(Default)]
    struct Gate {
        closed: Mutex<bool>,
        opened: Condvar,
        /// Appends that reached the closed gate.
        waiting: Mutex<u32>,
        arrived: Condvar,
    }

    impl Gate {
        fn set(&self, closed: bool) {
            *self.closed.lock().unwrap() = closed;
            self.opened.notify_all();
        }

        /// Waits until the writer is stalled at the gate.
        fn wait_for_writer(&self) {
            let mut waiting = self.waiting.lock().unwrap();
            while *waiting == 0 {
                waiting = self.arrived.wait_timeout(waiting, Duration::from_secs(10)).unwrap().0;
            }
        }
    }

    /// A log whose appends wait while the gate is closed.
    struct GatedLog {
        inner: MemLog,
        gate: Arc<Gate>,
    }

    impl CommandLog for GatedLog {
        fn append(&mut self, payloads: &[&[u8]]) -> std::result::Result<Lsn, StorageError> {
            let mut closed = self.gate.closed.lock().unwrap();
            if *closed {
                *self.gate.waiting.lock().unwrap() += 1;
                self.gate.arrived.notify_all();
            }
            while *closed {
                closed = self.gate.opened.wait(closed).unwrap();
            }
            drop(closed);
            self.inner.append(payloads)
        }
        fn sync(&mut self) -> std::result::Result<Lsn, StorageError> {
            self.inner.sync()
        }
        fn read_from(&self, from: Lsn) -> std::result::Result<Records<'_>, StorageError> {
            self.inner.read_from(from)
        }
        fn last_lsn(&self) -> Lsn {
            self.inner.last_lsn()
        }
        fn durable_lsn(&self) -> Lsn {
            self.inner.durable_lsn()
        }
        fn release_below(&mut self, lsn: Lsn) -> std::result::Result<(), StorageError> {
            self.inner.release_below(lsn)
        }
    }

    fn rider(engine: &Engine, n: u64) -> UserId {
        let new = NewUser {
            id: None,
            role: Role::Rider,
            name: format!("r{n}"),
            phone: format!("+2011{n:08}"),
            vehicle: None,
        };
        engine.create_user(Actor::Admin, new).unwrap().id
    }

    fn ride(lat: f64, lng: f64) -> NewTrip {
        let here = LatLng::new(lat, lng).unwrap();
        let there = LatLng::new(lat + 0.01, lng).unwrap();
        dispatch_domain::testkit::cash_ride(here, there)
    }

    /// One zone's spike fills its share of the queue (half of 8 here): its next command is
    /// `Overloaded` and counted, while another zone's and a zone-less command are taken;
    /// once the writer drains, the zone is taken again and every counter is back to 0.
    #[test]
    fn a_zone_at_its_share_is_shed_while_other_zones_and_zoneless_commands_go_on() {
        let gate = Arc::new(Gate::default());
        let log = GatedLog { inner: MemLog::new(), gate: Arc::clone(&gate) };
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let config = EngineConfig {
            queue_capacity: 8,
            zone_queue_share_pct: 50,
            idle_wakeup: Duration::from_secs(86_400),
            ..EngineConfig::default()
        }
        .with_clock(clock)
        .with_ids(RandomIds::seeded(7));
        let engine = Engine::open_with_log(config, Box::new(log), State::default()).unwrap();
        // Zone A: the demo box (Cairo); zone B: a box in Alexandria's place, west of it.
        let a = engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap().id;
        let b = engine
            .create_zone(Actor::Admin, crate::demo::zone_spec("Alexandria", [[29.5, 30.8], [30.2, 31.4]]).unwrap())
            .unwrap()
            .id;
        let riders: Vec<UserId> = (1..=8).map(|n| rider(&engine, n)).collect();
        let in_a = || ride(30.0444, 31.2357);
        let in_b = || ride(31.2, 29.9);

        // The writer stalls inside the append of a zone-less command.
        gate.set(true);
        let (tx, answers) = crossbeam_channel::unbounded();
        let send = |actor: Actor, command: Command| {
            let tx = tx.clone();
            engine.submit_with(actor, command, move |r| {
                let _ = tx.send(r.map(|_| ()));
            })
        };
        let blocker =
            NewUser { id: None, role: Role::Rider, name: "x".into(), phone: "+201200000000".into(), vehicle: None };
        send(Actor::Admin, Command::CreateUser(blocker)).unwrap();
        gate.wait_for_writer();

        for r in &riders[..4] {
            send(Actor::User(*r), Command::CreateTrip(in_a())).unwrap();
        }
        assert_eq!(engine.zone_queued(a), 4);
        assert!(!engine.zone_has_room(&Command::CreateTrip(in_a())));
        assert!(engine.zone_has_room(&Command::CreateTrip(in_b())));
        let shed = send(Actor::User(riders[4]), Command::CreateTrip(in_a()));
        assert!(matches!(shed, Err(Error::Overloaded)), "{shed:?}");
        // Keyed, the same.
        let key = crate::command::IdempotencyKey {
            principal: Actor::User(riders[4]),
            key: "k1".into(),
            request_hash: [0; 32],
        };
        let keyed = Command::Keyed { key, archived: None, command: Box::new(Command::CreateTrip(in_a())) };
        assert!(matches!(send(Actor::User(riders[4]), keyed), Err(Error::Overloaded)));
        assert_eq!(engine.zone_queued(a), 4, "a refusal gives its slot back at once");
        send(Actor::User(riders[5]), Command::CreateTrip(in_b())).unwrap();
        assert_eq!(engine.zone_queued(b), 1);
        let zoneless =
            NewUser { id: None, role: Role::Rider, name: "y".into(), phone: "+201200000001".into(), vehicle: None };
        send(Actor::Admin, Command::CreateUser(zoneless)).unwrap();
        // A many-message with one zone-A command is refused whole.
        let many = engine.submit_many_with(vec![(Actor::User(riders[6]), Command::CreateTrip(in_a()))], |_| {});
        assert!(matches!(many, Err(Error::Overloaded)));
        assert_eq!(engine.zone_shed(), {
            let mut want = vec![(a, 3), (b, 0)];
            want.sort_unstable();
            want
        });

        gate.set(false);
        // The blocker, four zone-A trips, one zone-B trip, one user.
        for _ in 0..7 {
            answers.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        }
        assert_eq!((engine.zone_queued(a), engine.zone_queued(b)), (0, 0));
        engine.create_trip(riders[6], in_a()).unwrap();
        assert_eq!(engine.zone_queued(a), 0);
        engine.shutdown().unwrap();
    }

    /// The bound is a share of the queue, at least one command.
    #[test]
    fn the_share_is_a_percentage_of_the_queue_and_at_least_one() {
        assert_eq!(ZoneQueue::new(65_536, 50).max, 32_768);
        assert_eq!(ZoneQueue::new(3, 10).max, 1);
        assert_eq!(ZoneQueue::new(8, 100).max, 8);
        let q = ZoneQueue::new(2, 50);
        let z = ZoneId::from_raw(1).unwrap();
        let slot = q.take(z).unwrap();
        assert!(matches!(q.take(z), Err(Error::Overloaded)));
        drop(slot);
        assert_eq!(q.queued(z), 0);
        let _again = q.take(z).unwrap();
        assert_eq!(q.shed(), vec![(z, 1)]);
    }
}
