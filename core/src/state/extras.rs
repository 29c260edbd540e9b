//! Bidding, ratings, safety alerts and idempotency: the handlers around the trip's core.
//!
//! Guarantees:
//! - a bid is made only by a driver offered the trip, on a searching bidding trip, and
//!   accepting one assigns the trip to that driver at that price in the same command
//!   (like an accept: no second winner);
//! - a trip is rated once by its rider and once by its driver, after completion;
//! - an alert is raised only by the trip's rider or driver and acknowledged once by staff;
//! - a keyed command's first success is stored in the same command that makes the
//!   change, so after any crash the key and the change are both there or both absent.

use std::sync::Arc;

use super::{Effects, MAX_BID_MINOR, Remembered, State, Who};
use crate::alert::{Alert, AlertStatus, MAX_NOTE_LEN};
use crate::clock::Timestamp;
use crate::command::{Actor, Command, Event, IdempotencyKey, Outcome};
use crate::driver::Availability;
use crate::error::{Error, Result};
use crate::geo::LatLng;
use crate::id::{AlertId, BidId, TripId, UserId};
use crate::trip::{Bid, MAX_BIDS_PER_TRIP, MAX_COMMENT_LEN, Rating, TripStatus};

impl State {
    /// An alert.
    pub fn alert(&self, id: AlertId) -> Option<&Arc<Alert>> {
        self.alerts.get(&id)
    }

    /// Every alert, by id.
    pub fn alerts(&self) -> impl Iterator<Item = &Arc<Alert>> {
        self.alerts.values()
    }

    pub(super) fn place_bid(
        &mut self,
        who: Who,
        id: Option<BidId>,
        trip_id: TripId,
        amount_minor: i64,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = id.ok_or_else(|| Error::Internal("bid id not stamped".into()))?;
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let driver_id = self.driver_of(who)?;
        let offer = trip.offer_to(driver_id).ok_or(Error::NotOffered(trip_id))?;
        if trip.rider_offer_minor.is_none() {
            return Err(Error::Invalid(format!("trip {trip_id} takes no bids: the rider did not name a price")));
        }
        if trip.status != TripStatus::Searching {
            return Err(trip.refuse("bid on"));
        }
        if !(1..=MAX_BID_MINOR).contains(&amount_minor) {
            return Err(Error::Invalid(format!("amount_minor must be 1 to {MAX_BID_MINOR}")));
        }
        let driver = self.driver_ref(driver_id)?;
        if driver.availability != Availability::Available || driver.suspended {
            return Err(Error::DriverNotAvailable(driver_id));
        }
        let replaces = trip.bids.iter().position(|b| b.driver_id == driver_id);
        if replaces.is_none() && trip.bids.len() >= MAX_BIDS_PER_TRIP {
            return Err(Error::Invalid(format!("trip {trip_id} has too many bids")));
        }
        let bid = Bid { id, driver_id, amount_minor, distance_to_pickup_m: offer.distance_to_pickup_m, at: now };
        let t = self.trip_mut(trip_id, fx)?;
        // A driver has one bid per trip: a new one replaces the old.
        match replaces {
            Some(i) => t.bids[i] = bid.clone(),
            None => t.bids.push(bid.clone()),
        }
        t.updated_at = now;
        let trip = Arc::clone(self.trip_ref(trip_id)?);
        fx.events.push(Event::TripUpdated { trip: Arc::clone(&trip) });
        Ok(Outcome::Bid { bid, trip })
    }

    pub(super) fn accept_bid(
        &mut self,
        who: Who,
        trip_id: TripId,
        bid_id: BidId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        match who {
            Who::Rider(id) if id == trip.rider_id => {}
            Who::Driver(_) | Who::Staff { .. } if trip.offer_to_any(who) => {
                return Err(Error::Forbidden("only the trip's rider picks a bid".into()));
            }
            _ => return Err(Error::not_found("trip", trip_id)),
        }
        let bid = trip.bids.iter().find(|b| b.id == bid_id).cloned().ok_or_else(|| Error::not_found("bid", bid_id))?;
        if trip.status != TripStatus::Searching {
            return Err(trip.refuse("accept a bid of"));
        }
        let driver = self.driver_ref(bid.driver_id)?;
        if driver.availability != Availability::Available || driver.suspended {
            return Err(Error::DriverNotAvailable(bid.driver_id));
        }
        let t = self.trip_mut(trip_id, fx)?;
        t.fare.locked.agreed_minor = Some(bid.amount_minor);
        t.fare.estimate_minor = bid.amount_minor;
        self.assign(trip_id, bid.driver_id, now, fx)
    }

    pub(super) fn rate_trip(
        &mut self,
        who: Who,
        trip_id: TripId,
        stars: u8,
        comment: Option<&str>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let by_rider = match who {
            Who::Rider(id) if id == trip.rider_id => true,
            Who::Driver(id) if trip.completed_by(id) => false,
            _ => return Err(Error::not_found("trip", trip_id)),
        };
        if !(1..=5).contains(&stars) {
            return Err(Error::Invalid("stars must be 1 to 5".into()));
        }
        if let Some(c) = comment
            && (c.chars().count() > MAX_COMMENT_LEN || c.chars().any(|ch| ch.is_control() && ch != '\n'))
        {
            return Err(Error::Invalid(format!(
                "comment must be at most {MAX_COMMENT_LEN} characters, without control characters"
            )));
        }
        let already = if by_rider { trip.rider_rating.is_some() } else { trip.driver_rating.is_some() };
        if trip.status != TripStatus::Completed || already {
            return Err(Error::InvalidTransition {
                action: "rate",
                entity: format!("trip {trip_id}"),
                from: if already { "rated" } else { trip.status.as_str() },
            });
        }
        let rating = Some(Rating { stars, comment: comment.map(str::to_owned), at: now });
        let t = self.trip_mut(trip_id, fx)?;
        if by_rider {
            t.rider_rating = rating;
        } else {
            t.driver_rating = rating;
        }
        Ok(Outcome::Trip(Arc::clone(self.trip_ref(trip_id)?)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn raise_sos(
        &mut self,
        who: Who,
        id: Option<AlertId>,
        trip_id: TripId,
        location: Option<LatLng>,
        note: Option<&str>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = id.ok_or_else(|| Error::Internal("alert id not stamped".into()))?;
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let raised_by = match who {
            Who::Rider(u) if u == trip.rider_id => u,
            Who::Driver(u) if trip.driver_id == Some(u) || trip.completed_by(u) => u,
            _ => return Err(Error::not_found("trip", trip_id)),
        };
        if let Some(n) = note
            && (n.chars().count() > MAX_NOTE_LEN || n.chars().any(|c| c.is_control() && c != '\n'))
        {
            return Err(Error::Invalid(format!(
                "note must be at most {MAX_NOTE_LEN} characters, without control characters"
            )));
        }
        if self.alerts.contains_key(&id) {
            return Err(Error::Internal(format!("alert {id} already exists")));
        }
        // Where: what the app said, else the driver's last position, else the pickup.
        let location = location
            .or_else(|| trip.driver_id.and_then(|d| self.drivers.get(&d)).and_then(|d| d.fix).map(|f| f.point))
            .or(Some(trip.pickup.point));
        let alert = Arc::new(Alert {
            id,
            trip_id,
            raised_by,
            location,
            note: note.map(str::to_owned),
            raised_at: now,
            status: AlertStatus::Open,
            acknowledged_by: None,
            acknowledged_at: None,
        });
        self.alerts.insert(id, Arc::clone(&alert));
        fx.catalog = true;
        fx.events.push(Event::AlertRaised { alert: Arc::clone(&alert) });
        Ok(Outcome::Alert(alert))
    }

    pub(super) fn ack_alert(
        &mut self,
        who: Who,
        actor: Actor,
        alert_id: AlertId,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if !matches!(who, Who::Staff { .. } | Who::System) {
            return Err(Error::Forbidden("only staff acknowledge alerts".into()));
        }
        let alert = self.alerts.get_mut(&alert_id).ok_or_else(|| Error::not_found("alert", alert_id))?;
        if alert.status != AlertStatus::Open {
            return Err(Error::InvalidTransition {
                action: "acknowledge",
                entity: format!("alert {alert_id}"),
                from: alert.status.as_str(),
            });
        }
        let a = Arc::make_mut(alert);
        a.status = AlertStatus::Acknowledged;
        a.acknowledged_by = match actor {
            Actor::User(u) => Some(u),
            Actor::Admin | Actor::System => None,
        };
        a.acknowledged_at = Some(now);
        fx.catalog = true;
        Ok(Outcome::Alert(Arc::clone(alert)))
    }

    /// A success remembered under `(principal, key)`, if still kept.
    pub fn remembered(&self, principal: Actor, key: &str) -> Option<&Arc<Remembered>> {
        self.idempotency.get(&(principal, key.to_owned()))
    }

    pub(super) fn keyed(
        &mut self,
        actor: Actor,
        key: &IdempotencyKey,
        command: &Command,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        key.validate()?;
        if key.principal != actor {
            return Err(Error::Forbidden("an idempotency key belongs to the actor that sends it".into()));
        }
        if matches!(command, Command::Keyed { .. } | Command::Tick | Command::UpdateLocation(_)) {
            return Err(Error::Invalid(format!("{} commands take no idempotency key", command.name())));
        }
        if let Some(seen) = self.remembered(actor, &key.key) {
            return if seen.request_hash == key.request_hash {
                Ok(Outcome::Replayed(Box::new(seen.outcome.clone())))
            } else {
                Err(Error::IdempotencyKeyReused)
            };
        }
        let outcome = self.dispatch_command(actor, command, now, fx)?;
        let expires_at = now.plus_secs(self.rules.idempotency_ttl_s);
        let remembered = Remembered { request_hash: key.request_hash, outcome: outcome.clone(), expires_at };
        self.idempotency.insert((actor, key.key.clone()), Arc::new(remembered));
        self.idempotency_expiry.insert((expires_at, actor, key.key.clone()));
        Ok(outcome)
    }

    /// Forgets idempotency keys past their time.
    pub(super) fn purge_expired(&mut self, now: Timestamp) {
        while let Some((at, _, _)) = self.idempotency_expiry.first() {
            if *at > now {
                break;
            }
            if let Some((_, actor, key)) = self.idempotency_expiry.pop_first() {
                self.idempotency.remove(&(actor, key));
            }
        }
    }
}

impl crate::trip::Trip {
    /// Whether `driver` completed this trip.
    pub(crate) fn completed_by(&self, driver: UserId) -> bool {
        self.status == TripStatus::Completed && self.driver_id == Some(driver)
    }

    /// Whether `who` is a driver offered this trip (for telling "not yours" from "unknown").
    pub(super) fn offer_to_any(&self, who: Who) -> bool {
        match who {
            Who::Driver(id) => self.offer_to(id).is_some() || self.driver_id == Some(id),
            Who::Staff { .. } => true,
            _ => false,
        }
    }
}
