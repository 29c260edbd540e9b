//! # dispatch-core
//!
//! The domain and the engine of dispatch: no sockets, no HTTP, no files.
//!
//! Every change to the world is a [`Command`], applied by one writer thread in
//! order ([`Engine`]); [`apply`] is a pure function of the state, the command and
//! the instant, so the command log *is* the state. Readers see a [`View`] of the
//! last durable batch and never wait on the writer.
//!
//! ## Layout
//! - [`engine`]: the writer thread, the bounded queue, batching, the typed API.
//! - [`state`]: the live world and [`apply`], with the cross-entity invariants.
//! - [`command`]: every command, the actor who sends it, outcomes and events.
//! - [`trip`]: the trip record and its state machine; [`driver`]: availability.
//! - [`journal`]: group commit of applied commands to the log, recovery, read-only mode.
//! - [`view`]: what readers see.
//! - [`user`]: users, roles, vehicles and categories.
//! - [`id`], [`clock`], [`money`], [`geo`]: typed ids, injected time, integer
//!   money, validated coordinates and great-circle distance.
//! - [`route`]: the distance and duration of a ride ([`route::RouteProvider`]) and the
//!   straight-line default (great circle × detour factor at a city speed).
//! - [`fare`]: the fare formula on integer minor units, waiting and cancellation fees,
//!   coupons and commission; one rounding rule (half up), no floats, overflow is an error.
//! - [`zone`]: zones, their pricing and surge, and the estimate booking locks.
//! - [`ledger`]: double-entry accounts and transfers; [`payment`]: gateways, webhook
//!   signatures, the payment worker, reconciliation.
//! - [`otp`]: sign-in codes and their limits; [`alert`]: SOS alerts.
//! - [`history`]: finished trips and position tracks in the data directory's
//!   `store.redb`, which also holds the checkpoint (the state, its accounts and zones as
//!   rows).
//! - [`demo`]: the demo city's zone and prices.
//! - [`error`]: the one error type, with the API's error codes.
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
//! let car = Vehicle { category: Category::new("economy")?, plate: "ABC 123".into() };
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
//!     id: None, pickup_code: None, kind: TripKind::Ride,
//!     pickup: Place::at(here), dropoff: Place::at(there),
//!     category: Category::new("economy")?, parcel: None, payment_method: PaymentMethod::Cash,
//!     route, coupon: None, bid_minor: None,
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

pub mod alert;
mod checkpoint;
pub mod clock;
pub mod command;
pub mod demo;
pub mod driver;
pub mod engine;
pub mod error;
pub mod fare;
pub mod geo;
pub mod histogram;
pub mod history;
pub mod id;
pub mod journal;
pub mod ledger;
pub mod money;
pub mod otp;
pub mod payment;
pub mod route;
pub mod state;
pub mod trip;
pub mod user;
pub mod view;
pub mod zone;

pub use command::{Actor, Command, DispatchRules, Event, IdempotencyKey, LocationReport, NewTrip, NewUser, Outcome};
pub use driver::{Availability, Driver};
pub use engine::{Engine, EngineConfig, Record, replay};
pub use error::{Error, Result};
pub use geo::LatLng;
pub use history::{TripCursor, TripsOf};
pub use id::{IdSource, RandomIds, TripId, UserId};
pub use journal::{BackupReport, CheckpointStats, LogWrapper, Recovery, backup, restore};
pub use money::{Currency, Money};
pub use state::{State, apply};
pub use trip::{OfferState, PaymentMethod, Place, Trip, TripKind, TripStatus, WithdrawReason};
pub use user::{Category, Role, User, Vehicle};
pub use view::View;
pub use zone::{Catalog, Zone, ZoneSpec};
