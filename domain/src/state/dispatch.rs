//! Dispatch: offer rounds to the nearest eligible drivers, withdrawn and lapsed offers, a new
//! search when nobody was found, the expiry of a trip nobody accepted, and the firing of due
//! deadlines (`Tick`).
//!
//! Guarantees:
//! - a round goes out only when no offer of the trip is pending (but for the one round
//!   that joins a batched trip's window offer left unanswered, `batch.rs`), to at most
//!   `offers_per_round` drivers never offered the trip before, nearest first (in batched
//!   mode only those within `batch_round_slack_s` of the round's best pickup cost), within
//!   `MAX_OFFERS_PER_TRIP` offers a trip and `MAX_PENDING_OFFERS` a driver;
//! - an offer is in the trip's list and the driver's list together, and leaves the driver's
//!   list when it is answered, lapses or is withdrawn;
//! - a deadline that outlived its cause (an answered offer, an archived trip) does nothing;
//! - a searching trip expires `timeout_s` after its search began: its offers are withdrawn,
//!   any hold released, a coupon use given back;
//! - a ride booked ahead becomes `searching` once, at the first `Tick` at or after its
//!   `scheduled_at − schedule_lead_s` (never before: that is its deadline), with a fresh
//!   search (`searching_since` then, so `timeout_s` counts from then); its wallet hold is
//!   placed then — a wallet that no longer covers the estimate cancels it, free, by the
//!   system —, and it counts as an open trip from then;
//! - every round that starts counts the eligible drivers within `search_radius_m`
//!   ([`State::supply_near`], up to `MAX_NEARBY_COUNTED`) into `Trip::nearby_drivers`; when
//!   that count becomes 0 (from none yet, or from a positive count) the rider is told
//!   (`Event::NoDriversNearby`): once per search while nobody is near, not on every empty
//!   retry round. The count ranks nobody: it is counted, not searched
//!   (`DriverIndex::count_within`).

use std::sync::Arc;

use super::money::settle_cancelled_payment;
use super::{Deadline, Effects, State};
use crate::clock::Timestamp;
use crate::command::Event;
use crate::driver::{Driver, MAX_PENDING_OFFERS};
use crate::error::Result;
use crate::geo::{LatLng, Nearby};
use crate::id::{TripId, UserId};
use crate::rules::MatchingMode;
use crate::trip::{
    CancelReason, Cancellation, CancelledBy, EXPIRED_REASON, MAX_NEARBY_COUNTED, MAX_OFFERS_PER_TRIP, Offer,
    OfferState, PaymentMethod, Trip, TripStatus, WithdrawReason,
};
use crate::user::Category;

/// The reason of a ride booked ahead that the engine cancelled at its dispatch because its
/// wallet no longer covered the estimate.
pub const UNFUNDED_REASON: &str = "the wallet no longer covers the estimate";

impl State {
    /// Offers the trip to the nearest eligible drivers not offered it before (ranked by
    /// [`crate::matching::offer_cost`] when the learning weights are on), if it is
    /// searching and no offer of the current round is still pending.
    pub(super) fn dispatch_round(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        self.round_of(trip_id, false, now, fx)
    }

    /// A round of the searching `trip_id`; with `beside_pending` even while offers of it
    /// are pending (a batched trip whose window offer went unanswered for
    /// `batch_exclusive_s`: `batch.rs`), and then no retry is scheduled when nobody is
    /// found (the pending offer's lapse or decline starts the next round).
    pub(super) fn round_of(
        &mut self,
        trip_id: TripId,
        beside_pending: bool,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        // A deadline may outlive its trip (finished and archived): nothing to do.
        let Some(trip) = self.trips.get(&trip_id) else { return Ok(()) };
        let pending = trip.pending_offers().next().is_some();
        if trip.status != TripStatus::Searching || (pending && !beside_pending) {
            return Ok(());
        }
        let room = MAX_OFFERS_PER_TRIP.saturating_sub(trip.offers.len());
        let limit = usize::from(self.rules.offers_per_round).min(room);
        let mut ranked = self.best_eligible(trip, now, limit);
        let slack_ds = u64::from(self.rules.batch_round_slack_s) * 10;
        if self.matching_in(trip.zone_id) == MatchingMode::Batched && slack_ds > 0 {
            let best = ranked.iter().map(|&(_, _, cost)| cost).min().unwrap_or(0);
            ranked.retain(|&(_, _, cost)| cost <= best.saturating_add(slack_ds));
        }
        let chosen: Vec<(UserId, u32)> = ranked.into_iter().map(|(id, distance_m, _)| (id, distance_m)).collect();
        self.note_nearby(trip_id, now, fx)?;
        if chosen.is_empty() && pending {
            return Ok(());
        }
        if chosen.is_empty() {
            let trip = self.trip_ref(trip_id)?;
            let retry = now.plus_secs(self.rules.redispatch_retry_s);
            if retry < trip.searching_since.plus_secs(self.rules.timeout_s) {
                self.deadlines.insert((retry, Deadline::Redispatch(trip_id)));
            }
            return Ok(());
        }
        self.make_offers(trip_id, &chosen, now, fx)
    }

    /// Counts the eligible drivers near the trip's pickup into `Trip::nearby_drivers`, and
    /// tells the rider when that count becomes 0 (what every round records).
    pub(super) fn note_nearby(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let trip = self.trip_ref(trip_id)?;
        let nearby = self.nearby_count(trip.pickup.point, &trip.category, now);
        if trip.nearby_drivers != Some(nearby) {
            let rider_id = trip.rider_id;
            self.trip_mut(trip_id, fx)?.nearby_drivers = Some(nearby);
            if nearby == 0 {
                fx.events.push(Event::NoDriversNearby { trip_id, rider_id });
            }
        }
        Ok(())
    }

    /// A new round of the searching `trip_id`: offers to each of `chosen` (eligible, checked
    /// by the caller: [`State::best_eligible`]), with their distances to the pickup.
    pub(super) fn make_offers(
        &mut self,
        trip_id: TripId,
        chosen: &[(UserId, u32)],
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let expires_at = now.plus_secs(self.rules.offer_ttl_s);
        let t = self.trip_mut(trip_id, fx)?;
        t.round = t.round.saturating_add(1);
        t.updated_at = now;
        let round = t.round;
        for &(driver_id, distance_m) in chosen {
            t.offers.push(Offer {
                driver_id,
                round,
                offered_at: now,
                expires_at,
                distance_to_pickup_m: distance_m,
                state: OfferState::Pending,
            });
        }
        let trip = Arc::clone(self.trip_ref(trip_id)?);
        for &(driver_id, distance_m) in chosen {
            let d = self.driver_mut(driver_id, fx)?;
            debug_assert!(
                !d.pending_offers.contains(&trip_id) && d.pending_offers.len() < MAX_PENDING_OFFERS,
                "make_offers: driver {driver_id} already holds an offer of {trip_id}, or no room for one"
            );
            d.pending_offers.push(trip_id);
            d.stats.offers = d.stats.offers.saturating_add(1);
            self.deadlines.insert((expires_at, Deadline::OfferLapse { trip_id, driver_id }));
            fx.events.push(Event::TripOffered {
                trip: Arc::clone(&trip),
                driver_id,
                expires_at,
                distance_to_pickup_m: distance_m,
            });
        }
        Ok(())
    }

    /// The `limit` best drivers who may be offered `trip` now, with their great-circle
    /// distance to the pickup and their [`crate::matching::offer_cost`], best first.
    ///
    /// Learning off: the `limit` nearest eligible (cost is the pickup ETA; ties by id).
    /// Learning on: the [`crate::matching::LEARNING_POOL_FACTOR`] × `limit` nearest
    /// eligible (at most [`crate::matching::MAX_LEARNING_POOL`], at least `limit`), ranked
    /// by cost, then distance, then id.
    pub(super) fn best_eligible(&self, trip: &Trip, now: Timestamp, limit: usize) -> Vec<(UserId, u32, u64)> {
        use crate::matching::{
            LEARNING_POOL_FACTOR, MAX_LEARNING_POOL, offer_cost, pickup_eta_at_ds, reported_speed_dmps,
        };
        let weights = self.rules.learning;
        let pool = if weights.is_on() {
            limit.saturating_mul(LEARNING_POOL_FACTOR).min(MAX_LEARNING_POOL).max(limit)
        } else {
            limit
        };
        let mut ranked: Vec<(UserId, u32, u64)> = self
            .nearest_eligible(trip, now, pool)
            .into_iter()
            .map(|(id, distance_m)| {
                let cost = match self.drivers.get(&id) {
                    Some(d) => {
                        let speed = reported_speed_dmps(d.fix.and_then(|f| f.speed_mps));
                        offer_cost(
                            pickup_eta_at_ds(distance_m, speed),
                            d.stats.learned_acceptance_bps(),
                            d.idle_s(now),
                            weights,
                        )
                    }
                    None => crate::matching::pickup_eta_ds(distance_m),
                };
                (id, distance_m, cost)
            })
            .collect();
        if weights.is_on() {
            ranked.sort_by_key(|&(id, distance_m, cost)| (cost, distance_m, id));
            ranked.truncate(limit);
        }
        ranked
    }

    /// The `limit` nearest drivers who may be offered `trip` now, nearest first
    /// (ties by id), with their great-circle distance to the pickup.
    ///
    /// Eligible: dispatchable ([`Driver::not_dispatchable`]: available, not suspended, with
    /// a position no older than `stale_location_s`, not disconnected from the socket), in
    /// the trip's category, within
    /// `search_radius_m`, with room for another offer, and never offered this trip.
    fn nearest_eligible(&self, trip: &Trip, now: Timestamp, limit: usize) -> Vec<(UserId, u32)> {
        let eligible = |d: &Driver| {
            self.could_drive(d, &trip.category, now)
                && d.pending_offers.len() < MAX_PENDING_OFFERS
                && trip.offer_to(d.id).is_none()
        };
        let radius = f64::from(self.rules.search_radius_m);
        self.index
            .0
            .nearest(trip.pickup.point, radius, limit, |i| self.drivers.get(&i.id).is_some_and(|d| eligible(d)))
            .into_iter()
            .map(|n| (n.driver.id, n.distance_m.round() as u32))
            .collect()
    }

    /// Whether `d` could be offered a trip of `category` at `now`, whatever the trip: in
    /// the category and dispatchable ([`Driver::not_dispatchable`]: available, not
    /// suspended, with a position no older than `stale_location_s`, not disconnected from
    /// the socket — the reason a driver is shown when not). The one filter of a round
    /// (which adds the trip's own conditions), of a round's nearby count and of an
    /// estimate's supply.
    fn could_drive(&self, d: &Driver, category: &Category, now: Timestamp) -> bool {
        d.category == *category && d.not_dispatchable(now, self.rules.stale_location_s).is_none()
    }

    /// The drivers who could take a trip of `category` from `point` now (in the category,
    /// [`Driver::not_dispatchable`] `None`: the filter of a round without the trip's own
    /// conditions) within `search_radius_m`: how many (counted up to [`MAX_NEARBY_COUNTED`]) and the
    /// nearest (where, and how far by great circle). What a round records as the trip's
    /// `nearby_drivers`, and what an estimate shows.
    pub fn supply_near(&self, point: LatLng, category: &Category, now: Timestamp) -> (u32, Option<Nearby>) {
        let radius = f64::from(self.rules.search_radius_m);
        let nearest = self
            .index
            .0
            .nearest(point, radius, 1, |i| self.drivers.get(&i.id).is_some_and(|d| self.could_drive(d, category, now)));
        (self.nearby_count(point, category, now), nearest.into_iter().next())
    }

    /// The count of [`State::supply_near`] alone, as every round records it: counted
    /// without ranking anybody ([`DriverIndex::count_within`](crate::geo::DriverIndex::count_within)),
    /// where the nearest `MAX_NEARBY_COUNTED` would each be ranked and measured.
    fn nearby_count(&self, point: LatLng, category: &Category, now: Timestamp) -> u32 {
        let radius = f64::from(self.rules.search_radius_m);
        let cap = MAX_NEARBY_COUNTED as usize;
        let count = self.index.0.count_within(point, radius, cap, |i| {
            self.drivers.get(&i.id).is_some_and(|d| self.could_drive(d, category, now))
        });
        u32::try_from(count).unwrap_or(MAX_NEARBY_COUNTED)
    }

    /// Withdraws every pending offer of the trip (it was taken, cancelled or expired).
    pub(super) fn withdraw_trip_offers(
        &mut self,
        trip_id: TripId,
        reason: WithdrawReason,
        fx: &mut Effects,
    ) -> Result<()> {
        let t = self.trip_mut(trip_id, fx)?;
        let mut withdrawn = Vec::new();
        for o in t.offers.iter_mut().filter(|o| o.state == OfferState::Pending) {
            o.state = OfferState::Withdrawn(reason);
            withdrawn.push(o.driver_id);
        }
        for driver_id in withdrawn {
            self.driver_mut(driver_id, fx)?.pending_offers.retain(|t| *t != trip_id);
            fx.events.push(Event::OfferWithdrawn { trip_id, driver_id, reason });
        }
        Ok(())
    }

    /// Withdraws a driver's pending offers of every trip but `except`; those trips
    /// move on to their next round.
    pub(super) fn withdraw_driver_offers(
        &mut self,
        driver_id: UserId,
        except: Option<TripId>,
        reason: WithdrawReason,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let d = self.driver_mut(driver_id, fx)?;
        let trips: Vec<TripId> = std::mem::take(&mut d.pending_offers);
        d.pending_offers = trips.iter().copied().filter(|t| Some(*t) == except).collect();
        for trip_id in trips.into_iter().filter(|t| Some(*t) != except) {
            let t = self.trip_mut(trip_id, fx)?;
            debug_assert!(
                t.offer_to(driver_id).is_some_and(|o| o.state == OfferState::Pending),
                "withdraw_driver_offers: driver {driver_id} lists {trip_id}, whose offer to it is not pending"
            );
            if let Some(o) = t.offer_to_mut(driver_id).filter(|o| o.state == OfferState::Pending) {
                o.state = OfferState::Withdrawn(reason);
                fx.events.push(Event::OfferWithdrawn { trip_id, driver_id, reason });
            }
            self.dispatch_round(trip_id, now, fx)?;
        }
        Ok(())
    }

    pub(super) fn fire_deadlines(&mut self, now: Timestamp, fx: &mut Effects) -> Result<()> {
        while let Some(&(at, deadline)) = self.deadlines.get_min() {
            if at > now {
                break;
            }
            self.deadlines.remove_min();
            match deadline {
                Deadline::OfferLapse { trip_id, driver_id } => self.lapse_offer(trip_id, driver_id, at, now, fx)?,
                Deadline::TripTimeout(trip_id) => self.expire_trip(trip_id, at, now, fx)?,
                Deadline::Redispatch(trip_id) => self.dispatch_round(trip_id, now, fx)?,
                Deadline::Surge => self.recompute_surge(now, fx),
                Deadline::DisconnectGrace(driver_id) => self.disconnect_grace_over(driver_id, at, now, fx)?,
                Deadline::Housekeeping => self.housekeeping(now),
                Deadline::HoldExpiry { trip_id, hold } => self.expire_hold(trip_id, hold, now, fx)?,
                Deadline::CashClaimExpiry(trip_id) => self.cash_claim_expired(trip_id, now, fx)?,
                Deadline::ScheduledDispatch(trip_id) => self.dispatch_scheduled(trip_id, now, fx)?,
                Deadline::TopUpExpiry(top_up_id) => self.expire_top_up(top_up_id, now, fx),
                Deadline::BatchWindow => self.close_batch(now, fx)?,
                Deadline::BatchExclusiveOver { trip_id, round } => self.exclusive_over(trip_id, round, now, fx)?,
            }
        }
        Ok(())
    }

    fn lapse_offer(
        &mut self,
        trip_id: TripId,
        driver_id: UserId,
        at: Timestamp,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let still_pending = self
            .trips
            .get(&trip_id)
            .and_then(|t| t.offer_to(driver_id))
            .is_some_and(|o| o.state == OfferState::Pending && o.expires_at == at);
        if !still_pending {
            return Ok(());
        }
        debug_assert!(
            self.drivers.get(&driver_id).is_some_and(|d| d.pending_offers.contains(&trip_id)),
            "lapse_offer: the pending offer of {trip_id} to {driver_id} is missing from the driver's list"
        );
        let t = self.trip_mut(trip_id, fx)?;
        if let Some(o) = t.offer_to_mut(driver_id) {
            o.state = OfferState::Lapsed;
        }
        t.updated_at = now;
        let d = self.driver_mut(driver_id, fx)?;
        d.pending_offers.retain(|t| *t != trip_id);
        d.stats.lapsed = d.stats.lapsed.saturating_add(1);
        d.stats.answered(false);
        fx.events.push(Event::OfferWithdrawn { trip_id, driver_id, reason: WithdrawReason::Expired });
        self.dispatch_round(trip_id, now, fx)
    }

    /// A ride booked ahead starts its search (its `ScheduledDispatch` deadline is due):
    /// the wallet hold deferred at booking is placed, the trip counts as open, the search
    /// begins now with its timeout and its first round. A trip no longer scheduled
    /// (cancelled, or archived since) is left alone: this happens once.
    fn dispatch_scheduled(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let Some(trip) = self.trips.get(&trip_id) else { return Ok(()) };
        if trip.status != TripStatus::Scheduled {
            return Ok(());
        }
        let (rider, currency, estimate) = (trip.rider_id, trip.fare.currency, trip.fare.estimate_minor);
        let mut hold = None;
        if trip.payment.method == PaymentMethod::Wallet {
            if self.check_wallet_covers(rider, currency, estimate).is_err() {
                // Dispatching a ride its wallet cannot pay for would leave the fare as a
                // debt: the engine cancels it, free, and the rider is told (TripUpdated).
                self.cancel_terminal(trip_id, CancelledBy::System, CancelReason::Other, UNFUNDED_REASON, now, fx)?;
                return Ok(());
            }
            hold = self.hold_for_booking(trip_id, rider, currency, estimate, now, fx)?;
            if let Some(hold) = hold {
                let expires = now.plus_secs(self.rules.wallet_hold_ttl_s);
                self.deadlines.insert((expires, Deadline::HoldExpiry { trip_id, hold }));
            }
        }
        self.close_scheduled(rider);
        *self.open_trips_by_rider.entry(rider).or_default() += 1;
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::Searching, now)?;
        t.searching_since = now;
        t.payment.hold = hold;
        self.deadlines.insert((now.plus_secs(self.rules.timeout_s), Deadline::TripTimeout(trip_id)));
        self.start_search(trip_id, now, fx)?;
        self.trip_updated(trip_id, fx)?;
        Ok(())
    }

    fn expire_trip(&mut self, trip_id: TripId, at: Timestamp, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let due = self.trips.get(&trip_id).is_some_and(|t| {
            t.status == TripStatus::Searching && t.searching_since.plus_secs(self.rules.timeout_s) <= at
        });
        if !due {
            return Ok(());
        }
        let ops = self.cancellation_ops(self.trip_ref(trip_id)?, 0, now)?;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        settle_cancelled_payment(t, None)?;
        t.set_status(TripStatus::Expired, now)?;
        t.ended_at = Some(now);
        // The engine ended it: no code of API.md fits a search that found nobody better than `other`.
        t.cancellation = Some(Cancellation {
            by: CancelledBy::System,
            code: CancelReason::Other,
            reason: EXPIRED_REASON.to_owned(),
            at: now,
        });
        let rider = t.rider_id;
        let coupon = t.fare.locked.coupon.as_ref().map(|c| c.code.clone());
        self.withdraw_trip_offers(trip_id, WithdrawReason::Expired, fx)?;
        self.close_open_trip(rider);
        if let Some(code) = coupon {
            self.count_coupon_use(&code, rider, false, fx);
        }
        self.trip_updated(trip_id, fx)?;
        Ok(())
    }
}
