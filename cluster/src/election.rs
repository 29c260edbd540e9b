//! The leader lease's decisions, without I/O or a clock: [`Election`].
//!
//! Owns the rules of API.md "Cluster" for one node: when a follower deems the lease
//! lapsed and bids, when the leader renews, and when it must stop. The lease keeper
//! ([`keeper`](crate::keeper)) feeds it what the key-value store said and the time by its
//! monotonic clock, and carries out the [`Action`]s; the model test feeds it a virtual
//! clock and an in-memory store.
//!
//! Guarantees (with clocks that run at the same rate within 25%):
//! - a follower deems the lease lapsed only `lease` after it first saw the lease's current
//!   revision (or when the key is absent or deleted), and bids only when caught up, with
//!   the expected revision it saw, so of two bidders at most one wins;
//! - the leader stops (revoke) once `lease * 3 / 4` passed since the start of its last
//!   successful renewal, before any follower can deem the lease lapsed (they count from
//!   when they *saw* that renewal, which is after it started);
//! - a refused renewal, a newer revision written by someone else, or the writer fenced
//!   revoke at once; terms only grow (a bid's term is above every term seen in the lease
//!   and in the log).

use std::time::Duration;

/// The lease's value in the key-value store (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseValue {
    /// The leader's `node_id`.
    pub node_id: String,
    /// Its `advertise_url`.
    pub url: String,
    /// Its term.
    pub term: u64,
}

/// What a read of the lease key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No such key.
    Absent,
    /// Deleted (a leader gave its lease up) at this revision.
    Deleted {
        /// The delete's revision.
        revision: u64,
    },
    /// Held.
    Held {
        /// The entry's revision.
        revision: u64,
        /// Its value.
        value: LeaseValue,
    },
    /// The read failed: nothing is known.
    Unknown,
}

impl Observed {
    fn revision(&self) -> Option<u64> {
        match self {
            Observed::Absent | Observed::Unknown => None,
            Observed::Deleted { revision } | Observed::Held { revision, .. } => Some(*revision),
        }
    }
}

/// One tick's inputs.
#[derive(Debug, Clone)]
pub struct Input {
    /// The time by this node's monotonic clock.
    pub now: Duration,
    /// What the lease key holds.
    pub lease: Observed,
    /// This node applied the whole stream (the writer says so and the log consumed the
    /// stream's last sequence).
    pub caught_up: bool,
    /// The highest term seen in the log.
    pub log_term: u64,
    /// The writer led under the current grant and was fenced since.
    pub writer_fenced: bool,
}

/// What the keeper must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the lease: create it (`expected_revision` `None`: the key must be absent) or
    /// update it if its revision is still `expected_revision`; then call
    /// [`Election::on_bid`].
    Bid {
        /// The revision seen.
        expected_revision: Option<u64>,
        /// This node's lease.
        value: LeaseValue,
    },
    /// Update the lease if its revision is still `expected_revision`; then call
    /// [`Election::on_renew`].
    Renew {
        /// This node's lease revision.
        expected_revision: u64,
        /// This node's lease.
        value: LeaseValue,
    },
    /// Delete the lease if its revision is still `revision` (a leader gives it up).
    GiveUp {
        /// This node's lease revision.
        revision: u64,
    },
    /// `Leadership::grant(term)`.
    Grant(u64),
    /// `Leadership::revoke()`.
    Revoke,
}

/// How a write of the lease went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// Written: the new revision.
    Written(u64),
    /// Refused: the revision moved (someone else wrote).
    Refused,
    /// No answer: unknown.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Follower,
    Leader { revision: u64, term: u64, renewed_at: Duration },
}

/// One node's view of the lease. See the module documentation.
#[derive(Debug, Clone)]
pub struct Election {
    node_id: String,
    url: String,
    lease: Duration,
    role: Role,
    /// The revision last seen (`None`: absent) and when it was first seen.
    seen: Option<Option<u64>>,
    seen_at: Duration,
    /// The lease's value as last seen.
    holder: Option<LeaseValue>,
    /// The highest term seen anywhere.
    max_term: u64,
}

impl Election {
    /// A follower that has seen nothing yet.
    pub fn new(node_id: &str, url: &str, lease: Duration) -> Self {
        Election {
            node_id: node_id.to_string(),
            url: url.to_string(),
            lease,
            role: Role::Follower,
            seen: None,
            seen_at: Duration::ZERO,
            holder: None,
            max_term: 0,
        }
    }

    /// The renewal period: a quarter of the lease.
    pub fn renew_every(&self) -> Duration {
        self.lease / 4
    }

    /// How long after the start of its last renewal the leader stops.
    fn hold_for(&self) -> Duration {
        self.lease * 3 / 4
    }

    /// Whether this node holds the lease at `now` (and may let its writer lead).
    pub fn holds_lease(&self, now: Duration) -> bool {
        match self.role {
            Role::Leader { renewed_at, .. } => now.saturating_sub(renewed_at) < self.hold_for(),
            Role::Follower => false,
        }
    }

    /// This node's term while it leads.
    pub fn term(&self) -> Option<u64> {
        match self.role {
            Role::Leader { term, .. } => Some(term),
            Role::Follower => None,
        }
    }

    /// The leader the lease names, unless it lapsed by this node's clock at `now`.
    pub fn leader(&self, now: Duration) -> Option<LeaseValue> {
        if let Role::Leader { term, .. } = self.role
            && self.holds_lease(now)
        {
            return Some(LeaseValue { node_id: self.node_id.clone(), url: self.url.clone(), term });
        }
        if self.lapsed(now) { None } else { self.holder.clone() }
    }

    fn lapsed(&self, now: Duration) -> bool {
        match self.seen {
            None | Some(None) => true,
            Some(Some(_)) => self.holder.is_none() || now.saturating_sub(self.seen_at) >= self.lease,
        }
    }

    fn step_down(&mut self, now: Duration) {
        self.role = Role::Follower;
        // Count a fresh lease from now: this node bids again only after a full lease.
        self.seen = None;
        self.seen_at = now;
        self.holder = None;
    }

    /// The leader's timer alone, without a look at the lease: a revoke once `lease * 3 / 4`
    /// passed since the start of the last successful renewal.
    pub fn expire(&mut self, now: Duration) -> Vec<Action> {
        match self.role {
            Role::Leader { term, renewed_at, .. } if now.saturating_sub(renewed_at) >= self.hold_for() => {
                tracing::warn!(node = %self.node_id, term, "stepped down: the lease could not be renewed in time");
                self.step_down(now);
                vec![Action::Revoke]
            }
            _ => Vec::new(),
        }
    }

    /// One look at the lease: what to do now.
    pub fn tick(&mut self, input: &Input) -> Vec<Action> {
        let now = input.now;
        if let Observed::Held { value, .. } = &input.lease {
            self.max_term = self.max_term.max(value.term);
        }
        self.max_term = self.max_term.max(input.log_term);
        if let Role::Leader { revision, term, renewed_at } = self.role {
            if input.writer_fenced {
                tracing::info!(node = %self.node_id, term, "stepped down: the writer was fenced");
                self.step_down(now);
                return vec![Action::GiveUp { revision }, Action::Revoke];
            }
            if input.lease.revision().is_some_and(|r| r > revision) {
                tracing::warn!(node = %self.node_id, term, "lost the lease: another node wrote it");
                self.step_down(now);
                return vec![Action::Revoke];
            }
            let since = now.saturating_sub(renewed_at);
            if since >= self.hold_for() {
                tracing::warn!(node = %self.node_id, term, "stepped down: the lease could not be renewed in time");
                self.step_down(now);
                return vec![Action::Revoke];
            }
            if since >= self.renew_every() {
                return vec![Action::Renew { expected_revision: revision, value: self.value(term) }];
            }
            return Vec::new();
        }
        // A follower.
        if input.lease == Observed::Unknown {
            return Vec::new();
        }
        let revision = input.lease.revision();
        let holder = match &input.lease {
            Observed::Held { value, .. } => Some(value.clone()),
            _ => None,
        };
        if self.seen != Some(revision) {
            self.seen = Some(revision);
            self.seen_at = now;
            self.holder = holder;
        }
        if !self.lapsed(now) || !input.caught_up {
            return Vec::new();
        }
        if self.holder.is_some() {
            tracing::info!(node = %self.node_id, holder = ?self.holder.as_ref().map(|h| &h.node_id), "lease lapsed");
        }
        let expected_revision = match input.lease {
            Observed::Absent => None,
            _ => revision,
        };
        vec![Action::Bid { expected_revision, value: self.value(self.max_term + 1) }]
    }

    fn value(&self, term: u64) -> LeaseValue {
        LeaseValue { node_id: self.node_id.clone(), url: self.url.clone(), term }
    }

    /// The bid started at `started` (with `term`) ended with `result`.
    pub fn on_bid(&mut self, started: Duration, term: u64, result: WriteResult) -> Vec<Action> {
        match result {
            WriteResult::Written(revision) => {
                self.max_term = self.max_term.max(term);
                self.role = Role::Leader { revision, term, renewed_at: started };
                self.seen = Some(Some(revision));
                self.holder = Some(self.value(term));
                tracing::info!(node = %self.node_id, term, revision, "elected leader");
                vec![Action::Grant(term)]
            }
            WriteResult::Refused | WriteResult::Failed => Vec::new(),
        }
    }

    /// The renewal started at `started` ended with `result`.
    pub fn on_renew(&mut self, started: Duration, result: WriteResult) -> Vec<Action> {
        let Role::Leader { term, .. } = self.role else { return Vec::new() };
        match result {
            WriteResult::Written(revision) => {
                self.role = Role::Leader { revision, term, renewed_at: started };
                self.seen = Some(Some(revision));
                Vec::new()
            }
            WriteResult::Refused => {
                tracing::warn!(node = %self.node_id, term, "lost the lease: renewal refused");
                self.step_down(started);
                vec![Action::Revoke]
            }
            // The timer steps down if no renewal succeeds in time.
            WriteResult::Failed => Vec::new(),
        }
    }

    /// Leaving the cluster: a leader gives its lease up.
    pub fn shutdown(&mut self, now: Duration) -> Vec<Action> {
        match self.role {
            Role::Leader { revision, term, .. } => {
                tracing::info!(node = %self.node_id, term, "stepped down: shutting down");
                self.step_down(now);
                vec![Action::GiveUp { revision }, Action::Revoke]
            }
            Role::Follower => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(2000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn held(revision: u64, node: &str, term: u64) -> Observed {
        Observed::Held { revision, value: LeaseValue { node_id: node.into(), url: "u".into(), term } }
    }

    fn input(now: u64, lease: Observed, caught_up: bool) -> Input {
        Input { now: ms(now), lease, caught_up, log_term: 0, writer_fenced: false }
    }

    #[test]
    fn an_absent_lease_is_bid_for_only_when_caught_up() {
        let mut e = Election::new("a", "u", LEASE);
        assert!(e.tick(&input(0, Observed::Absent, false)).is_empty());
        let actions = e.tick(&input(1, Observed::Absent, true));
        assert_eq!(
            actions,
            vec![Action::Bid {
                expected_revision: None,
                value: LeaseValue { node_id: "a".into(), url: "u".into(), term: 1 }
            }]
        );
        assert_eq!(e.on_bid(ms(1), 1, WriteResult::Written(7)), vec![Action::Grant(1)]);
        assert!(e.holds_lease(ms(2)));
    }

    #[test]
    fn a_held_lease_lapses_after_a_full_lease_without_a_new_revision() {
        let mut e = Election::new("b", "u", LEASE);
        assert!(e.tick(&input(100, held(5, "a", 3), true)).is_empty());
        assert!(e.tick(&input(2099, held(5, "a", 3), true)).is_empty());
        assert_eq!(e.leader(ms(2099)).map(|l| l.node_id), Some("a".into()));
        let actions = e.tick(&input(2100, held(5, "a", 3), true));
        assert!(matches!(&actions[..], [Action::Bid { expected_revision: Some(5), value }] if value.term == 4));
        assert_eq!(e.leader(ms(2100)), None);
    }

    #[test]
    fn a_new_revision_restarts_the_count() {
        let mut e = Election::new("b", "u", LEASE);
        e.tick(&input(0, held(5, "a", 3), true));
        e.tick(&input(1500, held(6, "a", 3), true));
        assert!(e.tick(&input(3000, held(6, "a", 3), true)).is_empty());
        assert!(!e.tick(&input(3500, held(6, "a", 3), true)).is_empty());
    }

    #[test]
    fn terms_exceed_what_the_log_saw() {
        let mut e = Election::new("b", "u", LEASE);
        let mut i = input(0, Observed::Deleted { revision: 9 }, true);
        i.log_term = 12;
        let actions = e.tick(&i);
        assert!(matches!(&actions[..], [Action::Bid { expected_revision: Some(9), value }] if value.term == 13));
    }

    fn leader_at(revision: u64) -> Election {
        let mut e = Election::new("a", "u", LEASE);
        e.tick(&input(0, Observed::Absent, true));
        e.on_bid(ms(0), 1, WriteResult::Written(revision));
        e
    }

    #[test]
    fn the_leader_renews_every_quarter_and_stops_at_three_quarters() {
        let mut e = leader_at(1);
        assert!(e.tick(&input(499, held(1, "a", 1), true)).is_empty());
        assert!(matches!(
            &e.tick(&input(500, held(1, "a", 1), true))[..],
            [Action::Renew { expected_revision: 1, .. }]
        ));
        assert!(e.on_renew(ms(500), WriteResult::Written(2)).is_empty());
        // A renewal that fails leaves the timer running from 500.
        e.tick(&input(1000, held(2, "a", 1), true));
        e.on_renew(ms(1000), WriteResult::Failed);
        assert!(e.holds_lease(ms(1999)));
        assert_eq!(e.tick(&input(2000, held(2, "a", 1), true)), vec![Action::Revoke]);
        assert!(!e.holds_lease(ms(2000)));
        // The timer alone does the same, with no look at the lease.
        let mut e = leader_at(1);
        assert!(e.expire(ms(1499)).is_empty());
        assert_eq!(e.expire(ms(1500)), vec![Action::Revoke]);
        assert!(e.expire(ms(1600)).is_empty(), "once");
    }

    #[test]
    fn a_refused_renewal_or_a_newer_revision_revokes_at_once() {
        let mut e = leader_at(1);
        e.tick(&input(500, held(1, "a", 1), true));
        assert_eq!(e.on_renew(ms(500), WriteResult::Refused), vec![Action::Revoke]);
        let mut e = leader_at(1);
        assert_eq!(e.tick(&input(100, held(2, "b", 2), true)), vec![Action::Revoke]);
        // A stale read (an older revision) is not a loss.
        let mut e = leader_at(3);
        assert!(e.tick(&input(100, held(2, "a", 1), true)).is_empty());
    }

    #[test]
    fn a_fenced_writer_gives_the_lease_up() {
        let mut e = leader_at(4);
        let mut i = input(100, held(4, "a", 1), true);
        i.writer_fenced = true;
        assert_eq!(e.tick(&i), vec![Action::GiveUp { revision: 4 }, Action::Revoke]);
        // and waits a full lease before bidding again for a lease still named after it
        assert!(e.tick(&input(200, held(4, "a", 1), true)).is_empty());
    }

    #[test]
    fn shutdown_gives_the_lease_up() {
        let mut e = leader_at(4);
        assert_eq!(e.shutdown(ms(10)), vec![Action::GiveUp { revision: 4 }, Action::Revoke]);
        assert!(Election::new("b", "u", LEASE).shutdown(ms(0)).is_empty());
    }
}
