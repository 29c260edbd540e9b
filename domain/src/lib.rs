//! # dispatch-domain
//!
//! The pure domain of dispatch: the live state of a city, every command that can change
//! it, and [`apply`], the one function that does. No threads, no clock reads, no files,
//! no sockets, no entropy: the same commands at the same instants give the same state,
//! bit for bit, which is what lets a log of [`Record`]s *be* the state.
//!
//! The runtime around it (the single writer, the journal, checkpoints, history, the
//! published view, workers) is `dispatch-core`, which re-exports this crate, so callers
//! name one crate.
//!
//! ## Layout
//! - [`state`]: the live world and [`apply`], with the cross-entity invariants
//!   ([`State::check_invariants`]); [`State::stamp`] fills in a command's fresh ids.
//! - [`command`]: every command, the actor who sends it, outcomes and events.
//! - [`record`]: a command as the log stores it, and [`replay`].
//! - [`trip`]: the trip record and its state machine; [`driver`]: availability.
//! - [`matching`]: batched matching's exact solve of a window and the cost of an offer
//!   that learns from a driver's answers and idle time (issue 22).
//! - [`cancellation`]: who cancelled a trip and why (API.md's reason codes).
//! - [`trip_ref`]: a trip's short reference; [`share`]: share links and when they stop.
//! - [`user`]: users, roles, vehicles and categories, profiles (email, language).
//! - [`id`], [`clock`], [`money`], [`geo`]: typed ids, instants and the clock trait,
//!   integer money, validated coordinates, polygons and the spatial indexes.
//! - [`route`]: the distance and duration of a ride ([`route::RouteProvider`]) and the
//!   straight-line default (great circle × detour factor at a city speed).
//! - [`fare`]: the fare formula on integer minor units, waiting and cancellation fees,
//!   coupons and commission; one rounding rule (half up), no floats, overflow is an error.
//! - [`zone`]: zones, their pricing and surge, and the estimate booking locks.
//! - [`ledger`]: double-entry accounts and transfers; [`payment`]: what gateways report,
//!   webhook signatures, reconciliation.
//! - [`otp`]: sign-in codes and their limits; [`alert`]: SOS alerts.
//! - [`outbox`], [`hooks`]: the notification outbox and outbound webhooks, made by
//!   `apply`; [`schedule`]: the delivery workers' own orders of next tries over them.
//! - [`demo`]: the demo city's zone and prices.
//! - [`error`]: the one error type, with the API's error codes.
//!
//! ## Example
//!
//! ```
//! use dispatch_domain::clock::Timestamp;
//! use dispatch_domain::*;
//!
//! let mut state = State::new(DispatchRules::default());
//! let mut fx = state::Effects::default();
//! let mut ids = RandomIds::seeded(1);
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! let mut run = |state: &mut State, actor, mut command| {
//!     state.stamp(&mut command, &mut ids); // the writer's job: fresh ids, drawn before apply
//!     apply(state, actor, &command, now, &mut fx)
//! };
//! run(&mut state, Actor::Admin, Command::CreateZone { id: None, zone: Box::new(demo::cairo()?) })?;
//! let rider = NewUser {
//!     id: None, role: Role::Rider, name: "Amal".into(), phone: "+201000000002".into(), vehicle: None,
//! };
//! let Outcome::User(rider) = run(&mut state, Actor::Admin, Command::CreateUser(rider))? else { unreachable!() };
//! assert_eq!(state.user(rider.id).map(|u| u.name.as_str()), Some("Amal"));
//! // A refused command changes nothing.
//! let before = state.clone();
//! let again = NewUser { id: None, role: Role::Rider, name: "Amal".into(), phone: "+201000000002".into(), vehicle: None };
//! assert!(run(&mut state, Actor::Admin, Command::CreateUser(again)).is_err());
//! assert_eq!(state, before);
//! state.check_invariants().map_err(Error::Internal)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alert;
pub mod application;
pub mod audit;
pub mod cancellation;
pub mod chat;
pub mod clock;
pub mod command;
pub mod demo;
pub mod driver;
pub mod error;
pub mod fare;
pub mod geo;
pub mod hooks;
pub mod id;
pub mod ledger;
pub mod matching;
pub mod money;
pub mod otp;
pub mod outbox;
pub mod payment;
pub mod payout;
pub mod record;
pub mod route;
pub mod rules;
pub mod schedule;
pub mod settings;
pub mod share;
pub mod staff;
pub mod state;
pub mod templates;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trip;
pub mod trip_payment;
pub mod trip_ref;
pub mod user;
pub mod user_index;
pub mod zone;

pub use command::{Actor, Command, DispatchRules, Event, IdempotencyKey, LocationReport, NewTrip, NewUser, Outcome};
pub use driver::{Availability, Driver};
pub use error::{Error, Result};
pub use geo::LatLng;
pub use id::{IdSource, RandomIds, TripId, UserId};
pub use money::{Currency, Money};
pub use record::{Record, replay};
pub use state::{State, apply};
pub use trip::{OfferState, PaymentMethod, Place, Trip, TripKind, TripStatus, WithdrawReason};
pub use user::{Category, RatingTotals, Role, User, Vehicle};
pub use zone::{Catalog, Zone, ZoneSpec};
