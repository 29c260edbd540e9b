//! The writer thread: the one place the state changes.
//!
//! Owns the [`State`], the journal and the writer's copy of the view. It takes commands
//! from the queue in batches (at most `max_batch`), stamps and applies each, appends the
//! batch to the log and syncs it once (group commit), publishes the batch to the view,
//! hands its events to subscribers and only then answers the callers; it fires due
//! deadlines, holds back coalesced position reports until their interval is up, applies
//! a checkpoint's archive a bounded piece per batch, and in read-only mode probes the
//! disk until a write succeeds. A node of a cluster (issue 21) starts as a follower: it
//! applies what the shared log's leader committed instead, and claims the log and leads
//! while its lease keeper grants it (`writer/follower.rs`).
//!
//! Guarantees: a caller hears "done" only once its record is durable (position reports
//! excepted, as documented on `Engine::update_location`); a batch that fails to become
//! durable is answered with the failure, is never published, and the state is rebuilt
//! from what is durable (a batch of positions only is published when written and synced
//! within [`POSITIONS_SYNC_DELAY`]: if that sync fails, the view's drivers are rebuilt
//! too); queries are answered right after a commit, when the state equals the published
//! view. A run of published reports is one `Positions` record, in its place in the log.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use dispatch_storage::StorageError;

use super::{EngineConfig, Msg, Query, Reply, Shared};
use crate::clock::{Clock, Timestamp};
use crate::command::{Actor, Command, DispatchRules, Event, LocationReport, Outcome};
use crate::error::{DomainError, Error, Result};
use crate::id::{IdSource, UserId};
use crate::journal::Journal;
use crate::leadership::Leadership;
use crate::record::Record;
use crate::state::{Effects, State, apply};

mod follower;

/// How long published position reports may stay written but not durable: a batch of
/// positions only is written without a sync (its callers were answered before the sync
/// anyway, as every position report is: DESIGN.md's one exemption), and made durable with
/// the next batch that needs a sync, or after this long at the latest. A crash so loses at
/// most this much of the drivers' last positions, each re-sent within seconds; readers may
/// see such a position before it is durable. Nothing else is ever published undurable.
pub(crate) const POSITIONS_SYNC_DELAY: Duration = Duration::from_millis(10);

/// Why a write failed, as read-only mode reports it.
fn write_failure(e: &StorageError) -> String {
    if e.is_disk_full() { format!("disk full ({e})") } else { e.to_string() }
}

/// How long the writer looks for the next message before it sleeps on the queue (see
/// `Writer::poll_briefly`).
const POLL_AWAKE: Duration = Duration::from_micros(50);

/// Most fixes one `Positions` record holds (~45 bytes each: ~180 KiB, inside a shared
/// log's message); a longer run is logged as several records.
const MAX_POSITIONS_PER_RECORD: usize = 4_096;
use follower::now_ms;

/// Position reports coalesced by the state (a report within `location_min_interval_ms`
/// of the driver's last published position), each waiting for its interval to be up: at
/// most one per driver, the newest. Kept by the writer only and never logged (a
/// coalesced report changed nothing); like every position report it is not durable, so
/// a crash or shutdown may lose the last interval's position of a driver.
#[derive(Default)]
pub(super) struct PendingPositions {
    by_driver: std::collections::HashMap<UserId, PendingPosition>,
    due: std::collections::BTreeSet<(Timestamp, UserId)>,
}

struct PendingPosition {
    report: LocationReport,
    /// The driver's published fix the report was coalesced against: if another one was
    /// published since (a newer report, a status change), this report is older than it.
    against: Option<crate::driver::Fix>,
    publish_at: Timestamp,
}

impl PendingPositions {
    fn put(&mut self, driver: UserId, pending: PendingPosition) {
        self.due.insert((pending.publish_at, driver));
        if let Some(old) = self.by_driver.insert(driver, pending) {
            self.due.remove(&(old.publish_at, driver));
        }
    }

    fn take(&mut self, driver: UserId) -> Option<PendingPosition> {
        let p = self.by_driver.remove(&driver)?;
        self.due.remove(&(p.publish_at, driver));
        Some(p)
    }

    /// The next driver whose position is due at `now`.
    fn next_due(&mut self, now: Timestamp) -> Option<(UserId, PendingPosition)> {
        let &(at, driver) = self.due.first()?;
        if at > now {
            return None;
        }
        self.take(driver).map(|p| (driver, p))
    }
}

/// The writer thread's world. Nothing else touches `state`.
pub(super) struct Writer {
    state: State,
    /// Where applied commands become durable.
    journal: Journal,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    ids: Box<dyn IdSource>,
    max_batch: usize,
    idle_wakeup: Duration,
    read_only_retry: Duration,
    /// Effects of the current batch.
    fx: Effects,
    /// Answers held until the batch is durable.
    replies: Vec<(Reply, Result<Outcome>)>,
    /// Queries of the batch, answered after its commit.
    queries: Vec<Query>,
    /// Coalesced position reports waiting for their interval.
    positions: PendingPositions,
    /// Positions published since the last record was logged: one `Positions` record
    /// for the run, logged before the next other record or at the commit.
    moves: Vec<(UserId, crate::driver::Fix)>,
    /// The batch holds a record other than positions: it must be durable before it is
    /// published (see `commit`).
    batch_needs_sync: bool,
    /// Since when batches of positions only were written and published without a sync
    /// (`None`: everything written is durable). Synced within [`POSITIONS_SYNC_DELAY`].
    unsynced_since: Option<Instant>,
    /// The engine is shutting down: the last batch is synced whatever it holds.
    stopping: bool,
    /// The last batch answered a caller before its commit (a position report): that
    /// caller may be waiting to send the next one (see `poll_briefly`).
    answered_early: bool,
    /// Why the log cannot be written, while it cannot.
    read_only: Option<String>,
    /// The state could not be rebuilt from disk after a failed write: it must be
    /// before anything is written again.
    stale: bool,
    /// The batch being committed is a read-only probe whose `Tick` had nothing due,
    /// so its failure leaves the state as durable as it was (no rebuild needed).
    probe_changed_nothing: bool,
    /// What the last checkpoint lets leave the hot state, as `Archive` commands of
    /// bounded size still to apply, one per batch (see `commit`).
    archive: std::collections::VecDeque<Command>,
    // ----- issue 21 -----
    /// A cluster node's handshake with its lease keeper (`None`: one node, always leads).
    leadership: Option<Arc<Leadership>>,
    /// The configured rules, adopted (logged if they differ) when this node leads.
    rules: DispatchRules,
    /// The last follow found nothing new: the node may claim the log.
    caught_up: bool,
    /// Why following stopped (see `Stats::follow_error`); the node then neither follows
    /// nor claims the log, and keeps answering reads.
    follow_broken: Option<String>,
    /// The lease term this node claimed the log under: a grant of another term (the
    /// lease lost and won again meanwhile) is a new lease, claimed anew.
    term: u64,
}

impl Writer {
    /// The writer of `state`, logging to `journal`, fed by `rx`, publishing `view`.
    pub(super) fn new(
        state: State,
        journal: Journal,
        rx: Receiver<Msg>,
        shared: Arc<Shared>,
        config: EngineConfig,
    ) -> Self {
        if let Some(l) = &config.leadership {
            // What recovery applied (base + the records the log held at start-up).
            l.set_applied(journal.durable_lsn(), 0);
        }
        Writer {
            state,
            journal,
            rx,
            shared,
            clock: config.clock,
            ids: config.ids,
            max_batch: config.max_batch,
            idle_wakeup: config.idle_wakeup,
            read_only_retry: config.read_only_retry,
            fx: Effects::default(),
            replies: Vec::new(),
            queries: Vec::new(),
            positions: PendingPositions::default(),
            moves: Vec::new(),
            batch_needs_sync: false,
            unsynced_since: None,
            stopping: false,
            answered_early: false,
            read_only: None,
            stale: false,
            probe_changed_nothing: false,
            archive: std::collections::VecDeque::new(),
            leadership: config.leadership,
            rules: config.rules,
            caught_up: false,
            follow_broken: None,
            term: 0,
        }
    }

    /// Logs `rules` as a command when they differ from the state's, so a replay applies
    /// the rules that were in force; refused if the log cannot be written. The dispatch
    /// keys staff set at runtime (`UpdateSettings`, kept in the state) go on top of
    /// `rules`: the configuration gives the defaults, a runtime change wins until changed
    /// again.
    pub(super) fn adopt_rules(&mut self, rules: DispatchRules) -> Result<()> {
        if self.is_follower() {
            // Adopted on promotion (`follower.rs`): a follower writes nothing to the log.
            self.rules = rules;
            return Ok(());
        }
        let rules = self.state.rule_overrides().apply_to(&rules);
        if self.state.rules() != &rules {
            self.apply_one(Actor::System, Command::SetRules(rules), None);
            self.commit();
            if let Some(why) = &self.read_only {
                return Err(Error::ReadOnly(why.clone()));
            }
        }
        Ok(())
    }

    pub(super) fn run(mut self) -> State {
        let mut shutting_down = false;
        let mut last_probe = Instant::now();
        while !shutting_down {
            if self.is_follower() {
                shutting_down = self.follow_round();
                continue;
            }
            if self.lease_lost() {
                // Revoked while idle (or read-only): nothing of ours is pending.
                self.step_down("the leader lease was revoked");
                continue;
            }
            // An archive under way goes on without waiting for traffic; positions written
            // without a sync wait for one no longer than their delay.
            let wait = match self.unsynced_since {
                _ if !self.archive.is_empty() => Duration::ZERO,
                Some(since) => POSITIONS_SYNC_DELAY.saturating_sub(since.elapsed()).min(self.idle_wakeup),
                None => self.idle_wakeup,
            };
            let polled = if std::mem::take(&mut self.answered_early) { self.poll_briefly(wait) } else { None };
            let first = match polled.map_or_else(|| self.rx.recv_timeout(wait), Ok) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if self.read_only.is_some() && last_probe.elapsed() >= self.read_only_retry {
                last_probe = Instant::now();
                self.try_leave_read_only();
            }
            let mut batch = 0;
            let mut next = first;
            while let Some(msg) = next {
                // A batch holds at most `max_batch` commands, however they came.
                batch += match &msg {
                    Msg::Many(requests) => requests.len(),
                    _ => 1,
                };
                match msg {
                    Msg::Command(req) => self.apply_one(req.actor, req.command, Some(req.reply)),
                    Msg::Many(requests) => {
                        for req in requests {
                            self.apply_one(req.actor, req.command, Some(req.reply));
                        }
                    }
                    Msg::Query(q) => self.queries.push(q),
                    Msg::Shutdown => {
                        shutting_down = true;
                        self.stopping = true;
                        break;
                    }
                }
                next = if batch < self.max_batch { self.rx.try_recv().ok() } else { None };
            }
            if self.read_only.is_none() {
                self.fire_due_deadlines();
            }
            self.commit();
            if self.unsynced_since.is_some_and(|since| self.stopping || since.elapsed() >= POSITIONS_SYNC_DELAY) {
                self.sync_written();
            }
        }
        // Anything still queued after the shutdown request is refused, not dropped silently.
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Command(req) => (req.reply)(Err(Error::ShutDown)),
                Msg::Many(requests) => {
                    for req in requests {
                        (req.reply)(Err(Error::ShutDown));
                    }
                }
                Msg::Query(q) => q(Err(Error::ShutDown)),
                Msg::Shutdown => {}
            }
        }
        self.state
    }

    /// Publishes coalesced positions whose interval is up, then fires deadlines that are
    /// due, as a logged `Tick`, so that a command never sees a state that is behind the
    /// clock.
    fn fire_due_deadlines(&mut self) {
        let now = self.clock.now();
        while let Some((driver, pending)) = self.positions.next_due(now) {
            let current = self.state.driver(driver).and_then(|d| d.fix);
            if current != pending.against {
                continue; // a newer position was published since: this one is older
            }
            self.apply_at(Actor::User(driver), Command::UpdateLocation(pending.report), now, None);
        }
        if self.state.next_deadline().is_some_and(|d| d <= now) {
            self.apply_at(Actor::System, Command::Tick, now, None);
        }
    }

    fn apply_one(&mut self, actor: Actor, command: Command, reply: Option<Reply>) {
        if let Some(why) = &self.read_only {
            if let Some(reply) = reply {
                reply(Err(Error::ReadOnly(why.clone())));
            }
            return;
        }
        // A driver's new report supersedes the one held back: it is not published first.
        let superseded = match (actor, &command) {
            (Actor::User(driver), Command::UpdateLocation(_)) => self.positions.take(driver).map(|p| (driver, p)),
            _ => None,
        };
        self.fire_due_deadlines();
        let now = self.clock.now();
        let refused = self.apply_at(actor, command, now, reply);
        if let (true, Some((driver, pending))) = (refused, superseded) {
            // The new report was refused: the one held back is still the newest.
            self.positions.put(driver, pending);
        }
    }

    /// Applies one command at `at` and logs it (a `Tick` with nothing due is neither);
    /// answers `reply` (at once for position reports, after the commit for the others).
    /// Returns whether it was refused.
    fn apply_at(&mut self, actor: Actor, command: Command, at: Timestamp, reply: Option<Reply>) -> bool {
        if actor == Actor::System
            && matches!(command, Command::Tick)
            && self.state.next_deadline().is_none_or(|d| d > at)
        {
            // Nothing is due: a tick would change nothing, so it is neither applied nor
            // logged (a server ticking every second would otherwise cost a record and an
            // fsync a second for nothing). Its caller is still answered with the batch,
            // after what fired just before it is durable and published.
            if let Some(reply) = reply {
                self.replies.push((reply, Ok(Outcome::Done)));
            }
            return false;
        }
        self.apply_logged(actor, command, at, reply)
    }

    /// Applies `command` and adds its record to the batch, whatever it is. Returns
    /// whether it was refused.
    fn apply_logged(&mut self, actor: Actor, mut command: Command, at: Timestamp, reply: Option<Reply>) -> bool {
        // An idempotency key or a gateway event id that left the hot state: what the
        // history keeps goes into the command (a redb read; only keyed commands and
        // gateway events whose id is not hot pay it). Answered from it, the command
        // needs no trip back from the history.
        let answered = match self.journal.recall(&self.state, actor, &mut command, at) {
            Ok(answered) => answered,
            Err(e) => {
                if let Some(reply) = reply {
                    self.replies.push((reply, Err(e)));
                }
                return true;
            }
        };
        if !answered
            && let Some(trip_id) = command.trip_id()
            && self.state.trip(trip_id).is_none()
            && !matches!(command, Command::Restored { .. })
        {
            // A finished trip that left the hot state: bring it back with the command
            // (a redb read; only commands about trips not in memory pay it).
            match self.journal.archived_trip(trip_id) {
                Ok(Some(trip)) => command = Command::Restored { trip: Arc::new(trip), command: Box::new(command) },
                Ok(None) => {}
                Err(e) => {
                    if let Some(reply) = reply {
                        self.replies.push((reply, Err(e)));
                    }
                    return true;
                }
            }
        }
        self.state.stamp(&mut command, self.ids.as_mut());
        let exempt = command.is_durability_exempt();
        let record = Record { at, actor, command };
        let result = apply(&mut self.state, actor, &record.command, at, &mut self.fx);
        let result = match result {
            Ok(Outcome::Coalesced { publish_at }) => {
                // Nothing changed, so nothing is logged: the report waits here instead.
                if let (Actor::User(driver), Command::UpdateLocation(report)) = (actor, &record.command) {
                    let against = self.state.driver(driver).and_then(|d| d.fix);
                    self.positions.put(driver, PendingPosition { report: *report, against, publish_at });
                }
                self.shared.stats.locations_coalesced.fetch_add(1, Ordering::Relaxed);
                Ok(Outcome::Coalesced { publish_at })
            }
            Ok(outcome) => match self.log(&record) {
                Ok(()) => {
                    self.shared.stats.applied.fetch_add(1, Ordering::Relaxed);
                    Ok(outcome)
                }
                // Applied but not loggable: a bug. Throw the batch away as if the write failed.
                Err(e) => {
                    self.fail_batch(&e.to_string());
                    Err(e)
                }
            },
            Err(e) => {
                let stats = &self.shared.stats;
                stats.refused.fetch_add(1, Ordering::Relaxed);
                if matches!(e, DomainError::ImplausibleLocation { .. }) {
                    stats.spoofing_suspected.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::Domain(e))
            }
        };
        let refused = result.is_err();
        if let Some(reply) = reply {
            if exempt {
                self.answered_early = true;
                reply(result);
            } else {
                self.replies.push((reply, result));
            }
        }
        refused
    }

    /// Adds an applied command's record to the batch. A published position report joins
    /// the run of positions instead (one `Positions` record, however many reports: a
    /// replay and a follower apply the same fixes in the same order), which is logged
    /// before any other record, so the log keeps the order things happened in.
    fn log(&mut self, record: &Record) -> Result<()> {
        if let (Actor::User(driver), Command::UpdateLocation(_)) = (record.actor, &record.command)
            && let Some(fix) = self.state.driver(driver).and_then(|d| d.fix)
        {
            self.moves.push((driver, fix));
            if self.moves.len() >= MAX_POSITIONS_PER_RECORD {
                self.log_moves(record.at)?;
            }
            return Ok(());
        }
        self.log_moves(record.at)?;
        self.batch_needs_sync = true;
        self.journal.push(record)
    }

    /// Logs the run of positions, if any, as one `Positions` record.
    fn log_moves(&mut self, at: Timestamp) -> Result<()> {
        if self.moves.is_empty() {
            return Ok(());
        }
        let command = Command::Positions(std::mem::take(&mut self.moves));
        let record = Record { at, actor: Actor::System, command };
        let pushed = self.journal.push(&record);
        // The vector goes back for the next run (its capacity with it).
        if let Command::Positions(mut moves) = record.command {
            moves.clear();
            self.moves = moves;
        }
        pushed
    }

    /// Makes the batch durable, publishes it, hands out its events, then answers the
    /// commands and then the queries (the state now equals the published view).
    fn commit(&mut self) {
        if let Err(e) = self.log_moves(self.clock.now()) {
            self.fail_batch(&e.to_string());
            self.answer_queries();
            return;
        }
        // Positions only (their callers answered already) are written now and synced
        // within `POSITIONS_SYNC_DELAY`; anything else is synced before it is published.
        // A cluster's leader syncs every batch (a deferred batch would be lost with the
        // lease, after readers saw it).
        let defer = !std::mem::take(&mut self.batch_needs_sync) && !self.stopping && self.leadership.is_none();
        if self.replies.is_empty() && self.fx.is_empty() && !self.journal.has_pending() {
            self.answer_queries();
            return;
        }
        if self.lease_lost() {
            // Another node may lead already: nothing of this batch may become durable.
            self.step_down("the leader lease was revoked before the batch was written");
            return;
        }
        let written = if defer { self.journal.write_deferred().map(|()| None) } else { self.journal.commit() };
        match written {
            Ok(synced) => {
                self.record_sync(synced);
                if !self.journal.has_unsynced() {
                    self.unsynced_since = None;
                } else if self.unsynced_since.is_none() {
                    self.unsynced_since = Some(Instant::now());
                }
            }
            Err(e) if e.is_fenced() || (matches!(e, StorageError::Unavailable { .. }) && self.lease_lost()) => {
                self.step_down(&format!("the batch was not written: {e}"));
                return;
            }
            Err(e) => {
                self.fail_batch(&write_failure(&e));
                // The state was rebuilt from what is durable: queries read that.
                self.answer_queries();
                return;
            }
        }
        // A batch boundary: what is published next must all be durable.
        assert!(!self.journal.has_pending(), "a committed batch left records unwritten");
        // In place (the view's maps copy a node only while a reader's snapshot shares it);
        // the write lock waits only for readers' brief point reads and snapshot copies.
        self.shared.view.write().publish(&self.state, &self.fx);
        if !self.fx.events.is_empty() {
            let events: Arc<[Event]> = std::mem::take(&mut self.fx.events).into();
            self.shared.subscribers.lock().retain(|s| s.try_send(Arc::clone(&events)).is_ok());
        }
        self.report_applied(now_ms(self.clock.now()));
        let stats = &self.shared.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.last_batch.store(self.replies.len() as u64, Ordering::Relaxed);
        stats.batch_commands.record(self.replies.len() as u64);
        for (reply, result) in self.replies.drain(..) {
            reply(result);
        }
        self.fx.clear();
        // Before the archive below changes the state past the view.
        self.answer_queries();
        let now = self.clock.now();
        // A checkpoint is of a durable LSN: none while positions wait for their sync.
        if self.archive.is_empty() && !self.journal.has_unsynced() {
            // No checkpoint starts while the last one's archive is under way: it would
            // write again, and hand back again, what is about to leave.
            let done = self.journal.checkpoint_if_due(&self.state, now, &self.shared.stats.checkpoints);
            self.archive.extend(done.into_commands());
        }
        // Their history rows are durable: they leave the hot state, a bounded part with
        // each batch, so that no batch waits behind the removal of a checkpoint's worth
        // of trips (tens of thousands: 50 ms on the writer when it was one command).
        if let Some(archive) = self.archive.pop_front() {
            self.apply_at(Actor::System, archive, now, None);
        }
    }

    /// Looks for the next message for up to [`POLL_AWAKE`] (less when `wait` is shorter)
    /// before the writer goes to sleep on the queue, after a batch that answered a position
    /// report before its commit: its caller, waiting for each answer, sends the next report
    /// within microseconds, and finding the writer awake saves a wake-up (tens of
    /// microseconds on a virtual machine). It yields the core while it looks. Only then:
    /// measured, polling after every batch took the two cores from a server's network
    /// threads (HTTP accept p99 21–24 ms instead of 14–17).
    fn poll_briefly(&self, wait: Duration) -> Option<Msg> {
        let started = Instant::now();
        let until = POLL_AWAKE.min(wait);
        loop {
            if let Ok(msg) = self.rx.try_recv() {
                return Some(msg);
            }
            if started.elapsed() >= until {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// Counts a sync that took `took` (`None`: nothing was synced).
    fn record_sync(&self, took: Option<Duration>) {
        if let Some(took) = took {
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            let stats = &self.shared.stats;
            stats.syncs.fetch_add(1, Ordering::Relaxed);
            stats.last_sync_us.store(us, Ordering::Relaxed);
            stats.max_sync_us.fetch_max(us, Ordering::Relaxed);
            stats.sync_us.record(us);
        }
    }

    /// Makes the positions written without a sync durable (their delay is up, or the
    /// engine stops). A failure is a failed batch: read-only, and the state rebuilt
    /// from what is durable, the view's drivers with it.
    fn sync_written(&mut self) {
        match self.journal.commit() {
            Ok(synced) => {
                self.record_sync(synced);
                self.unsynced_since = None;
            }
            Err(e) => {
                self.fail_batch(&write_failure(&e));
            }
        }
    }

    fn answer_queries(&mut self) {
        for q in self.queries.drain(..) {
            q(Ok(&self.state));
        }
    }

    /// The batch did not become durable: nobody hears "done", nothing is published,
    /// and the state is rebuilt from what is on disk. Commands are refused until a
    /// write succeeds again.
    fn fail_batch(&mut self, why: &str) {
        self.shared.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        self.shared.read_only.store(true, Ordering::Relaxed);
        self.read_only = Some(why.to_owned());
        // What had not left yet stays hot (and in the history); the next checkpoint
        // hands it back.
        self.archive.clear();
        for (reply, _) in self.replies.drain(..) {
            reply(Err(Error::ReadOnly(why.to_owned())));
        }
        self.fx.clear();
        self.moves.clear();
        // Positions written without a sync were published: the view's drivers are
        // copied again from the rebuilt state.
        let published_undurable = self.unsynced_since.take().is_some();
        if self.probe_changed_nothing && !published_undurable {
            // A probe that changed nothing failed: the state is still the durable one;
            // only the log must be cut back to what is durable.
            self.stale |= self.journal.reset_log().is_err();
        } else {
            match self.rebuild() {
                Ok(state) => {
                    self.state = state;
                    if published_undurable {
                        self.shared.view.write().republish_drivers(&self.state);
                    }
                }
                // `try_leave_read_only` retries it before any write.
                Err(_) => self.stale = true,
            }
        }
    }

    /// The state as of the last durable record. A cluster node's shared log may have
    /// grown past it meanwhile (another leader): it rebuilds to what the view shows and
    /// follows the rest, so that every record reaches the view.
    fn rebuild(&mut self) -> Result<State> {
        if self.leadership.is_some() { self.journal.rebuild_published() } else { self.journal.rebuild() }
    }

    /// Tries to write again: rebuilds the state from disk if the last rebuild failed,
    /// then makes one `Tick` durable — logged even with nothing due, so that the disk
    /// really takes a write before the engine says it is writable. Success ends
    /// read-only mode; a failure keeps it (through `fail_batch`).
    fn try_leave_read_only(&mut self) {
        if self.stale {
            let Ok(state) = self.rebuild() else { return };
            self.state = state;
            self.stale = false;
        }
        // A failed commit below calls `fail_batch`, which sets it again.
        self.read_only = None;
        let now = self.clock.now();
        self.probe_changed_nothing = self.state.next_deadline().is_none_or(|d| d > now);
        let _ = self.apply_logged(Actor::System, Command::Tick, now, None);
        self.commit();
        self.probe_changed_nothing = false;
        if self.read_only.is_none() {
            self.shared.read_only.store(false, Ordering::Relaxed);
        }
    }
}
