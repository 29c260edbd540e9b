//! Bidding, ratings, safety alerts and idempotency: the handlers around the trip's core.
//!
//! Guarantees:
//! - a bid is made only by a driver offered the trip, on a searching bidding trip, and
//!   accepting one assigns the trip to that driver at that price in the same command
//!   (like an accept: no second winner), only while the bidder can still drive it
//!   (available, not suspended, connected, with a fresh position); a wallet trip's hold
//!   is moved to the bid's amount in that command, or the accept is refused with
//!   `insufficient_funds`;
//! - a trip is rated once by its rider and once by its driver, after completion, and the
//!   rated user's rating totals (sum of stars, count) move in the same command;
//! - an alert is raised only by the trip's rider or driver and acknowledged once by staff;
//! - a keyed command's first success is stored in the same command that makes the
//!   change, so after any crash the key and the change are both there or both absent;
//! - a key answers the same (its replay, or `idempotency_key_reused`) until it expires,
//!   whether it is hot or was moved to the history: a checkpoint writes keys older than
//!   the hot window there, and only then does the `Archive` record take them out of the
//!   hot state; the writer stamps what the history holds into a keyed command whose key
//!   is not hot (`Command::Keyed::archived`). Gateway event ids move the same way.

use std::sync::Arc;

use super::{Effects, MAX_BID_MINOR, State, Who};
use crate::alert::{Alert, AlertStatus, MAX_NOTE_LEN, MAX_OPEN_ALERTS_PER_USER, SOS_AFTER_END_S};
use crate::clock::Timestamp;
use crate::command::Remembered;
use crate::command::{Actor, Command, Event, IdempotencyKey, Outcome};
use crate::driver::Availability;
use crate::error::{Error, Result};
use crate::geo::LatLng;
use crate::id::{AlertId, BidId, TransferId, TripId, UserId};
use crate::ledger::{AccountKey, AccountKind, Op, Transfer, TransferCode, TransferState};
use crate::trip::{Bid, MAX_BIDS_PER_TRIP, MAX_COMMENT_LEN, PaymentMethod, Rating, Trip, TripStatus};

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
        // The bidder must still be able to drive the trip now: a bid outlives its offer's
        // ttl (the rider needs time to compare), never the driver's availability.
        let driver = self.driver_ref(bid.driver_id)?;
        let reachable = driver.availability == Availability::Available
            && !driver.suspended
            && !driver.is_disconnected()
            && driver.has_fresh_fix(now, self.rules.stale_location_s);
        if !reachable {
            return Err(Error::DriverNotAvailable(bid.driver_id));
        }
        // The wallet hold follows the agreed price: the last check (it can refuse with
        // insufficient_funds) and the first write.
        let hold = if trip.payment.method == PaymentMethod::Wallet {
            let (ops, hold) = self.bid_hold_ops(trip, &bid, now);
            self.apply_money(&ops, fx)?;
            hold
        } else {
            trip.payment.hold
        };
        let t = self.trip_mut(trip_id, fx)?;
        t.fare.locked.agreed_minor = Some(bid.amount_minor);
        t.fare.estimate_minor = bid.amount_minor;
        t.payment.hold = hold;
        self.assign(trip_id, bid.driver_id, now, fx)
    }

    /// The ledger ops that move a wallet trip's hold to the accepted bid's amount (the
    /// old hold voided, a new one for the bid, in one linked batch), and the hold after
    /// them. No ops when the hold already holds that amount. The transfer ids derive from
    /// the trip and the bid, so replay recreates them, and a trip accepts a bid once
    /// (a driver who gives a trip back loses their bid: see `State::driver_cancel`).
    fn bid_hold_ops(&self, trip: &Trip, bid: &Bid, now: Timestamp) -> (Vec<Op>, Option<TransferId>) {
        let open = trip.payment.hold.filter(|h| self.ledger.is_open_pending(*h));
        let held = open.and_then(|h| self.ledger.transfer(h)).map(|t| t.amount);
        if held == Some(bid.amount_minor) {
            return (Vec::new(), open);
        }
        let mut ops = Vec::new();
        if let Some(old) = open {
            ops.push(Op::Void { id: bid_transfer_id(trip.id, bid.id, 1), pending: old, at: now });
        }
        let id = bid_transfer_id(trip.id, bid.id, 2);
        ops.push(Op::Create(Transfer {
            id,
            debit: AccountKey::of(AccountKind::RiderWallet, trip.rider_id, trip.fare.currency),
            credit: AccountKey::platform(AccountKind::Escrow, trip.fare.currency),
            amount: bid.amount_minor,
            code: TransferCode::Hold,
            state: TransferState::Pending,
            trip_id: Some(trip.id),
            at: now,
        }));
        (ops, Some(id))
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
        // `rider_rating` is the rider's rating of the ride, so of its driver; `driver_rating`
        // the driver's rating of the rider. The rated user's totals move with it.
        let rated = if by_rider { trip.driver_id } else { Some(trip.rider_id) };
        let rating = Some(Rating { stars, comment: comment.map(str::to_owned), at: now });
        let t = self.trip_mut(trip_id, fx)?;
        if by_rider {
            t.rider_rating = rating;
        } else {
            t.driver_rating = rating;
        }
        if let Some(rated) = rated
            && let Some(u) = self.users.get_mut(&rated)
        {
            Arc::make_mut(u).rating.add(stars);
            fx.users.push(rated);
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
        // A live trip, or one that just ended (the rider out of the car): never an old one.
        let ended_long_ago = trip.status.is_terminal()
            && trip.ended_at.is_none_or(|ended| now.millis_since(ended) > i64::from(SOS_AFTER_END_S) * 1000);
        if ended_long_ago {
            return Err(Error::InvalidTransition {
                action: "raise an SOS on",
                entity: format!("trip {trip_id}"),
                from: trip.status.as_str(),
            });
        }
        // Where: what the app said, else the driver's last position, else the pickup.
        let location = location
            .or_else(|| trip.driver_id.and_then(|d| self.drivers.get(&d)).and_then(|d| d.fix).map(|f| f.point))
            .or(Some(trip.pickup.point));
        let mine = |a: &&Arc<Alert>| a.raised_by == raised_by && a.status == AlertStatus::Open;
        // Raised again while open: the same alert, more urgent. The hot set holds open
        // alerts and those acknowledged since the last checkpoint: a short scan.
        if let Some(open) = self.alerts.values().filter(mine).find(|a| a.trip_id == trip_id).map(|a| a.id) {
            let a = Arc::make_mut(self.alerts.get_mut(&open).ok_or_else(|| Error::Internal("alert vanished".into()))?);
            a.count = a.count.saturating_add(1);
            a.last_raised_at = now;
            a.location = location;
            if let Some(n) = note {
                a.note = Some(n.to_owned());
            }
            let alert = Arc::clone(&self.alerts[&open]);
            fx.alerts.push(open);
            fx.events.push(Event::AlertRaised { alert: Arc::clone(&alert) });
            return Ok(Outcome::Alert(alert));
        }
        if self.alerts.values().filter(mine).count() >= MAX_OPEN_ALERTS_PER_USER {
            return Err(Error::RateLimited { what: "open SOS alerts (staff have them)", retry_after_s: 60 });
        }
        if self.alerts.contains_key(&id) {
            return Err(Error::Internal(format!("alert {id} already exists")));
        }
        let alert = Arc::new(Alert {
            id,
            trip_id,
            raised_by,
            location,
            note: note.map(str::to_owned),
            raised_at: now,
            count: 1,
            last_raised_at: now,
            status: AlertStatus::Open,
            acknowledged_by: None,
            acknowledged_at: None,
        });
        self.alerts.insert(id, Arc::clone(&alert));
        fx.alerts.push(id);
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
        fx.alerts.push(alert_id);
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
        archived: Option<&Remembered>,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        key.validate()?;
        if key.principal != actor {
            return Err(Error::Forbidden("an idempotency key belongs to the actor that sends it".into()));
        }
        if matches!(command, Command::Keyed { .. } | Command::Tick | Command::UpdateLocation(_) | Command::Positions(_))
        {
            return Err(Error::Invalid(format!("{} commands take no idempotency key", command.name())));
        }
        // The hot entry, else what the history keeps (stamped by the writer), if not expired.
        let seen = self.remembered(actor, &key.key).map(|r| &**r).or_else(|| archived.filter(|r| r.expires_at > now));
        if let Some(seen) = seen {
            return if seen.request_hash == key.request_hash {
                Ok(Outcome::Replayed(Box::new(seen.outcome.clone())))
            } else {
                Err(Error::IdempotencyKeyReused)
            };
        }
        let outcome = self.dispatch_command(actor, command, now, fx)?;
        let expires_at = now.plus_secs(self.rules.idempotency_ttl_s);
        let remembered =
            Remembered { request_hash: key.request_hash, outcome: outcome.clone(), stored_at: now, expires_at };
        self.idempotency.insert((actor, key.key.clone()), Arc::new(remembered));
        self.idempotency_expiry.insert((expires_at, actor, key.key.clone()));
        Ok(outcome)
    }

    /// How many idempotency keys the hot state holds.
    pub fn idempotency_keys(&self) -> usize {
        self.idempotency.len()
    }

    /// When `gateway`'s event `event_id` was first seen, if the hot state holds it.
    pub fn gateway_event_seen(&self, gateway: &str, event_id: &str) -> Option<Timestamp> {
        self.gateway_events.get(&(gateway.to_owned(), event_id.to_owned())).copied()
    }

    /// How many gateway event ids the hot state holds.
    pub fn gateway_event_ids(&self) -> usize {
        self.gateway_events.len()
    }

    /// Idempotency keys for the history: stored at or before `stored_before` and still
    /// kept at `now`, in expiry order (with the TTL unchanged, oldest first), stopping at
    /// the first one stored later, at `max` keys, or once they would take more than
    /// `max_bytes` in an `Archive` record (`ARCHIVED_ENTRY_BYTES` each besides the key).
    pub fn archivable_keys(
        &self,
        stored_before: Timestamp,
        now: Timestamp,
        max: usize,
        max_bytes: usize,
    ) -> Vec<(Actor, String, Arc<Remembered>)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (expires_at, actor, key) in &self.idempotency_expiry {
            let size = key.len() + ARCHIVED_ENTRY_BYTES;
            if out.len() >= max || bytes + size > max_bytes {
                break;
            }
            let Some(r) = self.idempotency.get(&(*actor, key.clone())) else { continue };
            if r.expires_at != *expires_at || *expires_at <= now {
                continue; // expired: `Tick` forgets it
            }
            if r.stored_at > stored_before {
                break;
            }
            bytes += size;
            out.push((*actor, key.clone(), Arc::clone(r)));
        }
        out
    }

    /// Gateway event ids for the history: seen at or before `seen_before` and still
    /// kept at `now`, at most `max` of them and `max_bytes` of an `Archive` record.
    pub fn archivable_gateway_events(
        &self,
        seen_before: Timestamp,
        now: Timestamp,
        max: usize,
        max_bytes: usize,
    ) -> Vec<(String, String, Timestamp)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for ((gateway, event_id), seen_at) in &self.gateway_events {
            let size = gateway.len() + event_id.len() + ARCHIVED_ENTRY_BYTES;
            if out.len() >= max || bytes + size > max_bytes {
                break;
            }
            if *seen_at <= seen_before && super::account::gateway_event_kept(*seen_at, now) {
                bytes += size;
                out.push((gateway.clone(), event_id.clone(), *seen_at));
            }
        }
        out
    }

    /// Forgets the keys and event ids whose history rows are durable (`Command::Archive`):
    /// each only if the hot entry is still the one written there (the same expiry, the
    /// same time seen). Cannot fail.
    pub(super) fn archive_keys(&mut self, keys: &[(Actor, String, Timestamp)], events: &[(String, String, Timestamp)]) {
        for (actor, key, expires_at) in keys {
            let id = (*actor, key.clone());
            if self.idempotency.get(&id).is_some_and(|r| r.expires_at == *expires_at) {
                self.idempotency.remove(&id);
                self.idempotency_expiry.remove(&(*expires_at, id.0, id.1));
            }
        }
        for (gateway, event_id, seen_at) in events {
            let id = (gateway.clone(), event_id.clone());
            if self.gateway_events.get(&id) == Some(seen_at) {
                self.gateway_events.remove(&id);
            }
        }
    }

    /// Forgets idempotency keys past their time.
    pub(super) fn purge_expired(&mut self, now: Timestamp) {
        self.prune_refs(now);
        while let Some((at, _, _)) = self.idempotency_expiry.get_min() {
            if *at > now {
                break;
            }
            if let Some((_, actor, key)) = self.idempotency_expiry.remove_min() {
                self.idempotency.remove(&(actor, key));
            }
        }
    }
}

/// Most bytes an archived key or event id takes in an `Archive` record besides its
/// strings (postcard: the principal, a timestamp, length prefixes).
pub const ARCHIVED_ENTRY_BYTES: usize = 32;

/// The id of transfer `n` of accepting `bid` on `trip`: a fixed mixing (splitmix64) of the
/// three, never zero. A clash with another transfer is caught by the ledger
/// (`ExistsWithDifferent`), never merged.
fn bid_transfer_id(trip: TripId, bid: BidId, n: u64) -> TransferId {
    let mut z = trip.raw() ^ bid.raw().rotate_left(29) ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    TransferId::from_nonzero(std::num::NonZeroU64::new(z).unwrap_or(std::num::NonZeroU64::MIN))
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
