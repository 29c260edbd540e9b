//! Rule-by-rule tests of `apply`, one file per topic, named after the handler file it tests.
//! The harness ([`World`], in `testkit.rs`) checks after every command that a refusal changed
//! nothing and that the invariants hold, and at the end that replaying the recorded commands
//! gives the same state.
//!
//! - `trips`: booking, dispatch and offers, accept, the pickup code, complete, cancels, driver
//!   availability and suspension, roles, bad input.
//! - `catalog`: zones, prices, coupons, surge.
//! - `chat`: who may post when, the text rules, the bound, retention, archived trips.
//! - `extras`: bids, ratings, SOS alerts, idempotency keys and their archiving.
//! - `account`: OTP, presence, housekeeping, token revocation.
//! - `location`: positions, the spoofing check, the spatial index, the distance billed.
//! - `matching`: batched matching's window and the ranking that learns (issue 22).
//! - `money`: what every payment path moves; `money_model`: the same against a reference
//!   model, on random sequences with crashes (a proptest).
//! - `stops`: stops on the way, and the fare over the summed route (a proptest).
//! - `scheduled`: rides booked ahead (a model test through restarts) and the count of
//!   drivers near a search (`no_drivers_nearby`).
//! - `archive`: archiving and restoring trips, the checkpoint's copy, invariants of clones.
//! - `notify`: push devices and the notification outbox (a proptest of its promise).
//! - `hooks`: outbound webhooks: events, the per-subject order, reports (a proptest).
//! - `shares`: trip references, share links, profiles, why a driver is not dispatchable.
//! - `applications`: driver applications, their transitions, going online, licence reminders.
//! - `parcels`: parcel prices and the weight limit, the delivery code (SMS, lockout, a
//!   proptest of the lock), staff completion; disabled coupons and what `uses` counts.
//! - `payouts`: payouts, top-ups, cash debt and cash received, the earnings index.
//! - `staff`: staff sign-in: setups, failures and the lock, TOTP replay, signing out, and
//!   that no command or state holds a password or a TOTP secret.
//! - `users_admin`: staff's users: the indexes against a scan (a proptest), edits, blocks,
//!   erasure, drivers' stats.

mod account;
mod applications;
mod archive;
mod audit;
mod catalog;
mod chat;
mod extras;
mod hooks;
mod location;
mod matching;
mod money;
mod money_model;
mod notify;
mod parcels;
mod payouts;
mod scheduled;
mod shares;
mod staff;
mod stops;
mod trips;
mod users_admin;

use super::*;
use crate::command::LocationReport;
use crate::geo::LatLng;
use crate::testkit::World;

/// The rules of most tests: the defaults, two offers a round.
fn rules() -> DispatchRules {
    DispatchRules { offers_per_round: 2, ..DispatchRules::default() }
}

/// A percentage coupon, unbounded but for `max_uses_per_rider`.
fn coupon(code: &str, percent_bps: u32, max_uses_per_rider: Option<u64>) -> crate::fare::Coupon {
    crate::fare::Coupon {
        id: crate::id::CouponId::from_raw(1).unwrap(),
        code: code.into(),
        discount: crate::fare::CouponDiscount::Percent { percent_bps, max_discount_minor: None },
        min_fare_minor: None,
        valid_from: None,
        valid_until: None,
        max_uses: None,
        max_uses_per_rider,
        currency: None,
    }
}

/// A new rider rides with a new driver from booking to completion: (rider, driver, trip).
fn complete_a_trip(w: &mut World) -> (UserId, UserId, TripId) {
    let rider = w.rider();
    let d = w.driver(0.5);
    let trip = w.trip(rider);
    w.accept(d, trip).unwrap();
    w.run(Actor::User(d), Command::DriverArrived { trip_id: trip }).unwrap();
    let code = w.get(trip).pickup_code.to_string();
    w.run(Actor::User(d), Command::StartTrip { trip_id: trip, pickup_code: code }).unwrap();
    w.run(Actor::User(d), Command::CompleteTrip { trip_id: trip, distance_m: None, dropoff: None }).unwrap();
    (rider, d, trip)
}

/// A position report at `point`, without heading or speed.
fn report_at(point: LatLng) -> Command {
    Command::UpdateLocation(LocationReport { point, heading_deg: None, speed_mps: None })
}
