//! The trips' short references and share links.
//!
//! References: the state keeps an index of the references of the last 30 days
//! ([`REF_KEPT_S`]), reference → (trip, booked at), beside the same entries by age so the
//! oldest leave first (`purge_expired`, at every `Tick`). It outlives the trips' stay in
//! the hot state (finished trips leave for the history; their reference still names them
//! for 30 days, and readers find them there by id). A booking's reference is drawn by the
//! stamp among the free ones; `apply` refuses one still reserved, so two trips of the
//! last 30 days never share one — a replay carries the stamped reference and never clashes.
//!
//! Share links (`crate::share`): made by a trip's rider while the trip is open (at most
//! [`MAX_SHARES_PER_TRIP`]), revoked all at once by the rider, forgotten by housekeeping
//! once [`SHARE_AFTER_END_S`](crate::share::SHARE_AFTER_END_S) past the trip's end. When a trip leaves the hot state, its
//! links record when it ended, so they still expire on time.
//!
//! Guarantees: a refusal changes nothing; the two reference maps, and the links by id and
//! by trip, mirror each other (`check_invariants`).

use std::sync::Arc;

use super::{State, Who};
use crate::clock::Timestamp;
use crate::command::Outcome;
use crate::error::{Error, Result};
use crate::id::{ShareId, TripId};
use crate::share::{self, MAX_SHARES_PER_TRIP, Share};
use crate::trip_ref::{REF_KEPT_S, TripRef};

impl State {
    /// The trip booked with `reference` in the last 30 days (as of `now`), whether it is
    /// still in the hot state or has left for the history.
    pub fn trip_by_ref(&self, reference: TripRef, now: Timestamp) -> Option<TripId> {
        self.refs.get(&reference).filter(|(_, at)| at.plus_secs(REF_KEPT_S) > now).map(|(id, _)| *id)
    }

    /// Whether `reference` is in the index (reserved, or expired and not yet purged): the
    /// stamp draws another.
    pub(super) fn ref_taken(&self, reference: TripRef) -> bool {
        self.refs.contains_key(&reference)
    }

    /// Refuses a reference still reserved for a trip of the last 30 days.
    pub(super) fn check_ref_free(&self, reference: TripRef, now: Timestamp) -> Result<()> {
        match self.trip_by_ref(reference, now) {
            Some(other) => Err(Error::Invalid(format!("reference {reference} is taken by trip {other}"))),
            None => Ok(()),
        }
    }

    /// Reserves `reference` for `trip_id`, booked at `now` (replacing an expired entry).
    pub(super) fn record_ref(&mut self, reference: TripRef, trip_id: TripId, now: Timestamp) {
        if let Some((_, old)) = self.refs.insert(reference, (trip_id, now)) {
            self.refs_by_age.remove(&(old, reference));
        }
        self.refs_by_age.insert((now, reference));
    }

    /// Forgets the references booked 30 days or more before `now`.
    pub(super) fn prune_refs(&mut self, now: Timestamp) {
        while let Some(&(at, reference)) = self.refs_by_age.get_min() {
            if at.plus_secs(REF_KEPT_S) > now {
                break;
            }
            self.refs_by_age.remove_min();
            self.refs.remove(&reference);
        }
    }

    /// The references in the index (for tests and invariants).
    pub fn refs_len(&self) -> usize {
        self.refs.len()
    }

    /// A share link, if it exists (expired links exist until housekeeping forgets them:
    /// see [`State::share_live`]).
    pub fn share(&self, id: ShareId) -> Option<&Share> {
        self.shares.get(&id)
    }

    /// The links of a trip.
    pub fn shares_of(&self, trip_id: TripId) -> &[ShareId] {
        self.trip_shares.get(&trip_id).map_or(&[], Vec::as_slice)
    }

    /// The trip a link shows, if the link exists and works at `now`: while its trip is
    /// open and until [`SHARE_AFTER_END_S`](crate::share::SHARE_AFTER_END_S) after the trip ended. A trip that left the
    /// hot state is judged by the end its links recorded then.
    pub fn share_live(&self, id: ShareId, now: Timestamp) -> Option<TripId> {
        let s = self.shares.get(&id)?;
        let live = match self.trips.get(&s.trip_id) {
            Some(t) => share::is_live(t, now),
            None => share::ends_at(s.trip_ended_at).is_some_and(|end| now < end),
        };
        live.then_some(s.trip_id)
    }

    pub(super) fn create_share(
        &mut self,
        who: Who,
        id: Option<ShareId>,
        trip_id: TripId,
        now: Timestamp,
    ) -> Result<Outcome> {
        let Who::Rider(rider_id) = who else {
            return Err(Error::Forbidden("only a trip's rider shares it".into()));
        };
        let id = id.ok_or_else(|| Error::Internal("share id not stamped".into()))?;
        let trip = self.trips.get(&trip_id).filter(|t| t.rider_id == rider_id);
        let trip = Arc::clone(trip.ok_or_else(|| Error::not_found("trip", trip_id))?);
        if trip.status.is_terminal() {
            return Err(Error::InvalidTransition {
                action: "share",
                entity: format!("trip {trip_id}"),
                from: trip.status.as_str(),
            });
        }
        if self.shares_of(trip_id).len() >= MAX_SHARES_PER_TRIP {
            return Err(Error::InvalidTransition {
                action: "share",
                entity: format!("trip {trip_id}"),
                from: "at its limit of 5 share links (revoke them to make new ones)",
            });
        }
        if self.shares.contains_key(&id) {
            return Err(Error::Invalid(format!("share {id} already exists")));
        }
        self.shares.insert(id, Share { trip_id, rider_id, created_at: now, trip_ended_at: None });
        self.trip_shares.entry(trip_id).or_default().push(id);
        self.schedule_housekeeping(now);
        Ok(Outcome::Share { id, trip })
    }

    /// Removes every link of the trip. The trip may have left the hot state: its links
    /// then say whose they are. A trip with no link (or none hot) revokes nothing.
    pub(super) fn revoke_shares(&mut self, who: Who, trip_id: TripId) -> Result<Outcome> {
        let Who::Rider(rider_id) = who else {
            return Err(Error::Forbidden("only a trip's rider revokes its share links".into()));
        };
        let owner = match self.trips.get(&trip_id) {
            Some(t) => Some(t.rider_id),
            None => self.shares_of(trip_id).first().and_then(|s| self.shares.get(s)).map(|s| s.rider_id),
        };
        if owner.is_some_and(|o| o != rider_id) {
            return Err(Error::not_found("trip", trip_id));
        }
        for id in self.trip_shares.remove(&trip_id).unwrap_or_default() {
            self.shares.remove(&id);
        }
        Ok(Outcome::Done)
    }

    /// The links of trips leaving the hot state record when the trip ended.
    pub(super) fn shares_outlive(&mut self, trip_id: TripId, ended_at: Option<Timestamp>) {
        for id in self.trip_shares.get(&trip_id).map_or(&[][..], Vec::as_slice) {
            if let Some(s) = self.shares.get_mut(id) {
                s.trip_ended_at = ended_at;
            }
        }
    }

    /// Forgets the links that stopped working (housekeeping).
    pub(super) fn prune_shares(&mut self, now: Timestamp) {
        let dead: Vec<TripId> = self
            .trip_shares
            .iter()
            .filter(|(_, ids)| ids.first().is_none_or(|id| self.share_live(*id, now).is_none()))
            .map(|(trip_id, _)| *trip_id)
            .collect();
        for trip_id in dead {
            for id in self.trip_shares.remove(&trip_id).unwrap_or_default() {
                self.shares.remove(&id);
            }
        }
    }

    /// Whether links are kept (housekeeping keeps running while some are).
    pub(super) fn has_shares(&self) -> bool {
        !self.shares.is_empty()
    }

    /// The reference and link invariants (`check_invariants`).
    pub(super) fn check_share_invariants(&self) -> std::result::Result<(), String> {
        if self.refs.len() != self.refs_by_age.len()
            || self.refs_by_age.iter().any(|(at, r)| self.refs.get(r).is_none_or(|(_, a)| a != at))
        {
            return Err("the reference index and its by-age order disagree".into());
        }
        let listed: usize = self.trip_shares.values().map(Vec::len).sum();
        if listed != self.shares.len() {
            return Err("share links by trip and by id disagree".into());
        }
        for (trip_id, ids) in &self.trip_shares {
            if ids.is_empty() || ids.len() > MAX_SHARES_PER_TRIP {
                return Err(format!("trip {trip_id} lists {} share links", ids.len()));
            }
            if ids.iter().any(|id| self.shares.get(id).is_none_or(|s| s.trip_id != *trip_id)) {
                return Err(format!("trip {trip_id} lists a share link of another trip"));
            }
        }
        Ok(())
    }
}
