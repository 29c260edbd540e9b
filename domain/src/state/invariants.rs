//! The cross-entity invariants ([`State::check_invariants`]): what every command must leave
//! true, checked after recovery and by the tests after every command.

use std::collections::HashMap;

use super::State;
use crate::driver::Availability;
use crate::id::UserId;
use crate::trip::{OfferState, TripStatus};
use crate::user::Role;

impl State {
    /// Checks every cross-entity invariant; `Err` names the first one broken.
    /// Run after recovery and by the tests after every step.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        self.check_share_invariants()?;
        self.outbox.check()?;
        self.hooks.check()?;
        self.check_payout_invariants()?;
        // ----- issue 20: S -----
        self.check_staff_invariants()?;
        self.check_batch_invariants()?;
        // The phone index names every user but the erased once, under the user's own role
        // and phone (users are never removed; a checkpoint stores both as rows of their
        // own); the erased have no phone.
        let erased = self.users.values().filter(|u| u.erased_at.is_some()).count();
        if self.phones.len() + erased != self.users.len() {
            return Err(format!("{} phone index entries for {} users", self.phones.len(), self.users.len()));
        }
        if self.users.values().any(|u| u.erased_at.is_some() && !u.phone.is_empty()) {
            return Err("an erased user keeps a phone".into());
        }
        // The staff's indexes are those of the users (issue 20: U): every user once, and —
        // in debug builds (every test), not at a production start, where it would double
        // the indexes' memory for a moment — exactly the users' keys.
        if self.user_index.len() != self.users.len() {
            return Err(format!("the user indexes hold {} users of {}", self.user_index.len(), self.users.len()));
        }
        if cfg!(debug_assertions) && self.user_index != crate::user_index::UserIndex::of(self.users.values()) {
            return Err("the user indexes differ from the users'".into());
        }
        for ((role, phone), id) in &self.phones {
            match self.users.get(id) {
                Some(u) if u.role == *role && u.phone == *phone => {}
                _ => return Err(format!("the phone index names {id} for a {role:?} {phone:?} it is not")),
            }
        }
        let mut open_by_rider: HashMap<UserId, u16> = HashMap::new();
        let mut scheduled_by_rider: HashMap<UserId, u16> = HashMap::new();
        for t in self.trips.values() {
            if t.messages.len() > crate::chat::MAX_MESSAGES_PER_TRIP {
                return Err(format!("trip {} holds {} chat messages", t.id, t.messages.len()));
            }
            if t.messages.iter().any(|m| m.trip_id != t.id) {
                return Err(format!("trip {} holds another trip's chat message", t.id));
            }
            if t.status == TripStatus::Scheduled {
                *scheduled_by_rider.entry(t.rider_id).or_default() += 1;
                // Nothing happens to a ride booked ahead before its dispatch.
                if !t.offers.is_empty() || t.round != 0 || t.scheduled_at.is_none() {
                    return Err(format!("scheduled trip {} has offers, a round or no scheduled_at", t.id));
                }
            } else if t.status.is_open() {
                *open_by_rider.entry(t.rider_id).or_default() += 1;
            }
            match (t.status.has_driver(), t.driver_id) {
                (true, Some(d)) => {
                    let driver = self.drivers.get(&d).ok_or(format!("trip {} names unknown driver {d}", t.id))?;
                    if driver.trip_id != Some(t.id) || driver.availability != Availability::OnTrip {
                        return Err(format!("trip {} has driver {d}, who is not on it", t.id));
                    }
                }
                (true, None) => {
                    return Err(format!("trip {} is {} without a driver", t.id, t.status));
                }
                (false, Some(_))
                    if matches!(t.status, TripStatus::Searching | TripStatus::Expired | TripStatus::Scheduled) =>
                {
                    return Err(format!("trip {} is {} with a driver", t.id, t.status));
                }
                _ => {}
            }
            if t.offers.iter().filter(|o| o.state == OfferState::Accepted).count() > 1 {
                return Err(format!("trip {} has two accepted offers", t.id));
            }
            for o in t.pending_offers() {
                if t.status != TripStatus::Searching {
                    return Err(format!("trip {} is {} with a pending offer", t.id, t.status));
                }
                let d = self.drivers.get(&o.driver_id).ok_or(format!("offer to unknown driver {}", o.driver_id))?;
                if !d.pending_offers.contains(&t.id) {
                    return Err(format!("driver {} does not know its offer of {}", d.id, t.id));
                }
            }
        }
        self.ledger.check()?;
        // Every remembered key has its expiry in the expiry order, and nothing else is there.
        let indexed = self
            .idempotency_expiry
            .iter()
            .all(|(at, actor, key)| self.idempotency.get(&(*actor, key.clone())).is_some_and(|r| r.expires_at == *at));
        if !indexed || self.idempotency_expiry.len() != self.idempotency.len() {
            return Err("idempotency keys and their expiry order disagree".into());
        }
        if open_by_rider != self.open_trips_by_rider {
            return Err("open trip counts per rider are off".into());
        }
        if scheduled_by_rider != self.scheduled_by_rider {
            return Err("scheduled trip counts per rider are off".into());
        }
        // `who` takes a driver record as proof of the driver role.
        if let Some(d) = self.drivers.keys().find(|id| self.users.get(*id).is_none_or(|u| u.role != Role::Driver)) {
            return Err(format!("driver record {d} is not a driver's"));
        }
        if self.index.0.len()
            != self.drivers.values().filter(|d| d.availability != Availability::Offline && d.fix.is_some()).count()
        {
            return Err("the spatial index holds a driver who is not at work".into());
        }
        for d in self.drivers.values() {
            match (d.availability, d.trip_id) {
                (Availability::OnTrip, Some(tid)) => {
                    let t = self.trips.get(&tid).ok_or(format!("driver {} on unknown trip {tid}", d.id))?;
                    if t.driver_id != Some(d.id) || !t.status.has_driver() {
                        return Err(format!("driver {} is on trip {tid}, which is not theirs", d.id));
                    }
                }
                (Availability::OnTrip, None) => {
                    return Err(format!("driver {} is on_trip without a trip", d.id));
                }
                (_, Some(tid)) => {
                    return Err(format!("driver {} is not on_trip but has trip {tid}", d.id));
                }
                _ => {}
            }
            let indexed = self.index.0.get(d.id).map(|i| i.position);
            let at_work = d.fix.filter(|_| d.availability != Availability::Offline).map(|f| f.point);
            if indexed != at_work {
                return Err(format!(
                    "driver {} ({}) is indexed at {indexed:?}, but is at {:?}",
                    d.id,
                    d.availability.as_str(),
                    d.fix
                ));
            }
            if (d.availability == Availability::Offline) != d.online_since.is_none() {
                return Err(format!(
                    "driver {} is {} with online_since {:?}",
                    d.id,
                    d.availability.as_str(),
                    d.online_since
                ));
            }
            for tid in &d.pending_offers {
                let pending =
                    self.trips.get(tid).and_then(|t| t.offer_to(d.id)).is_some_and(|o| o.state == OfferState::Pending);
                if !pending {
                    return Err(format!("driver {} lists an offer of {tid} that is not pending", d.id));
                }
            }
        }
        Ok(())
    }
}

impl State {
    /// The batch window (issue 22): at most `MAX_BATCH_TRIPS` trips, each once, each still
    /// searching without an offer (or no longer searching: it left the window); a waiting
    /// window has its closing deadline. A driver is idle (`available_since`) exactly while
    /// available, and its recent answers fit their window.
    fn check_batch_invariants(&self) -> std::result::Result<(), String> {
        let batch = self.batch_waiting();
        if batch.len() > crate::matching::MAX_BATCH_TRIPS {
            return Err(format!("{} trips wait in the batch window", batch.len()));
        }
        let distinct: std::collections::BTreeSet<_> = batch.iter().collect();
        if distinct.len() != batch.len() {
            return Err("a trip waits twice in the batch window".into());
        }
        for id in batch {
            if let Some(t) = self.trips.get(id)
                && t.status == TripStatus::Searching
                && (!t.offers.is_empty() || t.round != 0)
            {
                return Err(format!("trip {id} waits in the batch window with offers"));
            }
        }
        if !batch.is_empty() && !self.deadlines.iter().any(|(_, d)| *d == super::Deadline::BatchWindow) {
            return Err("trips wait in the batch window, which never closes".into());
        }
        for d in self.drivers.values() {
            if (d.availability == Availability::Available) != d.available_since.is_some() {
                return Err(format!(
                    "driver {} is {} with available_since {:?}",
                    d.id,
                    d.availability.as_str(),
                    d.available_since
                ));
            }
            if d.stats.recent_len > crate::driver::RECENT_ANSWERS {
                return Err(format!("driver {} keeps {} recent answers", d.id, d.stats.recent_len));
            }
        }
        Ok(())
    }

    /// A payout holds its amount exactly while it is requested or processing: its hold is
    /// an open pending transfer then, and never after (posted once when paid, voided when
    /// failed or rejected).
    fn check_payout_invariants(&self) -> std::result::Result<(), String> {
        use crate::payout::PayoutStatus::{Processing, Requested};
        for p in self.book.payouts.values() {
            let holding = matches!(p.status, Requested | Processing);
            if holding != self.ledger.is_open_pending(p.hold) {
                return Err(format!("payout {} is {} but its hold is open: {}", p.id, p.status.as_str(), !holding));
            }
            if p.amount_minor <= 0 {
                return Err(format!("payout {} of {}", p.id, p.amount_minor));
            }
            let unsent = p.status == Processing && p.sent_at.is_none();
            if unsent != self.book.unsent.contains(&p.id) {
                return Err(format!("payout {} is {} yet listed to send: {}", p.id, p.status.as_str(), !unsent));
            }
        }
        if let Some(stray) = self.book.unsent.iter().find(|id| !self.book.payouts.contains_key(*id)) {
            return Err(format!("payout {stray} is listed to send but unknown"));
        }
        let mut waiting: std::collections::BTreeMap<UserId, u16> = std::collections::BTreeMap::new();
        for t in self.book.top_ups.values().filter(|t| t.status == crate::payout::TopUpStatus::Pending) {
            *waiting.entry(t.user_id).or_default() += 1;
        }
        let counted: std::collections::BTreeMap<UserId, u16> =
            self.book.pending_top_ups.iter().map(|(u, n)| (*u, *n)).collect();
        if waiting != counted {
            return Err(format!("top-ups waiting per user {waiting:?}, counted {counted:?}"));
        }
        if let Some((u, n)) = waiting.iter().find(|(_, n)| **n > crate::payout::MAX_PENDING_TOP_UPS) {
            return Err(format!("{u} has {n} top-ups waiting"));
        }
        Ok(())
    }
}
