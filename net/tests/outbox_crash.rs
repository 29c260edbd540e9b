//! At least once, across a crash (API.md "Notifications": "written to the log before it is
//! sent … a crash never loses one"), at the engine level: an item is made by a logged
//! command; the worker sends it and the process dies before the report (the send hangs,
//! the worker and the engine are dropped without it); the data directory is reopened,
//! the item is still pending, and the worker sends it again — with the same message id,
//! the provider's idempotency key — and it ends `sent`. The black-box `kill -9` test of
//! `dispatchd` is in `notify_dispatchd.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use dispatch_core::command::NewTrip;
use dispatch_core::outbox::{Kind, Platform, Status};
use dispatch_core::route::StraightLine;
use dispatch_core::{
    Actor, Category, Command, Engine, EngineConfig, LatLng, NewUser, Outcome, PaymentMethod, Place, Role, TripKind,
    Vehicle,
};
use dispatch_server::notify::{Message, Provider, SendFuture, SendOutcome};
use dispatch_server::outbox::{Counters, Route, WorkerConfig, run_once};

/// A fake provider: records what it is given; answers `Delivered`, or never (`hang`).
struct Fake {
    sent: Mutex<Vec<Message>>,
    hang: bool,
}

impl Provider for Fake {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        self.sent.lock().push(message.clone());
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            SendOutcome::Delivered { provider_id: Some(format!("fake-{}", message.id)) }
        })
    }
}

fn route_to(fake: &Arc<Fake>) -> Route {
    let fake = Arc::clone(fake);
    Arc::new(move |_| Some(Arc::clone(&fake) as Arc<dyn Provider>))
}

const PICKUP: (f64, f64) = (30.0444, 31.2357);

/// A rider with a device, a trip accepted by a driver: one `trip_accepted` item pending.
fn city(engine: &Engine) {
    engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
    let new_user =
        |role, phone: &str, vehicle| NewUser { id: None, role, name: "Omar".into(), phone: phone.into(), vehicle };
    let rider = engine.create_user(Actor::Admin, new_user(Role::Rider, "+201000000001", None)).unwrap();
    let vehicle = Vehicle {
        category: Category::new("economy").unwrap(),
        plate: "CAI 1".into(),
        make: None,
        model: None,
        color: None,
        year: None,
    };
    let driver = engine.create_user(Actor::Admin, new_user(Role::Driver, "+201000000002", Some(vehicle))).unwrap();
    let here = LatLng::new(PICKUP.0, PICKUP.1).unwrap();
    engine.set_driver_status(driver.id, true, Some(here)).unwrap();
    let register = Command::RegisterDevice { id: None, platform: Platform::Fcm, token: "rider-phone".into() };
    assert!(matches!(engine.submit(Actor::User(rider.id), register).unwrap(), Outcome::Device { created: true, .. }));
    let there = LatLng::new(30.06, 31.25).unwrap();
    let trip = NewTrip {
        id: None,
        pickup_code: None,
        reference: None,
        kind: TripKind::Ride,
        pickup: Place::at(here),
        dropoff: Place::at(there),
        stops: Vec::new(),
        category: Category::new("economy").unwrap(),
        parcel: None,
        payment_method: PaymentMethod::Cash,
        route: StraightLine::default().between(here, there),
        coupon: None,
        bid_minor: None,
        scheduled_at: None,
    };
    let trip = engine.create_trip(rider.id, trip).unwrap();
    engine.accept(driver.id, trip.id).unwrap();
}

fn pending_accepted(engine: &Engine) -> Vec<(String, Status, u32)> {
    engine.read(|v| {
        v.outbox()
            .newest_first(None, |n| n.kind == Kind::TripAccepted, 10)
            .iter()
            .map(|n| (n.id.to_string(), n.status, n.attempts))
            .collect()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn an_item_sent_but_not_reported_before_a_crash_is_sent_again_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || EngineConfig::default().with_data_dir(dir.path());
    let engine = Arc::new(Engine::open(config()).unwrap());
    city(&engine);
    let items = pending_accepted(&engine);
    assert_eq!(items.len(), 1);
    let (id, status, attempts) = items[0].clone();
    assert_eq!((status, attempts), (Status::Pending, 0));

    // The worker sends it; the provider never answers; the process dies (its runtime
    // and every task on it are dropped, the engine with them: no report is made).
    let hanging = Arc::new(Fake { sent: Mutex::new(Vec::new()), hang: true });
    let first = runtime();
    first.block_on(async {
        tokio::spawn(run_once(Arc::clone(&engine), route_to(&hanging), Arc::default(), WorkerConfig::default()));
        for _ in 0..200 {
            if !hanging.sent.lock().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(hanging.sent.lock().len(), 1, "the worker sent it");
    drop(first);
    drop(engine);

    // Reopened: still pending, sent again under the same id, and now reported.
    let engine = Arc::new(Engine::open(config()).unwrap());
    assert_eq!(pending_accepted(&engine), vec![(id.clone(), Status::Pending, 0)]);
    let fake = Arc::new(Fake { sent: Mutex::new(Vec::new()), hang: false });
    let counters = Arc::new(Counters::default());
    let second = runtime();
    let started =
        second.block_on(run_once(Arc::clone(&engine), route_to(&fake), Arc::clone(&counters), WorkerConfig::default()));
    assert_eq!(started, 1);
    let sent = fake.sent.lock().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, id, "the same idempotency key");
    assert_eq!(sent[0].id, hanging.sent.lock()[0].id);
    assert_eq!(sent[0].to, dispatch_server::notify::Recipient::Fcm("rider-phone".into()));
    assert!(sent[0].title.starts_with("Driver found · "), "{}", sent[0].title);
    assert!(sent[0].body.contains("Omar") && sent[0].body.contains("CAI 1"), "{}", sent[0].body);
    assert_eq!(sent[0].data.get("kind").map(String::as_str), Some("trip_accepted"));
    assert_eq!(pending_accepted(&engine), vec![(id.clone(), Status::Sent, 1)]);
    assert_eq!(counters.delivered(dispatch_core::outbox::Channel::Push), 1);

    // A pass with nothing due sends nothing more: delivered once in the log's view.
    let again = second.block_on(run_once(Arc::clone(&engine), route_to(&fake), counters, WorkerConfig::default()));
    assert_eq!(again, 0);
    assert_eq!(fake.sent.lock().len(), 1);
    drop(second);
    drop(engine);
    let engine = Engine::open(config()).unwrap();
    assert_eq!(pending_accepted(&engine), vec![(id, Status::Sent, 1)]);
}

#[test]
fn the_outbox_and_the_devices_survive_a_checkpoint_as_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = EngineConfig::default().with_data_dir(dir.path());
        c.checkpoint_every_records = 25;
        c.wal_segment_bytes = 2048;
        c
    };
    let engine = Engine::open(config()).unwrap();
    city(&engine);
    // Enough commands for checkpoints to be taken after the item was made.
    for i in 0..300u64 {
        let new = NewUser {
            id: None,
            role: Role::Rider,
            name: format!("Rider {i}"),
            phone: format!("+2011{i:08}"),
            vehicle: None,
        };
        engine.create_user(Actor::Admin, new).unwrap();
    }
    let written = engine.stats().checkpoints.written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(written >= 1, "checkpoints written: {written}");
    let before = engine.shutdown().unwrap();
    assert_eq!(before.outbox().len(), 1);

    let engine = Engine::open(config()).unwrap();
    assert!(engine.recovery().base_lsn > 0, "{:?}", engine.recovery());
    let after = engine.query(|s| s.outbox().clone()).unwrap();
    assert_eq!(&after, before.outbox(), "items, devices, the counter and the orders rebuilt from the rows");
    assert_eq!(engine.read(|v| v.outbox().clone()), after, "the view agrees");
    assert_eq!(pending_accepted(&engine).len(), 1);
}
