//! # dispatch-core
//!
//! The engine runtime of dispatch around its pure domain (`dispatch-domain`): the single
//! writer, the journal, checkpoints, history, the published view and the workers. No
//! sockets, no HTTP: those are the server's.
//!
//! Every change to the world is a [`Command`], applied by one writer thread in
//! order ([`Engine`]); [`apply`] is a pure function of the state, the command and
//! the instant, so the command log *is* the state. Readers see a [`View`] of the
//! last durable batch and never wait on the writer.
//!
//! ## Layout
//! The domain (`dispatch-domain`) is re-exported whole: its modules ([`state`],
//! [`command`], [`trip`], [`driver`], [`user`], [`zone`], [`fare`], [`route`], [`geo`],
//! [`ledger`], [`money`], [`otp`], [`alert`], [`record`], [`demo`]) are reachable from
//! here under the same names. This crate adds the runtime:
//! - [`engine`]: the writer thread, the bounded queue, batching, the typed API.
//! - [`journal`]: group commit of applied commands to the log, recovery, read-only mode,
//!   checkpoints, backup and restore.
//! - [`view`]: the published snapshot readers see.
//! - [`history`]: finished trips and position tracks in the data directory's
//!   `store.redb`, which also holds the checkpoint (the state, its accounts and zones as
//!   rows).
//! - [`payment`]: gateways, the payment worker and reconciliation against the engine
//!   (the payment rules are the domain's, re-exported there).
//! - [`histogram`]: lock-free latency and size histograms for operators.
//! - [`clock`] and [`id`]: the domain's, plus the operating system's clock.
//! - [`error`]: the one error type: a domain refusal or what the runtime adds.
//!
//! ## Example
//!
//! ```
//! use dispatch_core::clock::{ManualClock, Timestamp};
//! use dispatch_core::*;
//!
//! let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
//! let engine = Engine::open(EngineConfig::default().with_clock(clock).with_ids(RandomIds::seeded(1)))?;
//! engine.create_zone(Actor::Admin, demo::cairo()?)?; // prices economy rides in Cairo
//! let car = Vehicle::new(Category::new("economy")?, "ABC 123");
//! let driver = engine.create_user(Actor::Admin, NewUser {
//!     id: None, role: Role::Driver, name: "Omar".into(), phone: "+201000000001".into(), vehicle: Some(car),
//! })?;
//! let rider = engine.create_user(Actor::Admin, NewUser {
//!     id: None, role: Role::Rider, name: "Amal".into(), phone: "+201000000002".into(), vehicle: None,
//! })?;
//! let here = LatLng::new(30.0444, 31.2357)?;
//! engine.set_driver_status(driver.id, true, Some(here))?;
//!
//! let there = LatLng::new(30.06, 31.25)?;
//! let route = route::StraightLine::default().between(here, there); // or a road router
//! let trip = engine.create_trip(rider.id, NewTrip {
//!     id: None, pickup_code: None, reference: None, kind: TripKind::Ride,
//!     pickup: Place::at(here), dropoff: Place::at(there), stops: vec![],
//!     category: Category::new("economy")?, parcel: None, payment_method: PaymentMethod::Cash,
//!     route, coupon: None, bid_minor: None, scheduled_at: None,
//! })?;
//! let b = trip.fare.estimate_breakdown; // API.md's formula: the lines add up to the price
//! assert_eq!(b.base_minor + b.distance_minor + b.time_minor + b.surge_minor + b.minimum_fill_minor
//!     + b.booking_fee_minor + b.extra_fee_minor - b.discount_minor, trip.fare.estimate_minor);
//! assert_eq!(engine.offers_for(driver.id).len(), 1, "the nearby driver is offered the trip");
//!
//! let trip = engine.accept(driver.id, trip.id)?;
//! assert_eq!(trip.status, TripStatus::Accepted);
//! engine.arrived(driver.id, trip.id)?;
//! engine.start(driver.id, trip.id, &trip.pickup_code.to_string())?;
//! let done = engine.complete(driver.id, trip.id, Some(8_230))?;
//! assert_eq!(done.status, TripStatus::Completed);
//! engine.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod checkpoint;
pub mod clock;
pub mod engine;
pub mod error;
pub mod histogram;
pub mod history;
pub mod journal;
pub mod leadership;
pub mod payment;
pub mod view;
// ----- issue 20: H -----
pub mod reports;
pub mod trip_index;

/// Typed ids and the id source (the domain's); the engine seeds [`RandomIds`] from the
/// operating system.
pub mod id {
    pub use dispatch_domain::id::*;
}

pub use dispatch_domain::{
    alert, application, chat, command, demo, driver, fare, geo, hooks, ledger, money, otp, outbox, payout, record,
    route, schedule, share, state, templates, trip, trip_ref, user, user_index, zone,
};
// ----- issue 20: S -----
pub use dispatch_domain::staff;

// ----- issue 20: A -----
pub use dispatch_domain::{audit, settings};

// ----- issue 22 -----
pub use dispatch_domain::{matching, rules};

pub use command::{Actor, Command, DispatchRules, Event, IdempotencyKey, LocationReport, NewTrip, NewUser, Outcome};
pub use driver::{Availability, Driver};
pub use engine::{Engine, EngineConfig};
pub use error::{DomainError, Error, Result};
pub use geo::LatLng;
pub use history::{TripCursor, TripsOf};
pub use id::{IdSource, RandomIds, TripId, UserId};
pub use journal::{BackupReport, CheckpointStats, DOCUMENTS_DIR, LogOpener, LogWrapper, Recovery, backup, restore};
pub use leadership::Leadership;
pub use money::{Currency, Money};
pub use record::{Record, replay};
pub use state::{State, apply};
pub use trip::{OfferState, PaymentMethod, Place, Trip, TripKind, TripStatus, WithdrawReason};
pub use user::{Category, Role, User, Vehicle};
pub use view::View;
pub use zone::{Catalog, Zone, ZoneSpec};
