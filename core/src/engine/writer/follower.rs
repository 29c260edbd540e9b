//! The writer of a cluster node (issue 21): following the leader, claiming the shared log
//! when the lease keeper grants it, and stepping down.
//!
//! Owns the follower's loop ([`Writer::follow_round`]), the promotion
//! ([`Writer::promote`]) and the step-down ([`Writer::step_down`]).
//!
//! Guarantees:
//! - a follower applies nothing but the shared log's records, in LSN order, with the same
//!   `apply` as a replay, and publishes each followed chunk to the view and its events to
//!   subscribers exactly as a commit does; it answers every command `NotLeader` at once,
//!   answers queries after applying what it followed, fires no deadline and writes
//!   nothing to the log (its checkpoints are local and never log an `Archive`);
//! - before it applies a followed `Archive`, what the record names is written to its own
//!   history (one transaction), so an archived trip reads the same on every node;
//! - a record that does not decode or apply stops following for good (reported in
//!   `Stats::follow_error`): the node keeps serving the state as of the record before,
//!   never a state that differs from the log, and never claims the log;
//! - it claims the log only when the lease is granted and its last follow found nothing
//!   new; a leader whose lease is revoked, or whose write the log fences, answers every
//!   caller of the batch `NotLeader`, publishes nothing, rebuilds its state from what is
//!   durable and follows again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use dispatch_storage::StorageError;

use super::{PendingPositions, Writer};
use crate::clock::Timestamp;
use crate::command::{Actor, Command, Event};
use crate::engine::Msg;
use crate::error::Error;
use crate::record::Record;
use crate::state::apply;

/// How long one follow waits for the leader's next records: short, so that a queued
/// command (answered `NotLeader`) or query is not held long.
pub(super) const FOLLOW_WAIT: Duration = Duration::from_millis(15);

/// A record time as the `u64` milliseconds [`crate::Leadership`] keeps.
pub(in crate::engine) fn now_ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis()).unwrap_or(0)
}

impl Writer {
    /// A node of a cluster that does not lead (now).
    pub(super) fn is_follower(&self) -> bool {
        self.leadership.as_ref().is_some_and(|l| !l.is_leader())
    }

    /// This node leads, but the lease keeper revoked the lease it claimed the log under
    /// (or granted another term since: another node may have led in between).
    pub(super) fn lease_lost(&self) -> bool {
        self.leadership.as_ref().is_some_and(|l| l.is_leader() && (!l.is_granted() || l.term() != self.term))
    }

    /// Tells the lease keeper how far this node applied the log (a leader after each
    /// commit: it applied all of it).
    pub(super) fn report_applied(&self, at_ms: u64) {
        if let Some(l) = &self.leadership {
            let lsn = self.journal.durable_lsn();
            l.set_applied(lsn, at_ms);
            l.set_log_end(lsn, true);
        }
    }

    /// One round of a follower: refuses the queued commands, follows the log (waiting
    /// at most [`FOLLOW_WAIT`]), applies and publishes what came, answers the queries,
    /// and claims the log if the lease is granted and nothing new came. Returns whether
    /// the engine shuts down.
    pub(super) fn follow_round(&mut self) -> bool {
        while let Ok(msg) = self.rx.try_recv() {
            if self.refuse(msg) {
                self.answer_round_queries();
                return true;
            }
        }
        self.rebuild_if_stale();
        if self.follow_broken.is_some() || self.stale {
            // Reads only: wait for the next message instead of the log.
            let shutdown = match self.rx.recv_timeout(self.idle_wakeup) {
                Ok(msg) => self.refuse(msg),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            self.answer_round_queries();
            return shutdown;
        }
        let mut shutdown = false;
        let followed = self.journal.follow(FOLLOW_WAIT);
        if followed.is_ok() && self.follow_broken.is_none() {
            // The log answers again: what an earlier round reported is over.
            self.shared.stats.follow_error.lock().take();
        }
        match followed {
            Ok(records) if records.is_empty() => self.caught_up = true,
            Ok(records) => {
                self.caught_up = false;
                self.apply_followed(records);
            }
            Err(e @ StorageError::Released { .. }) => {
                self.stop_following(format!("{}: {e}", crate::journal::NEEDS_NEWER_CHECKPOINT));
            }
            Err(e @ StorageError::InvalidLsn { .. }) => {
                self.stop_following(format!("the shared log is not dense here: {e}"));
            }
            Err(e) => {
                // The log cannot be reached just now: try again after a short wait.
                self.caught_up = false;
                *self.shared.stats.follow_error.lock() = Some(format!("cannot follow the shared log: {e}"));
                shutdown = match self.rx.recv_timeout(FOLLOW_WAIT) {
                    Ok(msg) => self.refuse(msg),
                    Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => true,
                };
            }
        }
        if let Some(l) = &self.leadership {
            l.set_log_end(self.journal.durable_lsn(), self.caught_up);
        }
        self.answer_round_queries();
        if !shutdown
            && self.caught_up
            && self.follow_broken.is_none()
            && self.leadership.as_ref().is_some_and(|l| l.is_granted())
        {
            self.promote();
        }
        shutdown
    }

    /// A message for a follower: a command is refused `NotLeader` at once, a query waits
    /// for the end of the round. Returns whether it asks the engine to shut down.
    fn refuse(&mut self, msg: Msg) -> bool {
        let why = || Error::NotLeader("this node follows the cluster's leader".into());
        match msg {
            Msg::Command(req) => (req.reply)(Err(why())),
            Msg::Many(requests) => {
                for req in requests {
                    (req.reply)(Err(why()));
                }
            }
            Msg::Query(q) => self.queries.push(q),
            Msg::Shutdown => return true,
        }
        false
    }

    /// Applies records the leader committed, then publishes them as one batch.
    fn apply_followed(&mut self, records: Vec<dispatch_storage::Record>) {
        let mut last: Option<(u64, Timestamp)> = None;
        for item in records {
            let record = match Record::decode(&item.payload) {
                Ok(record) => record,
                Err(e) => {
                    self.stop_following(format!("the record at LSN {} is unreadable: {e}", item.lsn));
                    break;
                }
            };
            if matches!(record.command, Command::Archive { .. })
                && let Err(e) = self.journal.write_archived(&self.state, &record.command)
            {
                self.stop_following(format!("cannot write what the record at LSN {} archives: {e}", item.lsn));
                break;
            }
            if let Err(e) = apply(&mut self.state, record.actor, &record.command, record.at, &mut self.fx) {
                self.stop_following(format!(
                    "the record at LSN {} ({}) does not apply here: {e}; this node no longer follows",
                    item.lsn,
                    record.command.name()
                ));
                break;
            }
            self.shared.stats.followed.fetch_add(1, Ordering::Relaxed);
            last = Some((item.lsn, record.at));
        }
        self.shared.view.write().publish(&self.state, &self.fx);
        if !self.fx.events.is_empty() {
            let events: std::sync::Arc<[Event]> = std::mem::take(&mut self.fx.events).into();
            self.shared.subscribers.lock().retain(|s| s.try_send(std::sync::Arc::clone(&events)).is_ok());
        }
        self.fx.clear();
        let Some((lsn, at)) = last else { return };
        if let Some(l) = &self.leadership {
            l.set_applied(lsn, now_ms(at));
        }
        if self.follow_broken.is_none() {
            // A local checkpoint, so a restart replays little; what it lets leave the hot
            // state is the leader's to archive (its `Archive` records come through the log).
            let _ = self.journal.checkpoint_if_due(&self.state, at, &self.shared.stats.checkpoints);
        }
    }

    /// Following stops for good: reported, and the node never claims the log.
    fn stop_following(&mut self, why: String) {
        *self.shared.stats.follow_error.lock() = Some(why.clone());
        self.follow_broken = Some(why);
    }

    /// The lease is granted and this node applied the whole log: claims it and leads.
    /// Fenced (another writer appended meanwhile): follows on and tries again later.
    fn promote(&mut self) {
        let Some(leadership) = self.leadership.clone() else { return };
        // Read before the claim: a grant after it is a newer term, which `lease_lost` sees.
        let term = leadership.term();
        if self.journal.claim().is_err() {
            self.caught_up = false;
            return;
        }
        *self.shared.stats.follow_error.lock() = None;
        self.positions = PendingPositions::default();
        self.archive.clear();
        self.term = term;
        leadership.set_leading(true);
        self.report_applied(leadership.applied_at_ms());
        // The configured rules (with staff's runtime overrides on top), logged if they differ.
        let rules = self.state.rule_overrides().apply_to(&self.rules);
        if self.state.rules() != &rules {
            self.apply_one(Actor::System, Command::SetRules(rules), None);
            self.commit();
        }
    }

    /// Stops leading: every caller of the batch hears `NotLeader` (nothing of it is
    /// durable), nothing is published, and the state is rebuilt from what is durable.
    pub(super) fn step_down(&mut self, why: &str) {
        for (reply, _) in self.replies.drain(..) {
            reply(Err(Error::NotLeader(why.to_owned())));
        }
        self.fx.clear();
        self.moves.clear();
        self.positions = PendingPositions::default();
        self.archive.clear();
        self.read_only = None;
        self.stale = false;
        self.shared.read_only.store(false, Ordering::Relaxed);
        self.caught_up = false;
        // Until it is rebuilt, the state holds what never became durable: `follow_round`
        // retries the rebuild and answers no query from it.
        self.stale = true;
        self.rebuild_if_stale();
        if let Some(l) = &self.leadership {
            l.set_leading(false);
        }
        self.answer_round_queries();
    }

    /// Rebuilds the state from what is durable if a rebuild is owed; on failure the
    /// reason is reported and the next round tries again.
    fn rebuild_if_stale(&mut self) {
        if !self.stale {
            return;
        }
        match self.journal.rebuild_published() {
            Ok(state) => {
                self.state = state;
                self.stale = false;
                if let Some(l) = &self.leadership {
                    l.set_applied(self.journal.durable_lsn(), l.applied_at_ms());
                }
            }
            Err(e) => {
                *self.shared.stats.follow_error.lock() = Some(format!("cannot rebuild the state: {e}"));
            }
        }
    }

    /// Answers the queries of the round: from the state, unless it holds what never
    /// became durable (a rebuild failed), then with the reason.
    fn answer_round_queries(&mut self) {
        if self.stale {
            for q in self.queries.drain(..) {
                q(Err(Error::Storage("the state is being rebuilt after a step-down".into())));
            }
        } else {
            self.answer_queries();
        }
    }
}
