//! Card payments end to end: the engine asks (payment.due), the worker calls the
//! gateway and reports back, the ledger balances, and nothing is captured twice —
//! also when the gateway fails and calls are retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dispatch::scenario::{self, near_center, ride_from};
use dispatch_core::payment::{PaymentWorker, SimGateway, WorkerConfig};
use dispatch_core::trip::PaymentStatus;
use dispatch_core::{Engine, EngineConfig, PaymentMethod, Role, TripId};

fn quick() -> WorkerConfig {
    WorkerConfig {
        interval: Duration::from_millis(5),
        backoff: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        max_attempts: 3,
    }
}

/// Waits (generously: this is a bound, not a speed claim) until `done` holds.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn card_trip(engine: &Engine, n: u64) -> (TripId, dispatch_core::UserId) {
    let rider = scenario::user(engine, Role::Rider, n).unwrap();
    let driver = scenario::online_driver(engine, n + 1, near_center(0.0, 0.0).unwrap()).unwrap();
    let mut new = ride_from(near_center(0.0, 0.0).unwrap()).unwrap();
    new.payment_method = PaymentMethod::Card;
    let trip = engine.create_trip(rider, new).unwrap();
    (trip.id, driver)
}

fn drive(engine: &Engine, trip: TripId, driver: dispatch_core::UserId) -> i64 {
    let t = engine.accept(driver, trip).unwrap();
    engine.arrived(driver, trip).unwrap();
    engine.start(driver, trip, &t.pickup_code.to_string()).unwrap();
    engine.complete(driver, trip, Some(4_000)).unwrap().fare.final_minor.unwrap()
}

#[test]
fn a_card_trip_is_authorised_and_captured_once_through_a_flaky_gateway() {
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    gateway.fail_next(2); // the authorisation fails twice, then works
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (trip, driver) = card_trip(&engine, 1);
    let fare = drive(&engine, trip, driver);
    eventually("the capture", || engine.trip(trip).is_some_and(|t| t.payment.status == PaymentStatus::Captured));
    let t = engine.trip(trip).unwrap();
    assert_eq!((t.payment.captured_minor, t.payment.due), (fare, None));
    assert_eq!(gateway.captured().get(&trip), Some(&fare), "captured once, for the final fare");
    assert!(worker.dead_letters().is_empty());
    let report = engine.read(|v| v.ledger_verify());
    assert!(report.balanced, "{report:?}");
    worker.stop();
}

#[test]
fn a_gateway_that_stays_down_ends_on_the_dead_letter_list_and_charges_nothing() {
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    gateway.set_down(true);
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (trip, driver) = card_trip(&engine, 1);
    // The trip completes although the gateway is down.
    drive(&engine, trip, driver);
    eventually("a dead letter", || !worker.dead_letters().is_empty());
    let dead = worker.dead_letters();
    assert_eq!(dead[0].trip_id, trip);
    assert_eq!(dead[0].attempts, 3);
    // Still owed (an authorisation, or the capture of the final fare), for operators.
    assert!(engine.trip(trip).unwrap().payment.due.is_some());
    assert_ne!(engine.trip(trip).unwrap().payment.status, PaymentStatus::Captured);
    assert!(gateway.captured().is_empty());
    assert!(engine.read(|v| v.ledger_verify()).balanced);
    worker.stop();
}

#[test]
fn reconciliation_lists_every_difference_with_the_gateway() {
    use dispatch_core::payment::{Mismatch, SettlementRow, reconcile};
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (a, da) = card_trip(&engine, 1);
    let (b, db) = card_trip(&engine, 3);
    let fare_a = drive(&engine, a, da);
    let fare_b = drive(&engine, b, db);
    eventually("both captures", || {
        [a, b].iter().all(|t| engine.trip(*t).is_some_and(|t| t.payment.status == PaymentStatus::Captured))
    });
    worker.stop();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let trips: Vec<_> = [a, b].iter().map(|t| engine.trip(*t).unwrap()).collect();
    let agree: Vec<SettlementRow> = gateway
        .captured()
        .into_iter()
        .map(|(trip_id, amount_minor)| SettlementRow { trip_id, amount_minor, currency: egp })
        .collect();
    assert_eq!(reconcile(trips.iter().map(|t| &**t), &agree), vec![], "the sim gateway's own report agrees");
    let stranger = TripId::from_raw(99).unwrap();
    let report = vec![
        SettlementRow { trip_id: a, amount_minor: fare_a - 1, currency: egp },
        SettlementRow { trip_id: stranger, amount_minor: 500, currency: egp },
    ];
    let mut found = reconcile(trips.iter().map(|t| &**t), &report);
    found.sort_by_key(|m| format!("{m:?}"));
    let mut expected = vec![
        Mismatch::AmountDiffers { trip_id: a, ledger_minor: fare_a, gateway_minor: fare_a - 1 },
        Mismatch::MissingAtGateway { trip_id: b, amount_minor: fare_b },
        Mismatch::MissingInLedger { trip_id: stranger, amount_minor: 500 },
    ];
    expected.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(found, expected);
}
