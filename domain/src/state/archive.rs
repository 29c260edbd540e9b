//! Archiving and restoring: finished trips, settled transfers and acknowledged alerts leave
//! the hot state once their history rows are durable, and a finished trip read back from
//! the history comes back for the one command about it.
//!
//! Guarantees: only the engine archives; an open trip is never archived; a trip leaves only
//! at the revision the history holds (a change made since stays hot); a restored trip stays
//! only if its command succeeds, and never replaces a hot copy.

use std::sync::Arc;

use super::{Effects, State, Who};
use crate::alert::{Alert, AlertStatus};
use crate::clock::Timestamp;
use crate::command::{Actor, Command, Outcome};
use crate::error::{Error, Result};
use crate::id::{AlertId, TripId};
use crate::trip::Trip;

impl State {
    /// Removes finished trips whose history rows are durable. All checks come first.
    pub(super) fn archive(
        &mut self,
        who: Who,
        trips: &[(TripId, u32)],
        transfer_ids: &[crate::id::TransferId],
        alerts: &[AlertId],
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if who != Who::System {
            return Err(Error::Forbidden("only the engine archives trips".into()));
        }
        // Only the revision the history holds may leave: a change applied between the
        // checkpoint's snapshot and this record (acknowledged, so durable in the log)
        // would otherwise be lost with the hot copy.
        let unchanged = |id: &TripId, revision: &u32| self.trips.get(id).filter(|t| t.revision == *revision);
        if let Some(open) = trips.iter().filter_map(|(id, rev)| unchanged(id, rev)).find(|t| t.status.is_open()) {
            return Err(Error::Internal(format!("trip {} is {} and cannot be archived", open.id, open.status)));
        }
        if let Some(open) = alerts.iter().filter_map(|id| self.alerts.get(id)).find(|a| a.status == AlertStatus::Open) {
            return Err(Error::Internal(format!("alert {} is open and cannot be archived", open.id)));
        }
        // Settled transfers never change again, so each can go whatever its trip does.
        self.ledger.forget(transfer_ids).map_err(|e| Error::Internal(format!("cannot archive transfers: {e}")))?;
        fx.transfers.extend_from_slice(transfer_ids);
        for (id, revision) in trips {
            if self.trips.get(id).is_some_and(|t| t.revision == *revision) {
                if let Some(t) = self.trips.remove(id) {
                    self.shares_outlive(*id, t.ended_at);
                }
                fx.trips.push(*id);
            }
        }
        // An acknowledged alert never changes again: it goes as written.
        for id in alerts {
            if self.alerts.remove(id).is_some() {
                fx.alerts.push(*id);
            }
        }
        Ok(Outcome::Done)
    }

    /// Puts a finished trip read back from the history into the state, then applies
    /// `command` (see `Command::Restored`). A trip that is hot already is not replaced:
    /// the hot copy is the newer.
    pub(super) fn restored(
        &mut self,
        actor: Actor,
        trip: &Arc<Trip>,
        command: &Command,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        if matches!(command, Command::Restored { .. }) || command.trip_id() != Some(trip.id) {
            return Err(Error::Internal("a restored trip must be the one its command acts on".into()));
        }
        if self.trips.contains_key(&trip.id) {
            return self.dispatch_command(actor, command, now, fx);
        }
        if !trip.status.is_terminal() {
            return Err(Error::Internal(format!("trip {} came back from the history {}", trip.id, trip.status)));
        }
        // issue 20: U — the words of a user erased since are not brought back.
        self.trips.insert(trip.id, self.without_erased_words(trip));
        let result = self.dispatch_command(actor, command, now, fx);
        match &result {
            // Back in the hot state: the view shows it, the next checkpoint archives it again.
            Ok(_) => fx.trips.push(trip.id),
            Err(_) => {
                self.trips.remove(&trip.id);
            }
        }
        result
    }

    /// The finished trips in the state that nothing waits on any more, for the next
    /// checkpoint to archive (a card payment the gateway still owes keeps its trip hot).
    pub fn finished_trips(&self) -> Vec<Arc<Trip>> {
        self.trips
            .values()
            .filter(|t| t.status.is_terminal() && t.payment.due.is_none() && t.payment.cash_claimed_at.is_none())
            .cloned()
            .collect()
    }

    /// The acknowledged alerts, for the next checkpoint to move to the history, oldest
    /// first.
    pub fn acknowledged_alerts(&self) -> Vec<Arc<Alert>> {
        let mut done: Vec<Arc<Alert>> =
            self.alerts.values().filter(|a| a.status == AlertStatus::Acknowledged).cloned().collect();
        done.sort_by_key(|a| (a.raised_at, a.id));
        done
    }
}
