//! Trips: booking, accept and decline, arrival, the start with the pickup code, completion
//! at the final price, and cancels by the rider, the assigned driver or staff.
//!
//! Guarantees:
//! - the price is the engine's, computed at booking from the zone, surge and coupon of that
//!   moment and locked into the trip; the final fare uses the locked prices (or exactly the
//!   agreed price of a bidding trip) on the billed distance (`fare::billed_distance_m`);
//! - a trip and its driver change in the same command: accepting assigns both and withdraws
//!   the other offers of the trip and the driver's offers of other trips; completing or
//!   cancelling frees the driver;
//! - refusals come in the order the API fixes (see `State::accept`, `State::offer_to_answer`);
//! - only the assigned driver moves a trip along (arrive, start, complete); the start needs
//!   the pickup code, after arrival; a parcel's completion needs its delivery code (staff
//!   complete a parcel without it); five wrong codes of either kind lock that step until
//!   staff unlock it;
//! - a parcel's price adds its weight's (`fare::parcel_fare`), within its category's
//!   weight limit, at booking and at completion alike;
//! - a rider or staff cancel is terminal (a rider past the free window pays the fee, staff
//!   never charge one); the assigned driver's cancel, before the ride starts, sends the trip
//!   back to searching without that driver and without that driver's bid.

use std::sync::Arc;

use super::money::settle_cancelled_payment;
use super::{Deadline, Effects, MAX_BID_MINOR, State, Who, validate_reason};
use crate::clock::Timestamp;
use crate::command::{Event, NewTrip, Outcome};
use crate::driver::Availability;
use crate::error::{Error, Result};
use crate::geo::LatLng;
use crate::id::{TripId, UserId};
use crate::trip::{
    CancelReason, Cancellation, CancelledBy, GatewayAction, LockedCoupon, LockedPrice, MAX_CODE_FAILURES,
    MAX_SCHEDULE_AHEAD_S, MIN_SCHEDULE_AHEAD_S, Offer, OfferState, PaymentMethod, PaymentStatus, PickupCode, Trip,
    TripFare, TripKind, TripPayment, TripStatus, WithdrawReason,
};

impl State {
    pub(super) fn create_trip(&mut self, who: Who, new: &NewTrip, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let Who::Rider(rider_id) = who else {
            return Err(Error::Forbidden("only riders ask for trips".into()));
        };
        // issue 20: U — a rider staff blocked books nothing.
        if self.users.get(&rider_id).is_some_and(|u| u.blocked.is_some()) {
            return Err(Error::Blocked(rider_id));
        }
        let id = new.id.ok_or_else(|| Error::Internal("trip id not stamped".into()))?;
        let pickup_code = new.pickup_code.ok_or_else(|| Error::Internal("pickup code not stamped".into()))?;
        let reference = new.reference.ok_or_else(|| Error::Internal("trip reference not stamped".into()))?;
        if self.trips.contains_key(&id) {
            return Err(Error::Invalid(format!("trip {id} already exists")));
        }
        self.check_ref_free(reference, now)?;
        new.pickup.validate()?;
        new.dropoff.validate()?;
        crate::trip::validate_stops(&new.stops)?;
        match (new.kind, &new.parcel) {
            (TripKind::Parcel, Some(p)) => {
                p.validate()?;
                if p.delivery_code.is_none() {
                    return Err(Error::Internal("delivery code not stamped".into()));
                }
            }
            (TripKind::Parcel, None) => {
                return Err(Error::Invalid("a parcel trip needs parcel details".into()));
            }
            (TripKind::Ride, Some(_)) => {
                return Err(Error::Invalid("parcel details belong to parcel trips".into()));
            }
            (TripKind::Ride, None) => {}
        }
        let dispatch_at = self.check_schedule(rider_id, new, now)?;
        let open = self.open_trips_by_rider.get(&rider_id).copied().unwrap_or(0);
        if dispatch_at.is_none() && open >= self.rules.open_trips_per_rider {
            return Err(Error::TooManyOpenTrips(self.rules.open_trips_per_rider));
        }
        let book = self.price_book();
        let zone = Arc::clone(book.catalog.lookup(new.pickup.point)?);
        let surge_bps = book.surge_bps(zone.id);
        let coupon = new.coupon.as_deref().map(|code| book.coupon(code)).transpose()?.map(Arc::clone);
        let quote = crate::zone::price(
            &zone,
            surge_bps,
            &new.category,
            &new.route,
            new.parcel.as_ref().map(|p| p.weight_g),
            coupon.as_deref().map(|c| (c, rider_id)),
            now,
        )?;
        let pricing =
            *zone.spec.pricing.get(&new.category).ok_or_else(|| Error::NoPricing(new.category.to_string()))?;
        if let Some(bid) = new.bid_minor
            && !(1..=MAX_BID_MINOR).contains(&bid)
        {
            return Err(Error::Invalid(format!("bid amount_minor must be 1 to {MAX_BID_MINOR}")));
        }
        if new.bid_minor.is_some() && !zone.spec.bidding {
            return Err(Error::InvalidParam {
                param: "bid",
                message: format!("zone {} does not take bidding trips: book at the quoted fare", zone.id),
            });
        }

        let mut trip = Trip {
            id,
            status: if dispatch_at.is_some() { TripStatus::Scheduled } else { TripStatus::Searching },
            kind: new.kind,
            rider_id,
            driver_id: None,
            category: new.category.clone(),
            pickup: new.pickup.clone(),
            dropoff: new.dropoff.clone(),
            stops: new.stops.clone(),
            parcel: new.parcel.clone(),
            fare: TripFare {
                estimate_minor: new.bid_minor.unwrap_or(quote.fare.amount_minor),
                final_minor: None,
                currency: quote.fare.currency,
                surge_bps: quote.surge_bps,
                discount_minor: quote.discount_minor,
                locked: LockedPrice {
                    pricing,
                    extra_fee_minor: zone.spec.extra_fee_minor,
                    coupon: coupon.as_ref().map(|c| LockedCoupon {
                        id: c.coupon.id,
                        code: c.coupon.code.clone(),
                        discount: c.coupon.discount,
                    }),
                    route: new.route,
                    agreed_minor: None,
                },
                estimate_breakdown: quote.breakdown,
                final_breakdown: None,
                cancel_fee_minor: None,
            },
            payment: TripPayment::new(new.payment_method),
            pickup_code,
            offers: Vec::new(),
            round: 0,
            created_at: now,
            updated_at: now,
            revision: 0,
            searching_since: now,
            accepted_at: None,
            arrived_at: None,
            started_at: None,
            ended_at: None,
            distance_m: None,
            driven_m: None,
            cancellation: None,
            zone_id: zone.id,
            rider_offer_minor: new.bid_minor,
            bids: Vec::new(),
            code_failures: 0,
            delivery_code_failures: 0,
            messages: Arc::default(),
            rider_rating: None,
            driver_rating: None,
            scheduled_at: new.scheduled_at,
            nearby_drivers: None,
            reference,
        };
        if new.payment_method == PaymentMethod::Card {
            // Bound to the gateway that charges it: no other gateway's event moves it.
            trip.payment.gateway = Some(self.rules.card_gateway.clone());
        }
        if let Some(dispatch_at) = dispatch_at {
            // A ride booked ahead holds nothing yet: a wallet hold lives
            // `wallet_hold_ttl_s` (a day), shorter than a week ahead, so it is placed when
            // dispatch starts (`dispatch_scheduled`). The wallet must cover the estimate
            // now, as for any booking; the last check, before the first write.
            if new.payment_method == PaymentMethod::Wallet {
                self.check_wallet_covers(rider_id, trip.fare.currency, trip.fare.estimate_minor)?;
            }
            self.trips.insert(id, Arc::new(trip));
            *self.scheduled_by_rider.entry(rider_id).or_default() += 1;
            if let Some(code) = &new.coupon {
                self.count_coupon_use(code, rider_id, true, fx);
            }
            self.deadlines.insert((dispatch_at, Deadline::ScheduledDispatch(id)));
            fx.trips.push(id);
            return self.trip_updated(id, fx);
        }
        // The wallet hold is the last check (it can refuse) and the first write.
        if new.payment_method == PaymentMethod::Wallet {
            trip.payment.hold =
                self.hold_for_booking(id, rider_id, trip.fare.currency, trip.fare.estimate_minor, now, fx)?;
            if let Some(hold) = trip.payment.hold {
                let expires = now.plus_secs(self.rules.wallet_hold_ttl_s);
                self.deadlines.insert((expires, Deadline::HoldExpiry { trip_id: id, hold }));
            }
        }
        self.trips.insert(id, Arc::new(trip));
        self.record_ref(reference, id, now);
        self.open_trips_by_rider.insert(rider_id, open + 1);
        if let Some(code) = &new.coupon {
            self.count_coupon_use(code, rider_id, true, fx);
        }
        self.deadlines.insert((now.plus_secs(self.rules.timeout_s), Deadline::TripTimeout(id)));
        fx.trips.push(id);
        self.start_search(id, now, fx)?;
        self.trip_updated(id, fx)
    }

    /// For a ride booked ahead, when its dispatch starts (`scheduled_at −
    /// schedule_lead_s`), after checking it: `scheduled_at` 15 minutes to 7 days after
    /// `now` (inclusive), a ride (a parcel is sent now; a bidding trip haggles with drivers
    /// who are there now), and room under `scheduled_trips_per_rider`. `None` for a ride now.
    fn check_schedule(&self, rider: UserId, new: &NewTrip, now: Timestamp) -> Result<Option<Timestamp>> {
        let Some(at) = new.scheduled_at else { return Ok(None) };
        let invalid = |message: String| Error::InvalidParam { param: "scheduled_at", message };
        let ahead_ms = at.millis_since(now);
        let (min_ms, max_ms) = (i64::from(MIN_SCHEDULE_AHEAD_S) * 1000, i64::from(MAX_SCHEDULE_AHEAD_S) * 1000);
        if !(min_ms..=max_ms).contains(&ahead_ms) {
            return Err(invalid("scheduled_at must be 15 minutes to 7 days ahead".into()));
        }
        if new.kind == TripKind::Parcel {
            return Err(invalid("a parcel cannot be booked ahead: send it when it is ready".into()));
        }
        if new.bid_minor.is_some() {
            return Err(invalid(
                "a bidding trip cannot be booked ahead: drivers bid on trips they can take now".into(),
            ));
        }
        let scheduled = self.scheduled_by_rider.get(&rider).copied().unwrap_or(0);
        if scheduled >= self.rules.scheduled_trips_per_rider {
            return Err(Error::TooManyScheduledTrips(self.rules.scheduled_trips_per_rider));
        }
        Ok(Some(at.plus_millis(-i64::from(self.rules.schedule_lead_s) * 1000)))
    }

    /// Accept, in the order of refusals the API fixes: 404, 403 `not_offered`,
    /// 409 `trip_already_assigned`, 409 `driver_not_available`, 410 `offer_expired`.
    pub(super) fn accept(&mut self, who: Who, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (driver_id, offer) = self.offer_to_answer(who, trip_id, "accept")?;
        let driver = self.driver_ref(driver_id)?;
        if driver.availability != Availability::Available || driver.suspended {
            return Err(Error::DriverNotAvailable(driver_id));
        }
        check_live(&offer, trip_id, now)?;
        self.assign(trip_id, driver_id, now, fx)
    }

    /// Gives the searching `trip_id` to the available `driver_id`: every check has
    /// passed. The trip and the driver change together; the other offers of the trip,
    /// and the driver's offers of other trips, are withdrawn.
    pub(super) fn assign(
        &mut self,
        trip_id: TripId,
        driver_id: UserId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        // `accept` and `accept_bid` checked both sides; nothing below looks again.
        debug_assert!(
            self.trips.get(&trip_id).is_some_and(|t| t.status == TripStatus::Searching
                && t.driver_id.is_none()
                && t.offer_to(driver_id).is_some()),
            "assign: trip {trip_id} must be searching, without a driver, with an offer to {driver_id}"
        );
        debug_assert!(
            self.drivers
                .get(&driver_id)
                .is_some_and(|d| d.availability == Availability::Available && !d.suspended && d.trip_id.is_none()),
            "assign: driver {driver_id} must be available, not suspended and on no trip"
        );
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::Accepted, now)?;
        t.driver_id = Some(driver_id);
        t.accepted_at = Some(now);
        if t.rider_offer_minor.is_some() && t.fare.locked.agreed_minor.is_none() {
            // A bidding trip accepted at the rider's price.
            t.fare.locked.agreed_minor = t.rider_offer_minor;
        }
        if t.payment.method == PaymentMethod::Card && t.payment.status == PaymentStatus::Pending {
            t.payment.set_due(Some(GatewayAction::Authorize { amount_minor: t.fare.estimate_minor }));
        }
        let mut others = Vec::new();
        for o in &mut t.offers {
            if o.driver_id == driver_id {
                o.state = OfferState::Accepted;
            } else if o.state == OfferState::Pending {
                o.state = OfferState::Withdrawn(WithdrawReason::Taken);
                others.push(o.driver_id);
            }
        }
        for other in others {
            self.driver_mut(other, fx)?.pending_offers.retain(|t| *t != trip_id);
            fx.events.push(Event::OfferWithdrawn { trip_id, driver_id: other, reason: WithdrawReason::Taken });
        }
        let d = self.driver_mut(driver_id, fx)?;
        d.availability = Availability::OnTrip;
        d.available_since = None;
        d.trip_id = Some(trip_id);
        d.pending_offers.retain(|t| *t != trip_id);
        d.stats.accepted = d.stats.accepted.saturating_add(1);
        d.stats.answered(true);
        // The driver's offers of other trips go back to those trips.
        self.withdraw_driver_offers(driver_id, Some(trip_id), WithdrawReason::Taken, now, fx)?;
        self.trip_updated(trip_id, fx)
    }

    pub(super) fn decline(&mut self, who: Who, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (driver_id, offer) = self.offer_to_answer(who, trip_id, "decline")?;
        check_live(&offer, trip_id, now)?;
        debug_assert!(
            self.drivers.get(&driver_id).is_some_and(|d| d.pending_offers.contains(&trip_id)),
            "decline: the pending offer of {trip_id} to {driver_id} is missing from the driver's list"
        );
        let t = self.trip_mut(trip_id, fx)?;
        if let Some(o) = t.offer_to_mut(driver_id) {
            o.state = OfferState::Declined;
        }
        t.updated_at = now;
        let d = self.driver_mut(driver_id, fx)?;
        d.pending_offers.retain(|t| *t != trip_id);
        d.stats.declined = d.stats.declined.saturating_add(1);
        d.stats.answered(false);
        self.dispatch_round(trip_id, now, fx)?;
        Ok(Outcome::Done)
    }

    /// The offer a driver answers (accept or decline), with the refusals that come
    /// before the driver's own availability, in the API's order: 404, 403
    /// `not_offered`, 409 (`invalid_transition` for a cancelled or expired trip, or
    /// one this driver already has; `trip_already_assigned` otherwise).
    fn offer_to_answer(&self, who: Who, trip_id: TripId, action: &'static str) -> Result<(UserId, Offer)> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let driver_id = self.driver_of(who)?;
        let offer = trip.offer_to(driver_id).ok_or(Error::NotOffered(trip_id))?;
        match trip.status {
            TripStatus::Searching => Ok((driver_id, offer.clone())),
            TripStatus::Cancelled | TripStatus::Expired => Err(trip.refuse(action)),
            _ if trip.driver_id == Some(driver_id) => Err(trip.refuse(action)),
            _ => Err(Error::TripAlreadyAssigned(trip_id)),
        }
    }

    /// The trip, if `who` is its assigned driver; otherwise the right refusal.
    fn assigned_trip(&self, who: Who, trip_id: TripId) -> Result<(&Arc<Trip>, UserId)> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        match who {
            Who::Driver(id) if trip.driver_id == Some(id) && trip.status != TripStatus::Searching => Ok((trip, id)),
            Who::Driver(id) if trip.offer_to(id).is_some() => {
                Err(Error::Forbidden(format!("trip {trip_id} is not assigned to this driver")))
            }
            Who::Rider(id) if trip.rider_id == id => Err(Error::Forbidden("only the trip's driver does this".into())),
            Who::Staff { .. } => Err(Error::Forbidden("only the trip's driver does this".into())),
            _ => Err(Error::not_found("trip", trip_id)),
        }
    }

    pub(super) fn arrived(&mut self, who: Who, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let (trip, _) = self.assigned_trip(who, trip_id)?;
        if trip.status != TripStatus::Accepted {
            return Err(trip.refuse("mark arrived"));
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::Arrived, now)?;
        t.arrived_at = Some(now);
        self.trip_updated(trip_id, fx)
    }

    pub(super) fn start(
        &mut self,
        who: Who,
        trip_id: TripId,
        code: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let (trip, driver_id) = self.assigned_trip(who, trip_id)?;
        if trip.status != TripStatus::Arrived {
            return Err(trip.refuse("start"));
        }
        if trip.code_failures >= MAX_CODE_FAILURES {
            return Err(Error::Forbidden(format!(
                "the pickup code of trip {trip_id} is locked after {MAX_CODE_FAILURES} wrong codes; staff can unlock it"
            )));
        }
        if PickupCode::parse(code) != Some(trip.pickup_code) {
            // Counted, so the attempt is a change (logged), answered as a refusal: the
            // code cannot be guessed one attempt after another.
            let t = self.trip_mut(trip_id, fx)?;
            t.code_failures += 1;
            t.updated_at = now;
            let attempts_left = MAX_CODE_FAILURES - t.code_failures;
            self.trip_updated(trip_id, fx)?;
            return Ok(Outcome::PickupCodeRefused { attempts_left });
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.set_status(TripStatus::InProgress, now)?;
        t.started_at = Some(now);
        // The odometer counts the ride from here (see `State::publish_position`).
        self.driver_mut(driver_id, fx)?.trip_odometer_m = 0.0;
        self.trip_updated(trip_id, fx)
    }

    /// Staff reset a trip's wrong pickup and delivery codes, unlocking its start and its
    /// completion by the driver.
    pub(super) fn unlock_pickup_code(
        &mut self,
        who: Who,
        trip_id: TripId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if !matches!(who, Who::Staff { .. }) {
            return Err(Error::Forbidden("only staff unlock a pickup code".into()));
        }
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        if !trip.status.is_open() {
            return Err(trip.refuse("unlock the pickup code of"));
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.code_failures = 0;
        t.delivery_code_failures = 0;
        t.updated_at = now;
        self.trip_updated(trip_id, fx)
    }

    /// Completion at the final price. A parcel's driver gives the delivery `code` (none →
    /// `invalid_request` naming `delivery_code`; a wrong one is counted and answered
    /// [`Outcome::DeliveryCodeRefused`]; after [`MAX_CODE_FAILURES`] the driver is refused
    /// until staff unlock it). Staff complete an in-progress parcel without the code: they
    /// confirmed the delivery themselves. A ride takes no code.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn complete(
        &mut self,
        who: Who,
        trip_id: TripId,
        code: Option<&str>,
        distance_m: Option<u32>,
        dropoff: Option<LatLng>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let staff_parcel = match who {
            Who::Staff { .. } => self.trips.get(&trip_id).and_then(|t| t.driver_id.filter(|_| t.parcel.is_some())),
            _ => None,
        };
        let (trip, driver_id) = match staff_parcel {
            Some(driver_id) => (self.trip_ref(trip_id)?, driver_id),
            None => self.assigned_trip(who, trip_id)?,
        };
        if trip.status != TripStatus::InProgress {
            return Err(trip.refuse("complete"));
        }
        let expected = trip.parcel.as_ref().map(|p| p.delivery_code);
        match (expected, code) {
            (None, Some(_)) => {
                return Err(Error::InvalidParam {
                    param: "delivery_code",
                    message: "a ride has no delivery code: only parcels do".into(),
                });
            }
            (Some(_), _) if staff_parcel.is_some() => {}
            (Some(_), None) => {
                return Err(Error::InvalidParam {
                    param: "delivery_code",
                    message: "a parcel is completed with the delivery code its recipient received".into(),
                });
            }
            (Some(expected), Some(code)) => {
                if trip.delivery_code_failures >= MAX_CODE_FAILURES {
                    return Err(Error::Forbidden(format!(
                        "the delivery code of trip {trip_id} is locked after {MAX_CODE_FAILURES} wrong codes; \
                         staff can complete the trip or unlock the code"
                    )));
                }
                if expected.is_none() || PickupCode::parse(code) != expected {
                    // Counted, so the attempt is a change (logged), answered as a refusal.
                    let t = self.trip_mut(trip_id, fx)?;
                    t.delivery_code_failures += 1;
                    t.updated_at = now;
                    let attempts_left = MAX_CODE_FAILURES - t.delivery_code_failures;
                    self.trip_updated(trip_id, fx)?;
                    return Ok(Outcome::DeliveryCodeRefused { attempts_left });
                }
            }
            (None, None) => {}
        }
        let trip = self.trip_ref(trip_id)?;
        let rider_id = trip.rider_id;
        let driven_m = self.driver_ref(driver_id)?.trip_odometer_m;
        let priced = final_price(trip, distance_m, driven_m, now)?;
        let discount = priced.breakdown.map_or(0, |b| b.discount_minor);
        let ops = self.settlement(trip, driver_id, priced.fare_minor, discount, now)?;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        match t.payment.method {
            PaymentMethod::Card => {
                t.payment.set_due(Some(GatewayAction::Capture { amount_minor: priced.fare_minor }));
            }
            PaymentMethod::Cash | PaymentMethod::Wallet => {
                t.payment.set_status(PaymentStatus::Captured)?;
                t.payment.captured_minor = priced.fare_minor;
            }
        }
        t.set_status(TripStatus::Completed, now)?;
        t.ended_at = Some(now);
        t.distance_m = Some(priced.distance_m);
        t.driven_m = Some(priced.driven_m);
        if let Some(point) = dropoff {
            t.dropoff.point = point;
        }
        t.fare.final_minor = Some(priced.fare_minor);
        t.fare.final_breakdown = priced.breakdown;
        self.release_driver(driver_id, now, fx)?;
        self.close_open_trip(rider_id);
        self.trip_updated(trip_id, fx)
    }

    pub(super) fn cancel(
        &mut self,
        who: Who,
        trip_id: TripId,
        code: CancelReason,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let by = match who {
            Who::Rider(id) if id == trip.rider_id => Some(CancelledBy::Rider),
            Who::Staff { .. } => Some(CancelledBy::Staff),
            Who::System => Some(CancelledBy::System),
            Who::Driver(id) if trip.driver_id == Some(id) && trip.status.has_driver() => None,
            Who::Driver(id) if trip.offer_to(id).is_some() => {
                return Err(Error::Forbidden("an offered driver declines; only the assigned driver cancels".into()));
            }
            _ => return Err(Error::not_found("trip", trip_id)),
        };
        validate_reason(reason)?;
        if !trip.status.is_open() {
            return Err(trip.refuse("cancel"));
        }
        match by {
            Some(by) => self.cancel_terminal(trip_id, by, code, reason, now, fx),
            None => {
                if trip.status == TripStatus::InProgress {
                    return Err(trip.refuse("cancel"));
                }
                self.driver_cancel(trip_id, now, fx)
            }
        }
    }

    pub(super) fn cancel_terminal(
        &mut self,
        trip_id: TripId,
        by: CancelledBy,
        code: CancelReason,
        reason: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trip_ref(trip_id)?;
        let was = trip.status;
        // A rider who cancels after the free window pays the fee; staff never charge one.
        // A ride booked ahead has no driver before its dispatch: its cancel is free.
        let fee = match (by, trip.accepted_at, trip.status.has_driver()) {
            (CancelledBy::Rider, Some(accepted_at), true) => {
                Some(crate::fare::cancellation_fee(&trip.fare.locked.pricing, accepted_at, now).map_err(fare_error)?)
            }
            _ => None,
        };
        let fee = fee.filter(|&f| f > 0);
        let ops = self.cancellation_ops(trip, fee.unwrap_or(0), now)?;
        self.apply_money(&ops, fx)?;
        let t = self.trip_mut(trip_id, fx)?;
        settle_cancelled_payment(t, fee)?;
        t.set_status(TripStatus::Cancelled, now)?;
        t.ended_at = Some(now);
        t.cancellation = Some(Cancellation { by, code, reason: reason.to_owned(), at: now });
        t.fare.cancel_fee_minor = fee;
        let (driver, rider) = (t.driver_id, t.rider_id);
        let coupon = t.fare.locked.coupon.as_ref().map(|c| c.code.clone());
        self.withdraw_trip_offers(trip_id, WithdrawReason::Cancelled, fx)?;
        if let Some(d) = driver {
            self.release_driver(d, now, fx)?;
        }
        self.close_trip_count(rider, was);
        // A coupon's `uses` counts the trips booked with it, less those cancelled
        // without a fee: a cancel that cost the rider a fee keeps its use.
        if let (Some(code), None) = (coupon, fee) {
            self.count_coupon_use(&code, rider, false, fx);
        }
        self.trip_updated(trip_id, fx)
    }

    /// The assigned driver gives the trip back: it searches again, among drivers
    /// not yet offered it, with a fresh timeout.
    pub(super) fn driver_cancel(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<Outcome> {
        let t = self.trip_mut(trip_id, fx)?;
        let driver_id = t.driver_id.ok_or_else(|| Error::Internal(format!("trip {trip_id} has no driver")))?;
        t.set_status(TripStatus::Searching, now)?;
        t.driver_id = None;
        t.searching_since = now;
        if let Some(o) = t.offer_to_mut(driver_id) {
            o.state = OfferState::Released;
        }
        if let Some(rider_price) = t.rider_offer_minor {
            // A bidding trip searches again at the rider's price: the agreement with the
            // driver who gave it back is over, and so is that driver's bid.
            t.fare.locked.agreed_minor = None;
            t.fare.estimate_minor = rider_price;
            t.bids.retain(|b| b.driver_id != driver_id);
        }
        let d = self.driver_mut(driver_id, fx)?;
        d.stats.cancelled_after_accept = d.stats.cancelled_after_accept.saturating_add(1);
        self.release_driver(driver_id, now, fx)?;
        self.deadlines.insert((now.plus_secs(self.rules.timeout_s), Deadline::TripTimeout(trip_id)));
        self.dispatch_round(trip_id, now, fx)?;
        self.trip_updated(trip_id, fx)
    }
}

/// 410 `offer_expired` unless the offer still waits for an answer at `now`.
fn check_live(offer: &Offer, trip_id: TripId, now: Timestamp) -> Result<()> {
    if offer.state == OfferState::Pending && offer.expires_at > now {
        Ok(())
    } else {
        Err(Error::OfferExpired(trip_id))
    }
}

/// A fare error on inputs the engine validated itself: a bug, or an absurd route.
fn fare_error(e: crate::fare::FareError) -> Error {
    crate::zone::fare_error(e)
}

/// The final price of a trip.
struct FinalPrice {
    fare_minor: i64,
    /// The distance billed.
    distance_m: u32,
    /// The distance the engine saw driven, whole metres.
    driven_m: u32,
    breakdown: Option<crate::fare::Breakdown>,
}

/// The final fare of `trip` completed at `now`: the locked prices and surge on the billed
/// distance ([`crate::fare::billed_distance_m`] of the driver's report `reported_m`, the
/// `driven_m` the engine saw and the planned route) and the actual ride time, plus the
/// waiting fee; or exactly the agreed price of a bidding trip.
fn final_price(trip: &Trip, reported_m: Option<u32>, driven_m: f64, now: Timestamp) -> Result<FinalPrice> {
    let locked = &trip.fare.locked;
    // `as` saturates (and maps NaN to 0): the odometer is a sum of finite steps anyway.
    let driven = driven_m.round().max(0.0) as u64;
    let billed = crate::fare::billed_distance_m(reported_m.map(u64::from), driven, locked.route.distance_m);
    let distance_m = u32::try_from(billed).unwrap_or(u32::MAX);
    let driven_m = u32::try_from(driven).unwrap_or(u32::MAX);
    if let Some(agreed) = locked.agreed_minor {
        return Ok(FinalPrice { fare_minor: agreed, distance_m, driven_m, breakdown: None });
    }
    let started = trip.started_at.unwrap_or(now);
    let secs = |from: Timestamp, to: Timestamp| u64::try_from(to.millis_since(from) / 1000).unwrap_or(0);
    let waited_s = trip.arrived_at.map_or(0, |arrived| secs(arrived, started));
    let actual = crate::route::Route {
        distance_m: u64::from(distance_m),
        duration_s: secs(started, now),
        source: locked.route.source,
    };
    let coupon = locked.coupon.as_ref().map(|c| &c.discount);
    let (pricing, currency, extra, surge) =
        (&locked.pricing, trip.fare.currency, locked.extra_fee_minor, trip.fare.surge_bps);
    let quote = match &trip.parcel {
        None => crate::fare::final_fare(pricing, currency, extra, &actual, surge, waited_s, coupon),
        Some(p) => crate::fare::parcel_fare(pricing, currency, extra, &actual, surge, waited_s, p.weight_g, coupon),
    }
    .map_err(fare_error)?;
    Ok(FinalPrice { fare_minor: quote.fare.amount_minor, distance_m, driven_m, breakdown: Some(quote.breakdown) })
}
