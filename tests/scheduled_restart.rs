//! Rides booked ahead through restarts of a real engine: an `Engine` over a data directory
//! (WAL and checkpoints) on a manual clock, closed and reopened at random points while time
//! moves in random steps. The deadline that starts the dispatch is state: after any restart
//! the ride is still `scheduled` before `scheduled_at − schedule_lead_s`, becomes
//! `searching` at the first tick at or after it — never before, once — and a rider's cancel
//! before then is free.

use std::path::Path;

use dispatch::scenario::{self, near_center, ride_from};
use dispatch_core::clock::Clock;
use dispatch_core::clock::{ManualClock, Timestamp};
use dispatch_core::{Actor, DispatchRules, Engine, EngineConfig, RandomIds, Role, TripStatus};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;

fn open(dir: &Path, clock: &ManualClock) -> Engine {
    let config = EngineConfig { checkpoint_every_records: 10, ..EngineConfig::default() }
        .with_clock(clock.clone())
        .with_ids(RandomIds::seeded(17))
        .with_data_dir(dir);
    Engine::open(config).unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    /// The clock moves on by this many seconds; then a tick.
    Advance(i64),
    /// The clock moves to `dispatch_at + offset` seconds if that is ahead; then a tick.
    Near(i64),
    /// The engine is shut down and opened again on the same directory.
    Restart,
    /// The rider cancels.
    Cancel,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1i64..=400).prop_map(Step::Advance),
        2 => (-2i64..=2).prop_map(Step::Near),
        3 => Just(Step::Restart),
        1 => Just(Step::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn a_ride_booked_ahead_dispatches_once_at_the_lead_through_engine_restarts(
        ahead_s in 900i64..=1_800,
        steps in proptest::collection::vec(step(), 1..14),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let mut engine = open(dir.path(), &clock);
        scenario::ensure_zone(&engine).unwrap();
        let rider = scenario::user(&engine, Role::Rider, 1).unwrap();
        let mut new = ride_from(near_center(0.0, 0.0).unwrap()).unwrap();
        new.scheduled_at = Some(clock.now().plus_millis(ahead_s * 1000));
        let trip = engine.create_trip(rider, new).unwrap();
        prop_assert_eq!(trip.status, TripStatus::Scheduled);
        let rules = DispatchRules::default();
        let dispatch_at = trip.scheduled_at.unwrap().plus_millis(-i64::from(rules.schedule_lead_s) * 1000);
        // (searching since, cancelled): the model.
        let mut searching_since: Option<Timestamp> = None;
        let mut cancelled = false;
        for s in &steps {
            let target = match *s {
                Step::Advance(secs) => Some(clock.now().plus_millis(secs * 1000)),
                Step::Near(offset) => Some(dispatch_at.plus_millis(offset * 1000)).filter(|t| *t > clock.now()),
                _ => None,
            };
            if let Some(at) = target {
                clock.set(at);
                engine.tick().unwrap();
                if !cancelled && searching_since.is_none() && at >= dispatch_at {
                    searching_since = Some(at);
                }
            }
            match s {
                Step::Restart => {
                    engine.shutdown().unwrap();
                    engine = open(dir.path(), &clock);
                }
                Step::Cancel => {
                    let expired = searching_since.is_some_and(|since| clock.now() >= since.plus_secs(rules.timeout_s));
                    let r = engine.cancel(Actor::User(rider), trip.id, "plans changed");
                    prop_assert_eq!(r.is_ok(), !cancelled && !expired, "{:?}", r);
                    if let Ok(t) = r {
                        prop_assert_eq!(t.fare.cancel_fee_minor, None, "no driver ever had it: free");
                    }
                    // An expired ride stays expired; any other is cancelled from here on.
                    cancelled |= !expired;
                }
                _ => {}
            }
            let t = engine.trip(trip.id).unwrap();
            match (cancelled, searching_since) {
                (true, _) => prop_assert_eq!(t.status, TripStatus::Cancelled),
                (false, None) => {
                    prop_assert_eq!(t.status, TripStatus::Scheduled, "before {:?} at {:?}", dispatch_at, clock.now());
                    prop_assert!(t.offers.is_empty());
                }
                (false, Some(since)) => {
                    // Nobody is near: it searches until `timeout_s` after the dispatch.
                    let expired = clock.now() >= since.plus_secs(rules.timeout_s);
                    let expected = if expired { TripStatus::Expired } else { TripStatus::Searching };
                    prop_assert_eq!(t.status, expected);
                    prop_assert_eq!(t.searching_since, since, "the search began at the first tick past the lead, once");
                    prop_assert_eq!(t.nearby_drivers, Some(0));
                }
            }
        }
        engine.shutdown().unwrap();
    }
}
