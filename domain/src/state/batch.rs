//! The batch window of batched matching (issue 22): a new search joins the window, and
//! when the window closes its trips are assigned together.
//!
//! Guarantees:
//! - in `MatchingMode::Batched`, a trip whose search starts (booked now, or a ride booked
//!   ahead reaching its dispatch) is `searching` with no offer until the window closes;
//!   the first such trip opens the window, with one `Deadline::BatchWindow` at
//!   `batch_window_ms` after it; at most [`MAX_BATCH_TRIPS`] trips wait (a trip finding
//!   the window full, a bidding trip — drivers bid on offers, so it wants a round — and a
//!   trip whose search would time out before a window closes are offered at once, as in
//!   greedy mode); the mode is the trip's zone's own when it has one, else the city's;
//! - the window's close happens inside `apply` of the `Tick` that fires its deadline, so a
//!   replay closes it at the same moment on the same state and makes the same offers;
//! - the close gives each waiting trip still searching its [`BATCH_CANDIDATES`] best
//!   eligible drivers (`State::best_eligible`: nearest, or ranked by the learning cost)
//!   and assigns by [`crate::matching::solve`]: as many trips as the candidates allow, at
//!   the least total cost among such assignments; no driver gets two trips of a window,
//!   and each assignment is its trip's first offer (round 1). A trip left unassigned
//!   gets a greedy round at once; after a lapse or a decline the rounds of greedy mode
//!   take over;
//! - the assigned offer is the trip's only one for `batch_exclusive_s` (a
//!   `Deadline::BatchExclusiveOver` then, logged like every deadline, so a replay does
//!   the same): if by then the trip is still searching in that round (no answer), one
//!   greedy round joins the pending offer — the only round ever made beside a pending
//!   one — and the first of them to accept wins, race-safe as every accept (the others
//!   are withdrawn). 0: the round goes with the assigned offer at once; `offer_ttl_s` or
//!   more: never (the rounds start at the lapse);
//! - a trip cancelled (or expired) while it waits simply leaves the window: the close
//!   skips every trip that is no longer searching or already has offers.

use std::collections::BTreeMap;

use super::{Deadline, Effects, State};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{TripId, UserId};
use crate::matching::{BATCH_CANDIDATES, Edge, MAX_BATCH_TRIPS, solve};
use crate::rules::MatchingMode;
use crate::trip::TripStatus;

impl State {
    /// The first round of a search that starts now: in batched mode the trip joins the
    /// batch window (opening it if none is open), else it is offered at once.
    pub(super) fn start_search(&mut self, trip_id: TripId, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let trip = self.trip_ref(trip_id)?;
        let bidding = trip.rider_offer_minor.is_some();
        if self.matching_in(trip.zone_id) != MatchingMode::Batched
            || bidding
            || self.batch.len() >= MAX_BATCH_TRIPS
            || !self.rules.window_fits_search()
        {
            return self.dispatch_round(trip_id, now, fx);
        }
        if self.batch.is_empty() {
            let closes = now.plus_millis(i64::from(self.rules.batch_window_ms));
            self.deadlines.insert((closes, Deadline::BatchWindow));
        }
        self.batch.push(trip_id);
        Ok(())
    }

    /// The matching mode of trips picked up in `zone`: the zone's own, else the city's.
    pub(super) fn matching_in(&self, zone: crate::id::ZoneId) -> MatchingMode {
        self.catalog.get(zone).and_then(|z| z.matching).unwrap_or(self.rules.matching)
    }

    /// The window closes: its trips still searching are assigned together (see the
    /// module's guarantees), the others left.
    pub(super) fn close_batch(&mut self, now: Timestamp, fx: &mut Effects) -> Result<()> {
        let waiting = std::mem::take(&mut self.batch);
        let trips: Vec<TripId> = waiting
            .into_iter()
            .filter(|id| self.trips.get(id).is_some_and(|t| t.status == TripStatus::Searching && t.offers.is_empty()))
            .collect();
        if trips.is_empty() {
            return Ok(());
        }
        let (edges, drivers, distances) = self.batch_candidates(&trips, now)?;
        let assigned = solve(trips.len(), drivers.len(), &edges);
        let mut has_offer = vec![false; trips.len()];
        for (t, d) in assigned {
            let (ti, di) = (t as usize, d as usize);
            let (trip_id, driver_id) = (trips[ti], drivers[di]);
            let distance_m = distances.get(&(t, d)).copied().unwrap_or(0);
            self.note_nearby(trip_id, now, fx)?;
            self.make_offers(trip_id, &[(driver_id, distance_m)], now, fx)?;
            has_offer[ti] = true;
            let exclusive = self.rules.batch_exclusive_s;
            if exclusive == 0 {
                self.round_of(trip_id, true, now, fx)?;
            } else if exclusive < self.rules.offer_ttl_s {
                let round = self.trip_ref(trip_id)?.round;
                self.deadlines.insert((now.plus_secs(exclusive), Deadline::BatchExclusiveOver { trip_id, round }));
            }
        }
        for (ti, trip_id) in trips.into_iter().enumerate() {
            if !has_offer[ti] {
                self.dispatch_round(trip_id, now, fx)?;
            }
        }
        Ok(())
    }

    /// The edges of a window's solve: each trip's [`BATCH_CANDIDATES`] best eligible drivers
    /// with their costs; the drivers (each once, in first-seen order) and each edge's
    /// distance to the pickup.
    #[allow(clippy::type_complexity)]
    fn batch_candidates(
        &self,
        trips: &[TripId],
        now: Timestamp,
    ) -> Result<(Vec<Edge>, Vec<UserId>, BTreeMap<(u32, u32), u32>)> {
        let mut edges = Vec::with_capacity(trips.len() * BATCH_CANDIDATES);
        let mut drivers: Vec<UserId> = Vec::new();
        let mut driver_index: BTreeMap<UserId, u32> = BTreeMap::new();
        let mut distances = BTreeMap::new();
        for (ti, trip_id) in trips.iter().enumerate() {
            let trip = self.trip_ref(*trip_id)?;
            let ti = u32::try_from(ti).unwrap_or(u32::MAX);
            for (driver_id, distance_m, cost) in self.best_eligible(trip, now, BATCH_CANDIDATES) {
                let di = *driver_index.entry(driver_id).or_insert_with(|| {
                    drivers.push(driver_id);
                    u32::try_from(drivers.len() - 1).unwrap_or(u32::MAX)
                });
                edges.push(Edge { trip: ti, driver: di, cost });
                distances.insert((ti, di), distance_m);
            }
        }
        Ok((edges, drivers, distances))
    }

    /// A window's assigned offer of `trip_id` (made in its round `round`) has been its only
    /// one for `batch_exclusive_s`: if the trip is still searching in that round (the
    /// driver has not answered; a decline or a lapse would have started a later round), a
    /// greedy round joins the pending offer, and whoever accepts first wins.
    pub(super) fn exclusive_over(
        &mut self,
        trip_id: TripId,
        round: u16,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<()> {
        let due = self.trips.get(&trip_id).is_some_and(|t| t.status == TripStatus::Searching && t.round == round);
        if due { self.round_of(trip_id, true, now, fx) } else { Ok(()) }
    }

    /// The trips waiting for the batch window (for the invariants and the tests).
    pub fn batch_waiting(&self) -> &[TripId] {
        &self.batch
    }
}
