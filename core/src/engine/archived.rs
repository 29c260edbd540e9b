//! The engine's reads that reach past the hot state into the history (`store.redb`):
//! trips, alerts, statements, position tracks, the staff trip list and the reports'
//! rollups, each merging what is still hot with what was archived; and the bounded steps
//! of erasing a user's data there.
//!
//! Guarantees: a finished trip (alert, transfer) is found in one place or the other,
//! never neither, and listed once when it is in both for a moment (archived between the
//! two reads); every read is bounded by its page; they run on the caller's thread (call
//! them off async runtimes' threads), never on the writer's.

use std::sync::Arc;

use super::Engine;
use crate::alert::{Alert, AlertStatus};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::history::{TripCursor, TripsOf};
use crate::id::{AlertId, TripId, UserId};
use crate::trip::Trip;

/// Where an erasure of a user's history stands ([`Engine::erase_history_step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseStep {
    /// Positions may be left.
    Positions,
    /// The chat of archived trips, from this position (`None`: the start).
    Chat(Option<Vec<u8>>),
    /// Nothing is left.
    Done,
}

impl Engine {
    /// Safety alerts of `status` (both when `None`), oldest first, strictly after `after`
    /// (the `(raised_at, id)` of the last one of the previous page), at most `limit` (1 to
    /// 1,000). Open alerts are all in the hot state; an acknowledged one is there until a
    /// checkpoint moves it to the history, and is read from either.
    pub fn alerts(
        &self,
        status: Option<AlertStatus>,
        after: Option<(Timestamp, AlertId)>,
        limit: usize,
    ) -> Result<Vec<Arc<Alert>>> {
        let limit = limit.clamp(1, 1000);
        let key = |a: &Alert| (a.raised_at, a.id);
        let mut out: Vec<Arc<Alert>> = self.read_snapshot(|v| {
            v.alerts()
                .filter(|a| status.is_none_or(|s| a.status == s) && after.is_none_or(|c| key(a) > c))
                .cloned()
                .collect()
        });
        if status != Some(AlertStatus::Open)
            && let Some(h) = &self.shared.history
        {
            out.extend(h.alerts(after, limit)?.into_iter().map(Arc::new));
        }
        out.sort_by_key(|a| key(a));
        // An alert archived while this read ran may be in both: the same alert.
        out.dedup_by_key(|a| a.id);
        out.truncate(limit);
        Ok(out)
    }

    /// A trip, as of the last durable batch: from the hot state, or from the history
    /// once it finished and was archived. (The view is read first: a trip leaves it only
    /// after its history row is durable, so it is always in one or the other.)
    pub fn trip(&self, id: TripId) -> Option<Arc<Trip>> {
        self.find_trip(id).ok().flatten()
    }

    /// Up to `limit` recorded positions of `driver` from `from` on, oldest first (an
    /// empty list for engines without a data directory).
    pub fn driver_track(
        &self,
        driver: UserId,
        from: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::history::LocationPoint>> {
        match &self.shared.history {
            Some(h) => h.locations(driver, from, limit),
            None => Ok(Vec::new()),
        }
    }

    /// One bounded step of erasing `user`'s data in the history (issue 20: U): at `step`,
    /// the user's positions, or up to `max` archived trips' chat; returns the next step
    /// ([`EraseStep::Done`] when nothing is left). Every step is idempotent, so a restart
    /// begins again at [`EraseStep::Positions`]. Without a data directory there is
    /// nothing to erase. Blocks: call it off async runtimes' threads.
    pub fn erase_history_step(&self, user: UserId, step: EraseStep, max: usize) -> Result<EraseStep> {
        let Some(h) = &self.shared.history else { return Ok(EraseStep::Done) };
        Ok(match step {
            // Every position of the user, in bounded transactions (`History::erase_positions`).
            EraseStep::Positions if h.erase_positions(user)? > 0 => EraseStep::Positions,
            EraseStep::Positions => EraseStep::Chat(None),
            EraseStep::Chat(from) => match h.erase_chat(user, from, max)?.1 {
                Some(next) => EraseStep::Chat(Some(next)),
                None => EraseStep::Done,
            },
            EraseStep::Done => EraseStep::Done,
        })
    }

    /// `driver`'s recorded positions from `from` to `until` (both included), oldest
    /// first, at most `max_points` (an even sample when there are more; the first and the
    /// last always in it): what a trip's trail is drawn from. Empty for engines without
    /// a data directory. Reads the history on disk: call it off async runtimes' threads.
    pub fn driver_trail(
        &self,
        driver: UserId,
        from: Timestamp,
        until: Timestamp,
        max_points: usize,
    ) -> Result<crate::history::Trail> {
        match &self.shared.history {
            Some(h) => h.trail(driver, from, until, max_points),
            None => Ok(crate::history::Trail { points: Vec::new(), recorded: 0, truncated: false }),
        }
    }

    /// Up to `limit` transfers of `account`, newest first, strictly after `after` (the
    /// `(at, id)` of the last one of the previous page): the hot ones and those archived
    /// to the history.
    pub fn statement(
        &self,
        account: &crate::ledger::AccountKey,
        after: Option<(Timestamp, crate::id::TransferId)>,
        limit: usize,
    ) -> Result<Vec<Arc<crate::ledger::Transfer>>> {
        let limit = limit.clamp(1, 1000);
        let mut out = self.read(|v| v.statement(account, after, limit));
        if let Some(h) = &self.shared.history {
            let cold = h.transfers_of(account, after, limit)?;
            out.retain(|t| !cold.iter().any(|c| c.id == t.id));
            out.extend(cold.into_iter().map(Arc::new));
            out.sort_by_key(|t| std::cmp::Reverse((t.at, t.id)));
            out.truncate(limit);
        }
        Ok(out)
    }

    /// [`Engine::trip`], telling a history read error from "no such trip".
    pub fn find_trip(&self, id: TripId) -> Result<Option<Arc<Trip>>> {
        if let Some(t) = self.shared.view.read().trip(id) {
            return Ok(Some(Arc::clone(t)));
        }
        match &self.shared.history {
            Some(h) => Ok(h.trip(id)?.map(Arc::new)),
            None => Ok(None),
        }
    }

    /// Up to `limit` trips of `of` matching `keep`, newest first (by creation time, then
    /// id), strictly after `cursor`: the hot ones and, when `finished` is set, those in
    /// the history. Pass `finished: false` when `keep` only accepts open trips, so the
    /// history is not read for nothing.
    pub fn trips(
        &self,
        of: TripsOf,
        cursor: Option<TripCursor>,
        limit: usize,
        finished: bool,
        keep: impl Fn(&Trip) -> bool,
    ) -> Result<Vec<Arc<Trip>>> {
        let limit = limit.clamp(1, 1000);
        let mine = |t: &Trip| match of {
            TripsOf::Rider(u) => t.rider_id == u,
            TripsOf::Driver(u) => t.driver_id == Some(u),
            TripsOf::All => true,
        };
        let after = |t: &Trip| cursor.is_none_or(|c| c.precedes(t));
        let mut hot: Vec<Arc<Trip>> =
            self.read_snapshot(|v| v.trips().filter(|t| mine(t) && after(t) && keep(t)).cloned().collect());
        hot.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        hot.truncate(limit);
        let mut out = hot;
        if let (true, Some(h)) = (finished, &self.shared.history) {
            let mut from = cursor;
            let mut cold = Vec::new();
            // Page through the history until `limit` trips pass `keep` or it runs out.
            while cold.len() < limit {
                let page = h.trips(of, from, limit)?;
                let Some(last) = page.last() else { break };
                from = Some(TripCursor::after(last));
                let full = page.len() == limit;
                cold.extend(page.into_iter().filter(|t| keep(t)).map(Arc::new));
                if !full {
                    break;
                }
            }
            // A trip archived between the two reads is in both: keep one.
            out.retain(|t| !cold.iter().any(|c| c.id == t.id));
            out.extend(cold);
            out.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
            out.truncate(limit);
        }
        Ok(out)
    }

    // ----- issue 20: H -----

    /// Up to `limit` (1 to 1000) trips passing `query`, newest first (by creation time,
    /// then id), strictly after `cursor` (`(created ms, trip)`): the hot ones filtered in
    /// memory, the finished ones read from the history through the index the query's
    /// plan picks (`trip_index.rs`), so the history's part reads O(page) rows.
    pub fn find_trips(
        &self,
        query: &crate::trip_index::TripQuery,
        cursor: Option<(i64, TripId)>,
        limit: usize,
    ) -> Result<Vec<Arc<Trip>>> {
        let limit = limit.clamp(1, 1000);
        let after = |t: &Trip| cursor.is_none_or(|c| (t.created_at.as_millis(), t.id) < c);
        let mut out: Vec<Arc<Trip>> =
            self.read_snapshot(|v| v.trips().filter(|t| after(t) && query.matches(t)).cloned().collect());
        if let (true, Some(h)) = (query.may_be_archived(), &self.shared.history) {
            let cold = h.find_trips(query, cursor, limit)?.trips;
            // A trip archived between the two reads is in both: the hot copy wins.
            let hot: std::collections::HashSet<TripId> = out.iter().map(|t| t.id).collect();
            out.extend(cold.into_iter().filter(|t| !hot.contains(&t.id)).map(Arc::new));
        }
        out.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
        out.truncate(limit);
        Ok(out)
    }

    /// The rollup rows (`reports.rs`) of days `[first_day, end_day)`, of `zone` or every
    /// zone: the history's, plus what the hot trips add as they stand (less what their
    /// archived copy, if any, already added), so a report is exact as soon as a trip
    /// ends. Reads one history row per hot finished trip.
    pub fn report_rows(
        &self,
        first_day: i64,
        end_day: i64,
        zone: Option<crate::id::ZoneId>,
    ) -> Result<Vec<(crate::reports::RollupKey, crate::reports::Rollup)>> {
        use crate::reports::{Rollup, RollupKey, contribution};
        let mut sums: std::collections::BTreeMap<RollupKey, Rollup> = std::collections::BTreeMap::new();
        let history = self.shared.history.as_ref();
        if let Some(h) = history {
            sums.extend(h.rollups(first_day, end_day, zone)?);
        }
        let hot: Vec<Arc<Trip>> =
            self.read_snapshot(|v| v.trips().filter(|t| zone.is_none_or(|z| t.zone_id == z)).cloned().collect());
        for t in hot {
            let mut parts: Vec<(RollupKey, Rollup, i64)> =
                contribution(&t).into_iter().map(|(k, r)| (k, r, 1)).collect();
            if let (true, Some(h)) = (t.status.is_terminal(), history)
                && let Some(old) = h.trip(t.id)?
            {
                parts.extend(contribution(&old).into_iter().map(|(k, r)| (k, r, -1)));
            }
            for (k, r, sign) in parts {
                if (first_day..end_day).contains(&k.day) {
                    sums.entry(k).or_default().add(&r, sign);
                }
            }
        }
        Ok(sums.into_iter().filter(|(_, r)| !r.is_zero()).collect())
    }
}
