//! Outbound webhooks (`hooks.rs`): endpoints, which commands announce which events, the
//! per-subject order, the worker's reports, windows, pruning and resends; and a proptest
//! of the promise over random interleavings with restarts.

use proptest::prelude::*;

use super::*;
use crate::hooks::{Delivery, DeliveryStatus, EventType, GIVE_UP_S, HookOutcome, KEPT_S, validate_secret};
use crate::id::{EndpointId, EventId};
use crate::record::Record;
use crate::schedule::HookSchedule;

fn endpoint(w: &mut World, events: &[&str]) -> Result<EndpointId> {
    let cmd = Command::CreateWebhookEndpoint {
        id: None,
        secret: None,
        url: "https://hooks.example.com/in".into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        description: Some("crm".into()),
    };
    match w.run(Actor::Admin, cmd)? {
        Outcome::WebhookEndpoint(e) => Ok(e.id),
        o => panic!("{o:?}"),
    }
}

/// An endpoint's deliveries, oldest event first.
fn deliveries(w: &World, e: EndpointId) -> Vec<Arc<Delivery>> {
    let mut all = w.state.hooks().deliveries_of(e, None, usize::MAX);
    all.reverse();
    all
}

fn types(w: &World, e: EndpointId) -> Vec<&'static str> {
    deliveries(w, e).iter().map(|d| d.event.kind.as_str()).collect()
}

fn report(w: &mut World, e: EndpointId, event: EventId, attempt: u32, outcome: HookOutcome) -> Result<Outcome> {
    w.run(Actor::System, Command::WebhookAttempted { endpoint_id: e, event_id: event, attempt, outcome })
}

fn delivered() -> HookOutcome {
    HookOutcome::Delivered { status_code: 200 }
}

#[test]
fn endpoints_are_made_by_admins_with_checked_input_and_a_secret() {
    let mut w = World::new(rules());
    let support = w.user(Role::Support, None);
    let cmd = |url: &str, events: &[&str]| Command::CreateWebhookEndpoint {
        id: None,
        secret: None,
        url: url.into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        description: None,
    };
    assert!(matches!(w.run(Actor::User(support), cmd("https://x.example", &["*"])), Err(Error::Forbidden(_))));
    assert!(w.run(Actor::Admin, cmd("ftp://x.example", &["*"])).is_err());
    assert!(w.run(Actor::Admin, cmd("https://x.example", &["trip.flown"])).is_err());
    assert!(w.run(Actor::Admin, cmd("https://x.example", &[])).is_err());
    let e = endpoint(&mut w, &["trip.*"]).unwrap();
    let made = Arc::clone(w.state.hooks().endpoint(e).unwrap());
    validate_secret(&made.secret).unwrap();
    let other = endpoint(&mut w, &["*"]).unwrap();
    assert_ne!(w.state.hooks().endpoint(other).unwrap().secret, made.secret, "every endpoint its own secret");

    let gone = Command::DeleteWebhookEndpoint { endpoint_id: e };
    assert!(matches!(w.run(Actor::User(support), gone.clone()), Err(Error::Forbidden(_))));
    w.run(Actor::Admin, gone.clone()).unwrap();
    assert!(matches!(w.run(Actor::Admin, gone), Err(Error::NotFound { .. })));
    w.finish();
}

#[test]
fn a_trip_announces_each_step_once_to_the_endpoints_that_want_it() {
    let mut w = World::new(rules());
    // Nothing is announced, nor compared, without an endpoint.
    complete_a_trip(&mut w);
    assert_eq!(w.state.hooks().pending(), 0);

    let all = endpoint(&mut w, &["*"]).unwrap();
    let done = endpoint(&mut w, &["trip.completed", "sos.*"]).unwrap();
    let (_, d, trip) = complete_a_trip(&mut w);
    assert_eq!(
        types(&w, all),
        ["trip.created", "trip.accepted", "trip.arrived", "trip.started", "trip.completed", "payment.captured"],
        "a cash trip is captured when it completes"
    );
    assert_eq!(types(&w, done), ["trip.completed"]);
    let (a, b) = (deliveries(&w, all), deliveries(&w, done));
    assert_eq!(a[4].event.id, b[0].event.id, "one event, the same id at every endpoint");
    match &b[0].event.data {
        crate::hooks::EventData::Trip(t) => {
            assert_eq!(t.id, trip);
            assert_eq!(t.status, crate::trip::TripStatus::Completed, "the object as it was then");
        }
        other => panic!("{other:?}"),
    }
    // A rating changes the trip but not its status: nothing more.
    w.run(Actor::User(d), Command::RateTrip { trip_id: trip, stars: 5, comment: None }).ok();
    assert_eq!(types(&w, all).len(), 6);

    // A suspension is announced once, when it happens.
    let suspend = |on: bool| Command::SetDriverSuspended { driver_id: d, suspended: on, reason: "docs".into() };
    w.run(Actor::Admin, suspend(true)).unwrap();
    w.run(Actor::Admin, suspend(true)).unwrap();
    assert_eq!(types(&w, all).iter().filter(|t| **t == "driver.suspended").count(), 1);
    w.finish();
}

#[test]
fn a_card_trip_announces_the_capture_and_each_confirmed_refund() {
    use crate::payment::PaymentEventKind as K;
    let mut w = World::new(rules());
    let pay = endpoint(&mut w, &["payment.*"]).unwrap();
    let rider = w.rider();
    let d = w.driver(0.5);
    let mut new = w.new_trip();
    new.payment_method = crate::trip::PaymentMethod::Card;
    let Outcome::Trip(t) = w.run(Actor::User(rider), Command::CreateTrip(new)).unwrap() else { panic!() };
    let trip = t.id;
    let event = |id: &str, kind: K, amount_minor: i64| Command::PaymentEvent {
        gateway: "sim".into(),
        event_id: id.into(),
        kind,
        trip_id: trip,
        amount_minor,
        currency: t.fare.currency,
        archived: None,
    };
    w.accept(d, trip).unwrap();
    w.run(Actor::System, event("evt_auth", K::Authorized, t.fare.estimate_minor)).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.drive(d, 8230.0, 960);
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: Some(8230), dropoff: None }).unwrap();
    let fare = w.get(trip).fare.final_minor.unwrap();
    w.run(Actor::System, event("evt_cap", K::Captured, fare)).unwrap();
    // The same event again is a duplicate: nothing more.
    w.run(Actor::System, event("evt_cap", K::Captured, fare)).unwrap();
    assert_eq!(types(&w, pay), ["payment.captured"]);
    for (i, amount) in [1000, 500].into_iter().enumerate() {
        let refund = Command::Refund { id: None, trip_id: trip, amount_minor: amount, reason: "detour".into() };
        w.run(Actor::Admin, refund).unwrap();
        assert_eq!(types(&w, pay).len(), 1 + i, "a refund asked for is not yet a refund");
        w.run(Actor::System, event(&format!("evt_r{i}"), K::RefundSucceeded, amount)).unwrap();
    }
    assert_eq!(types(&w, pay), ["payment.captured", "payment.refunded", "payment.refunded"]);
    w.finish();
}

#[test]
fn a_line_waits_for_its_head_and_reports_move_it_on() {
    let mut w = World::new(rules());
    let e = endpoint(&mut w, &["trip.*"]).unwrap();
    complete_a_trip(&mut w);
    let line = deliveries(&w, e);
    assert_eq!(line.len(), 5, "the trip's five steps");
    // What the worker's order, built afresh, takes now.
    let due = |w: &World| {
        HookSchedule::of(w.state.hooks())
            .take_due(w.state.hooks(), w.now, 100)
            .iter()
            .map(|d| d.event.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due(&w), [line[0].event.id], "only the oldest of a subject is due");

    // The second may not be reported while the first is pending; a stale attempt neither.
    assert!(report(&mut w, e, line[1].event.id, 1, delivered()).is_err());
    assert!(report(&mut w, e, line[0].event.id, 2, delivered()).is_err());
    let retry_at = w.now.plus_secs(30);
    let retry = HookOutcome::Retry { status_code: Some(503), error: "503".into(), next_attempt_at: retry_at };
    report(&mut w, e, line[0].event.id, 1, retry).unwrap();
    assert!(due(&w).is_empty(), "not before its retry");
    w.advance(30);
    assert_eq!(due(&w), [line[0].event.id]);
    report(&mut w, e, line[0].event.id, 2, delivered()).unwrap();
    assert!(report(&mut w, e, line[0].event.id, 3, delivered()).is_err(), "delivered once");
    assert_eq!(due(&w), [line[1].event.id], "the next of the line is due at once");
    let refused = HookOutcome::Rejected { status_code: Some(410), error: "gone".into() };
    report(&mut w, e, line[1].event.id, 1, refused).unwrap();
    let d = w.state.hooks().delivery(e, line[1].event.id).unwrap();
    assert_eq!((d.status, d.last_status_code, d.attempts), (DeliveryStatus::Failed, Some(410), 1));
    assert_eq!(due(&w), [line[2].event.id], "a failed one lets the line go on");

    // Another trip's line runs beside it.
    complete_a_trip(&mut w);
    assert_eq!(due(&w).len(), 2);
    w.finish();
}

#[test]
fn windows_end_after_three_days_finished_ones_leave_and_a_resend_starts_again() {
    let mut w = World::new(rules());
    let e = endpoint(&mut w, &["trip.created"]).unwrap();
    let rider = w.rider();
    w.trip(rider);
    let first = deliveries(&w, e)[0].event.id;
    let resend = Command::ResendWebhook { endpoint_id: e, event_id: first };
    assert!(matches!(w.run(Actor::Admin, resend.clone()), Err(Error::InvalidTransition { .. })), "still pending");
    w.advance(i64::from(GIVE_UP_S) - 1);
    assert_eq!(w.state.hooks().pending(), 1);
    w.advance(1);
    let d = w.state.hooks().delivery(e, first).unwrap();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.last_error.as_deref(), Some("not delivered within 3 days"));

    // An admin sends it again: pending, due now, its tries counted on.
    let Outcome::WebhookDelivery(d) = w.run(Actor::Admin, resend).unwrap() else { panic!() };
    assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::Pending, w.now));
    report(&mut w, e, first, 1, delivered()).unwrap();
    w.advance(i64::from(KEPT_S) - 1);
    assert!(w.state.hooks().delivery(e, first).is_some());
    w.advance(1);
    assert!(w.state.hooks().delivery(e, first).is_none(), "pruned 7 days after it finished");
    w.finish();
}

#[test]
fn removing_an_endpoint_removes_its_deliveries_and_leaves_the_others() {
    let mut w = World::new(rules());
    let a = endpoint(&mut w, &["*"]).unwrap();
    let b = endpoint(&mut w, &["*"]).unwrap();
    complete_a_trip(&mut w);
    w.run(Actor::Admin, Command::DeleteWebhookEndpoint { endpoint_id: a }).unwrap();
    assert!(deliveries(&w, a).is_empty());
    assert_eq!(deliveries(&w, b).len(), 6);
    assert_eq!(w.state.hooks().pending(), 6);
    w.finish();
}

#[derive(Debug, Clone)]
enum Op {
    /// A rider books; a driver accepts, then completes (or staff cancel).
    Ride { complete: bool },
    /// Report on the `i`-th due delivery (mod the count), for its next attempt plus `skew`.
    Report { i: usize, skew: i8, answer: u8 },
    /// Report on any delivery (due or not, pending or not) for its next attempt.
    Stray { i: usize },
    /// Send the last report again (a duplicate).
    Duplicate,
    /// A rider books and a driver accepts; the trip stays open (its line waits for more).
    Open,
    /// The `i`-th open trip (mod the count) goes on: the driver arrives (one more event in
    /// its line, made later than the first).
    Arrive { i: usize },
    /// An admin resends the `i`-th finished delivery (mod the count).
    Resend { i: usize },
    /// Time passes.
    Wait(u32),
    /// A restart: the state is read back from its checkpoint encoding.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<bool>().prop_map(|complete| Op::Ride { complete }),
        6 => (any::<usize>(), prop_oneof![3 => Just(0i8), 1 => -1i8..=1], 0u8..10).prop_map(|(i, skew, answer)| Op::Report { i, skew, answer }),
        1 => any::<usize>().prop_map(|i| Op::Stray { i }),
        1 => Just(Op::Duplicate),
        1 => Just(Op::Open),
        1 => any::<usize>().prop_map(|i| Op::Arrive { i }),
        1 => any::<usize>().prop_map(|i| Op::Resend { i }),
        2 => prop_oneof![Just(1u32), Just(60), Just(3_600), Just(GIVE_UP_S / 2)].prop_map(Op::Wait),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For any interleaving of trips, reports (delivered, retry, rejected; duplicates,
    /// stale attempts, reports out of line), time and restarts: every delivery ends
    /// delivered or failed, none is delivered twice in the log's view, and each endpoint
    /// gets a trip's events delivered in the order they happened.
    #[test]
    fn every_delivery_ends_delivered_or_failed_once_and_in_order(ops in prop::collection::vec(op(), 1..40)) {
        let mut w = World::new(rules());
        let endpoints = [endpoint(&mut w, &["*"]).unwrap(), endpoint(&mut w, &["trip.completed", "trip.cancelled"]).unwrap()];
        let mut last: Option<Command> = None;
        let mut near = 0.3;
        // Every event's subject, kept while its deliveries may be pruned.
        let mut subjects: BTreeMap<EventId, u64> = BTreeMap::new();
        // The readers' copy, following the state entry by entry as the view does, and the
        // webhook worker's order following it as the worker follows the view's, told of
        // each try it "made".
        let mut readers = w.state.hooks().for_readers();
        let mut synced = w.fx.deliveries.len();
        let mut schedule = HookSchedule::of(&readers);
        // Trips left open, with their drivers.
        let mut open: Vec<(TripId, UserId)> = Vec::new();
        // How often staff resent each delivery (each may deliver it once more, out of line).
        let mut resent: BTreeMap<(EndpointId, EventId), usize> = BTreeMap::new();
        for op in ops {
            readers.sync_from(w.state.hooks(), &w.fx.deliveries[synced..], true);
            synced = w.fx.deliveries.len();
            prop_assert_eq!(&readers, &w.state.hooks().for_readers(), "the readers' copy drifted");
            readers.check().map_err(TestCaseError::fail)?;
            prop_assert_eq!((readers.pending(), readers.oldest_pending()), (w.state.hooks().pending(), w.state.hooks().oldest_pending()));
            schedule.follow(&readers);
            schedule.check(&readers, |_| false).map_err(TestCaseError::fail)?;
            // What it would take now is exactly the heads due now.
            let heads_due = |w: &World| {
                let mut due: Vec<(EndpointId, EventId)> = w.state.hooks().heads().filter(|d| d.next_attempt_at <= w.now).map(|d| (d.endpoint_id, d.event.id)).collect();
                due.sort_unstable();
                due
            };
            let mut taken: Vec<(EndpointId, EventId)> = schedule.clone().take_due(&readers, w.now, usize::MAX).iter().map(|d| (d.endpoint_id, d.event.id)).collect();
            taken.sort_unstable();
            prop_assert_eq!(taken, heads_due(&w), "the worker's order takes the heads due");
            for e in endpoints {
                for d in deliveries(&w, e) {
                    subjects.insert(d.event.id, d.event.subject);
                }
            }
            match op {
                Op::Open => {
                    near += 0.01;
                    let d = w.driver(near);
                    let rider = w.rider();
                    let t = w.trip(rider);
                    if w.accept(d, t).is_ok() {
                        open.push((t, d));
                    }
                }
                Op::Arrive { i } => {
                    if open.is_empty() { continue; }
                    let (t, d) = open.remove(i % open.len());
                    let _ = w.run(Actor::User(d), Command::DriverArrived { trip_id: t });
                }
                Op::Resend { i } => {
                    let finished: Vec<Arc<Delivery>> = endpoints.iter().flat_map(|e| deliveries(&w, *e)).filter(|d| d.status != DeliveryStatus::Pending).collect();
                    if finished.is_empty() { continue; }
                    let d = &finished[i % finished.len()];
                    let resend = Command::ResendWebhook { endpoint_id: d.endpoint_id, event_id: d.event.id };
                    prop_assert!(w.run(Actor::Admin, resend).is_ok(), "a finished delivery is resent");
                    *resent.entry((d.endpoint_id, d.event.id)).or_default() += 1;
                }
                Op::Ride { complete } => {
                    near += 0.01;
                    let d = w.driver(near);
                    let rider = w.rider();
                    let t = w.trip(rider);
                    let _ = w.accept(d, t);
                    if complete {
                        let _ = w.run(Actor::User(d), Command::DriverArrived { trip_id: t });
                        let code = w.get(t).pickup_code.to_string();
                        let _ = w.run(Actor::User(d), Command::StartTrip { trip_id: t, pickup_code: code });
                        let _ = w.run(Actor::User(d), Command::CompleteTrip { trip_id: t, distance_m: None, dropoff: None });
                    } else {
                        let cancel = Command::CancelTrip { trip_id: t, code: crate::trip::CancelReason::Other, reason: String::new() };
                        let _ = w.run(Actor::Admin, cancel);
                    }
                }
                Op::Report { i, skew, answer } => {
                    let due: Vec<Arc<Delivery>> = w.state.hooks().heads().filter(|d| d.next_attempt_at <= w.now).cloned().collect();
                    if due.is_empty() { continue; }
                    let d = &due[i % due.len()];
                    let attempt = (i64::from(d.attempts) + 1 + i64::from(skew)).max(0) as u32;
                    let outcome = match answer {
                        0..=4 => HookOutcome::Delivered { status_code: 200 + u16::from(answer) },
                        5..=8 => HookOutcome::Retry { status_code: Some(503), error: "503".into(), next_attempt_at: w.now.plus_secs(1 + u32::from(answer)) },
                        _ => HookOutcome::Rejected { status_code: Some(400), error: "400".into() },
                    };
                    let retry = match &outcome { HookOutcome::Retry { next_attempt_at, .. } => Some(*next_attempt_at), _ => None };
                    let cmd = Command::WebhookAttempted { endpoint_id: d.endpoint_id, event_id: d.event.id, attempt, outcome };
                    let applied = w.run(Actor::System, cmd.clone()).is_ok();
                    // The worker looks at the line again, and puts a retry back at its time.
                    schedule.tried(d);
                    if let (true, Some(at)) = (applied, retry) {
                        schedule.put(d.endpoint_id, d.event.id, at);
                    }
                    last = Some(cmd);
                }
                Op::Stray { i } => {
                    let all: Vec<Arc<Delivery>> = endpoints.iter().flat_map(|e| deliveries(&w, *e)).collect();
                    if all.is_empty() { continue; }
                    let d = &all[i % all.len()];
                    // The head of its line, whenever its next try is.
                    let due = w.state.hooks().heads().any(|x| Arc::ptr_eq(x, d));
                    let cmd = Command::WebhookAttempted { endpoint_id: d.endpoint_id, event_id: d.event.id, attempt: d.attempts + 1, outcome: delivered() };
                    let applied = w.run(Actor::System, cmd).is_ok();
                    schedule.tried(d);
                    prop_assert!(!applied || due, "a delivery behind another of its line was reported");
                }
                Op::Duplicate => {
                    if let Some(cmd) = last.clone() {
                        prop_assert!(w.run(Actor::System, cmd).is_err(), "a duplicate report was applied");
                    }
                }
                Op::Wait(s) => w.advance(i64::from(s)),
                Op::Restart => {
                    let mut back: State = postcard::from_bytes(&postcard::to_allocvec(&w.state).unwrap()).unwrap();
                    let rows = back.take_rows();
                    back.put_rows(rows);
                    prop_assert_eq!(&back, &w.state);
                    w.state = back;
                }
            }
        }
        // Past every window (twice: the first Tick may expire trips, and announce it):
        // nothing is pending any more.
        w.advance(i64::from(GIVE_UP_S));
        w.advance(i64::from(GIVE_UP_S));
        prop_assert_eq!(w.state.hooks().pending(), 0);
        for e in endpoints {
            let mut delivered_seq: BTreeMap<u64, u64> = BTreeMap::new();
            for r in &w.log {
                if let Command::WebhookAttempted { endpoint_id, event_id, outcome: HookOutcome::Delivered { .. }, .. } = &r.command
                    && *endpoint_id == e
                    && !resent.contains_key(&(e, *event_id))
                {
                    let seq = crate::hooks::event_seq(*event_id);
                    if let Some(prev) = delivered_seq.insert(subjects[event_id], seq) {
                        prop_assert!(prev < seq, "{} delivered after a later event of its trip", event_id);
                    }
                }
            }
            for d in deliveries(&w, e) {
                prop_assert!(matches!(d.status, DeliveryStatus::Delivered | DeliveryStatus::Failed));
                let reports: Vec<&Record> = w.log.iter().filter(|r| matches!(&r.command, Command::WebhookAttempted { endpoint_id, event_id, .. } if *endpoint_id == e && *event_id == d.event.id)).collect();
                let ok = reports.iter().filter(|r| matches!(&r.command, Command::WebhookAttempted { outcome: HookOutcome::Delivered { .. }, .. })).count();
                let again = resent.get(&(e, d.event.id)).copied().unwrap_or(0);
                prop_assert!(ok <= 1 + again, "{} delivered {ok} times, resent {again} times", d.event.id);
                if again == 0 {
                    prop_assert_eq!(d.status == DeliveryStatus::Delivered, ok == 1);
                }
                prop_assert_eq!(reports.len() as u32, d.attempts, "every applied report counted once");
            }
        }
        // The second endpoint heard only what it asked for.
        for d in deliveries(&w, endpoints[1]) {
            prop_assert!(matches!(d.event.kind, EventType::TripCompleted | EventType::TripCancelled));
        }
        w.finish();
    }
}
