//! Card payments end to end: the engine asks (payment.due), the worker calls the
//! gateway and reports back, the ledger balances, and nothing is captured twice —
//! also when the gateway fails and calls are retried. Approved payouts go through the
//! gateway's `payout` call once each, and a gateway that cannot pay out fails them.

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
    assert_eq!(dead[0].0, trip);
    assert_eq!(dead[0].1.attempts, 3);
    // Still owed (an authorisation, or the capture of the final fare), for operators.
    assert!(engine.trip(trip).unwrap().payment.due.is_some());
    assert_ne!(engine.trip(trip).unwrap().payment.status, PaymentStatus::Captured);
    assert!(gateway.captured().is_empty());
    assert!(engine.read(|v| v.ledger_verify()).balanced);
    worker.stop();
}

#[test]
fn reconciliation_lists_every_difference_with_the_gateway() {
    use dispatch_core::payment::{Mismatch, MismatchKind, SettlementRow, Side, reconcile};
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
    let agree = dispatch_core::payment::parse_settlement(&gateway.settlement_csv(egp)).unwrap();
    let r = reconcile(trips.iter().map(|t| &**t), &agree);
    assert_eq!((r.matched, r.mismatches), (2, vec![]), "the sim gateway's own report agrees");
    let stranger = TripId::from_raw(99).unwrap();
    let row = |trip_id, amount_minor, status| SettlementRow { trip_id, amount_minor, currency: egp, status };
    let report = vec![row(a, fare_a - 1, None), row(stranger, 500, None)];
    let found = reconcile(trips.iter().map(|t| &**t), &report);
    let captured = |amount_minor| Some(Side { amount_minor, currency: egp, status: Some(PaymentStatus::Captured) });
    let expected = vec![
        Mismatch {
            kind: MismatchKind::AmountDiffers,
            trip_id: a,
            ledger: captured(fare_a),
            gateway: Some(Side { amount_minor: fare_a - 1, currency: egp, status: None }),
        },
        Mismatch { kind: MismatchKind::MissingAtGateway, trip_id: b, ledger: captured(fare_b), gateway: None },
        Mismatch {
            kind: MismatchKind::MissingInLedger,
            trip_id: stranger,
            ledger: None,
            gateway: Some(Side { amount_minor: 500, currency: egp, status: None }),
        },
    ];
    let mut found = found.mismatches;
    found.sort_by_key(|m| m.kind);
    let mut expected = expected;
    expected.sort_by_key(|m| m.kind);
    assert_eq!(found, expected);
    // Same amounts, another status: the gateway says refunded, the ledger captured.
    let report = vec![row(a, fare_a, Some(PaymentStatus::Refunded)), row(b, fare_b, Some(PaymentStatus::Captured))];
    let r = reconcile(trips.iter().map(|t| &**t), &report);
    assert_eq!(r.matched, 1);
    assert_eq!(
        r.mismatches.iter().map(|m| (m.kind, m.trip_id)).collect::<Vec<_>>(),
        vec![(MismatchKind::StatusDiffers, a)]
    );
}

#[test]
fn a_card_refund_reaches_the_gateway_through_the_worker_and_reconciles() {
    use dispatch_core::Command;
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (trip, driver) = card_trip(&engine, 1);
    let fare = drive(&engine, trip, driver);
    eventually("the capture", || engine.trip(trip).is_some_and(|t| t.payment.status == PaymentStatus::Captured));
    let refund = |amount_minor| Command::Refund { id: None, trip_id: trip, amount_minor, reason: "detour".into() };
    engine.submit(dispatch_core::Actor::Admin, refund(700)).unwrap();
    eventually("the refund", || {
        engine.trip(trip).is_some_and(|t| t.payment.status == PaymentStatus::PartiallyRefunded)
    });
    let t = engine.trip(trip).unwrap();
    assert_eq!((t.payment.refunded_minor, t.payment.due, t.payment.refunds_pending.len()), (700, None, 0));
    assert_eq!(gateway.refunded().get(&trip), Some(&700), "the gateway gave it back, once");
    // Over the limit: refused before anything reaches the gateway.
    let over = engine.submit(dispatch_core::Actor::Admin, refund(fare - 699));
    assert!(
        matches!(over, Err(dispatch_core::Error::Domain(dispatch_core::DomainError::RefundExceedsCaptured { .. }))),
        "{over:?}"
    );
    worker.stop();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let rows = dispatch_core::payment::parse_settlement(&gateway.settlement_csv(egp)).unwrap();
    let r = dispatch_core::payment::reconcile([&*t], &rows);
    assert_eq!((r.matched, r.mismatches.len()), (1, 0), "{r:?}");
    assert!(engine.read(|v| v.ledger_verify()).balanced);
}

#[test]
fn a_declined_card_fails_and_the_rider_is_offered_cash() {
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (trip, driver) = card_trip(&engine, 1);
    gateway.decline(trip);
    engine.accept(driver, trip).unwrap();
    eventually("the decline", || engine.trip(trip).is_some_and(|t| t.payment.status == PaymentStatus::Failed));
    let t = engine.trip(trip).unwrap();
    assert!(t.payment.cash_offered() && t.payment.due.is_none(), "{:?}", t.payment);
    worker.stop();
}

#[test]
fn dead_letters_survive_a_restart_and_are_not_retried_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = || EngineConfig::default().with_data_dir(dir.path().join("data"));
    let engine = Arc::new(Engine::open(config()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    gateway.set_down(true);
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (trip, driver) = card_trip(&engine, 1);
    engine.accept(driver, trip).unwrap();
    eventually("a dead letter", || !worker.dead_letters().is_empty());
    worker.stop();
    let engine = Arc::try_unwrap(engine).ok().unwrap();
    engine.shutdown().unwrap();

    let engine = Arc::new(Engine::open(config()).unwrap());
    let t = engine.trip(trip).unwrap();
    let dead = t.payment.dead_letter.clone().expect("the dead letter is durable");
    assert_eq!((dead.action.name(), dead.attempts), ("authorize", 3));
    assert!(t.payment.cash_offered());
    let calls = gateway.calls();
    gateway.set_down(false);
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    // The worker runs (another trip is authorised) but leaves the one given up on alone.
    let (other, other_driver) = card_trip(&engine, 3);
    engine.accept(other_driver, other).unwrap();
    eventually("the other authorisation", || {
        engine.trip(other).is_some_and(|t| t.payment.status == PaymentStatus::Authorized)
    });
    assert_eq!(gateway.calls(), calls + 1, "a payment given up on is not started over");
    assert_eq!(engine.trip(trip).unwrap().payment.status, PaymentStatus::Pending);
    assert_eq!(worker.dead_letters().len(), 1);
    worker.stop();
}

/// A driver with `amount` of earnings asks for payouts of `asks`, which staff approve:
/// (driver, the payouts' ids).
fn approved_payouts(
    engine: &Engine,
    n: u64,
    asks: &[i64],
) -> (dispatch_core::UserId, Vec<dispatch_core::id::PayoutId>) {
    use dispatch_core::{Actor, Command, Outcome};
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let driver = scenario::online_driver(engine, n, near_center(0.0, 0.0).unwrap()).unwrap();
    let credit =
        Command::CreditWallet { id: None, user_id: driver, amount_minor: 50_000, currency: egp, reason: "b".into() };
    engine.submit(Actor::Admin, credit).unwrap();
    let ids = asks
        .iter()
        .map(|amount| {
            let ask = Command::RequestPayout { id: None, amount_minor: *amount, currency: egp };
            let Outcome::Payout(p) = engine.submit(Actor::User(driver), ask).unwrap() else { panic!("not a payout") };
            let approve = Command::ReviewPayout { payout_id: p.id, approve: true, reason: String::new() };
            engine.submit(Actor::Admin, approve).unwrap();
            p.id
        })
        .collect();
    (driver, ids)
}

#[test]
fn approved_payouts_are_sent_through_the_gateway_once_and_wait_for_its_webhook() {
    use dispatch_core::payout::PayoutStatus;
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(SimGateway::new());
    // Unavailable for more calls than a card payment's attempts (3): a payout is never
    // given up on, since a call that failed may have reached the gateway.
    gateway.fail_next(7);
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (driver, ids) = approved_payouts(&engine, 1, &[4_000, 1_500]);
    let sent = |id| engine.read(|v| v.book().payouts.get(&id).is_some_and(|p| p.sent_at.is_some()));
    eventually("both payouts sent", || ids.iter().all(|id| sent(*id)));
    let paid = gateway.payouts();
    assert_eq!(
        paid.values().map(|(a, _)| *a).collect::<Vec<_>>().iter().sum::<i64>(),
        5_500,
        "each sent once: {paid:?}"
    );
    assert_eq!(paid.len(), 2);
    // Still processing: only the gateway's webhook says whether it was paid.
    let statuses: Vec<PayoutStatus> = engine.read(|v| ids.iter().map(|id| v.book().payouts[id].status).collect());
    assert_eq!(statuses, [PayoutStatus::Processing, PayoutStatus::Processing]);
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    assert_eq!(engine.read(|v| v.driver_position(driver, egp)).held_minor, 5_500);
    // The sim's settlement report lists them; the ledger has paid nothing yet.
    let report = dispatch_core::payment::reconcile_report(&engine, &gateway.settlement_csv(egp)).unwrap();
    assert_eq!(report.money_mismatches.len(), 2, "{report:?}");
    drop(worker);
}

/// A gateway that charges but cannot pay out (the trait's default `payout`).
struct NoPayouts;

impl dispatch_core::payment::Gateway for NoPayouts {
    fn name(&self) -> &str {
        "sim"
    }
    fn execute(
        &self,
        _: &dispatch_core::payment::GatewayCall,
    ) -> Result<Option<String>, dispatch_core::payment::GatewayError> {
        Ok(None)
    }
}

/// A gateway that makes its own reference for each payment (as Stripe's PaymentIntent
/// id) and remembers what every call named.
#[derive(Default)]
struct WithReferences {
    calls: std::sync::Mutex<Vec<(String, Option<String>)>>,
}

impl dispatch_core::payment::Gateway for WithReferences {
    fn name(&self) -> &str {
        "sim"
    }
    fn execute(
        &self,
        call: &dispatch_core::payment::GatewayCall,
    ) -> Result<Option<String>, dispatch_core::payment::GatewayError> {
        self.calls.lock().unwrap().push((call.action.name().to_owned(), call.reference.clone()));
        Ok(matches!(call.action, dispatch_core::trip::GatewayAction::Authorize { .. }).then(|| "pi_ref_1".to_owned()))
    }
}

#[test]
fn the_gateways_reference_is_kept_on_the_trip_and_named_by_later_calls() {
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let gateway = Arc::new(WithReferences::default());
    let worker = PaymentWorker::start(Arc::clone(&engine), gateway.clone(), quick()).unwrap();
    let (trip, driver) = card_trip(&engine, 1);
    let t = engine.accept(driver, trip).unwrap();
    eventually("the authorisation", || {
        engine.trip(trip).is_some_and(|t| t.payment.status == PaymentStatus::Authorized)
    });
    assert_eq!(engine.trip(trip).unwrap().payment.gateway_ref.as_deref(), Some("pi_ref_1"), "recorded with it");
    engine.arrived(driver, trip).unwrap();
    engine.start(driver, trip, &t.pickup_code.to_string()).unwrap();
    engine.complete(driver, trip, Some(4_000)).unwrap();
    eventually("the capture", || engine.trip(trip).is_some_and(|t| t.payment.status == PaymentStatus::Captured));
    worker.stop();
    let calls = gateway.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [("authorize".to_owned(), None), ("capture".to_owned(), Some("pi_ref_1".to_owned()))],
        "the capture names the authorisation's reference"
    );
}

#[test]
fn a_gateway_that_cannot_pay_out_fails_the_payout_and_returns_exactly_what_was_held() {
    use dispatch_core::payout::PayoutStatus;
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    let worker = PaymentWorker::start(Arc::clone(&engine), Arc::new(NoPayouts), quick()).unwrap();
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let (driver, ids) = approved_payouts(&engine, 1, &[4_000]);
    eventually("the payout failed", || engine.read(|v| v.book().payouts[&ids[0]].status == PayoutStatus::Failed));
    let position = engine.read(|v| v.driver_position(driver, egp));
    assert_eq!((position.held_minor, position.withdrawable_minor, position.balance_minor), (0, 50_000, 50_000));
    assert!(engine.read(|v| v.ledger_verify()).balanced);
    drop(worker);
}
