//! The engine's journal: how applied commands become durable, and how the state
//! comes back after a crash or a failed write.
//!
//! Owns the command log (the WAL in a data directory — optionally wrapped through
//! [`LogWrapper`], the seam a whole-server test uses to make writes fail — or
//! [`MemLog`](dispatch_storage::MemLog) in memory), the directory lock, and the *base* a state can be rebuilt from (the initial
//! state, later the last checkpoint) with its LSN.
//!
//! Guarantees:
//! - every applied command of a batch is appended and made durable with one
//!   `append` and one `sync` (group commit) before any caller of the batch hears back;
//! - recovery = base + replay of every durable record above the base's LSN; a record
//!   that no longer decodes or applies stops the start with a clear message rather
//!   than serving a state that differs from what was acknowledged;
//! - after a failed write the in-memory state (which holds the batch that did not
//!   become durable) is thrown away and rebuilt from disk the same way;
//! - one process per data directory: a second `open` fails while the first holds
//!   the lock;
//! - a cluster node (issue 21) opens a log several nodes share in place of the WAL
//!   ([`LogOpener`], from its checkpoint's LSN), refuses one that ends below its
//!   checkpoint, and follows what other writers made durable (`follow`, `claim`);
//! - what a checkpoint moves to the history (finished trips, settled transfers,
//!   idempotency keys and gateway event ids older than [`KEYS_HOT_WINDOW_S`]) is bounded
//!   per checkpoint, fits one history transaction and one `Archive` record, and is durable
//!   there before the writer logs its removal from the hot state.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dispatch_storage::{CommandLog, Lsn, RecoveryReport, StorageError, Wal, WalConfig, snapshot};

use crate::checkpoint::{self, Stored};
use crate::clock::Timestamp;
use crate::command::{Actor, Command};
use crate::error::{Error, Result};
use crate::history::{ArchivedCounts, History};
use crate::id::TripId;
use crate::record::Record;
use crate::state::{AccountRows, Effects, State, apply, gateway_event_kept};
use crate::trip::Trip;

mod backup;
mod checkpointer;

pub use backup::{BackupReport, backup, backup_pausing, restore};
pub(crate) use checkpointer::{Archivable, CheckpointPolicy};
pub use checkpointer::{CheckpointStats, KEYS_HOT_WINDOW_S};
use checkpointer::{Checkpointer, Committed, Job};

/// What opening a data directory found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The LSN the base state stands at (0: the empty state).
    pub base_lsn: Lsn,
    /// Records replayed on top of it.
    pub replayed: u64,
    /// The last LSN in the log after recovery.
    pub last_lsn: Lsn,
    /// What the WAL's own recovery cut (a torn tail), if anything.
    pub wal: Option<WalRecovery>,
}

/// The WAL's recovery, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecovery {
    /// Bytes cut from a torn tail.
    pub truncated_bytes: u64,
    /// Segments dropped after the cut.
    pub dropped_segments: usize,
    /// Where the first damage was and what it was, rendered.
    pub damage: Option<String>,
}

impl From<&RecoveryReport> for WalRecovery {
    fn from(r: &RecoveryReport) -> Self {
        WalRecovery {
            truncated_bytes: r.truncated_bytes,
            dropped_segments: r.dropped_segments,
            damage: r.damage.as_ref().map(|d| format!("{d:?}")),
        }
    }
}

/// The encoded records of the batch being built, back to back in one buffer
/// (one allocation per batch, not per record), with where each one ends.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

pub(crate) struct Journal {
    log: Box<dyn CommandLog>,
    /// LSN of the last record made durable.
    durable_lsn: Lsn,
    /// LSN of the last record written, durable or not: ahead of `durable_lsn` only after
    /// [`Journal::write_deferred`], until the next [`Journal::commit`].
    written_lsn: Lsn,
    /// Commits checkpoints in the background (data directories only).
    checkpointer: Option<Checkpointer>,
    policy: CheckpointPolicy,
    /// Encoded records of the batch being built.
    pending: Batch,
    /// Where a rebuild starts: the state at `base_lsn`, kept in memory for in-memory
    /// logs; for data directories only until the first checkpoint, after which a rebuild
    /// reads the checkpoint back from the store (keeping a second copy of a country's state in
    /// memory for a rare event would double its footprint).
    base: Option<State>,
    base_lsn: Lsn,
    /// Finished trips, once moved out of the hot state (data directories only).
    history: Option<Arc<History>>,
    /// What the history holds, as of the last checkpoint.
    archived: ArchivedCounts,
    /// Held for the life of the journal: the data directory's lock.
    _lock: Option<File>,
}

/// Wraps a data directory's WAL before the writer uses it: the seam where a whole-server
/// test puts a log that fails on demand (`dispatchd serve --fault-file`). `None` in
/// production.
pub type LogWrapper = Box<dyn FnOnce(Box<dyn CommandLog>) -> Box<dyn CommandLog> + Send>;

/// Opens the command log a data directory uses in place of its WAL: a log several nodes
/// share (dispatch-cluster's JetStream stream; issue 21). Given the LSN of the data
/// directory's checkpoint (0 without one): the log must be able to read from the record
/// after it, or say [`StorageError::Released`] (the node then needs a newer checkpoint).
pub type LogOpener = Box<dyn FnOnce(Lsn) -> std::result::Result<Box<dyn CommandLog>, StorageError> + Send>;

/// What an [`Error::Storage`] says when a node's data directory cannot start on the
/// shared log because the log no longer holds the records after its checkpoint (the
/// stream was purged past it): the node needs a newer checkpoint, from a peer.
/// [`Error::is_released`] detects it.
pub const NEEDS_NEWER_CHECKPOINT: &str =
    "the shared log no longer holds the records after this node's checkpoint: a newer checkpoint is needed";

pub(crate) fn storage_error(context: &str, e: &StorageError) -> Error {
    Error::Storage(format!("{context}: {e}"))
}

impl Journal {
    /// A journal over any command log (a replicated stream, or a fault-injecting log
    /// in tests), starting from `base` at LSN 0 and replaying what the log holds.
    pub(crate) fn with_log(
        log: Box<dyn CommandLog>,
        base: State,
        policy: CheckpointPolicy,
    ) -> Result<(Self, State, Recovery)> {
        let journal = Journal {
            durable_lsn: log.durable_lsn(),
            written_lsn: log.durable_lsn(),
            log,
            checkpointer: None,
            policy,
            pending: Batch::default(),
            base: Some(base),
            base_lsn: 0,
            history: None,
            archived: ArchivedCounts::default(),
            _lock: None,
        };
        journal.recovered(None)
    }

    /// Opens (creating) the data directory `dir`, locks it, recovers the log, and
    /// returns the journal with the recovered state.
    pub(crate) fn open_dir(
        dir: &Path,
        base: State,
        policy: CheckpointPolicy,
        wrap: Option<LogWrapper>,
        shared_log: Option<LogOpener>,
    ) -> Result<(Self, State, Recovery)> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot create data dir {}: {e}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let history = History::open(dir)?;
        let legacy = snapshot_dir(dir);
        let (base, base_lsn, stored) = match checkpoint::load(history.store())? {
            Stored::State(lsn, state) => {
                let stored = state.rows();
                (*state, lsn, stored)
            }
            // Written before the checkpoint moved into the store: its state is the newest
            // snapshot file. The first checkpoint writes every row.
            Stored::Legacy | Stored::Nothing => match snapshot::latest(&legacy)
                .map_err(|e| storage_error("the checkpoint is unreadable; refusing to start", &e))?
            {
                Some((lsn, bytes)) => {
                    (checkpoint::decode_state(&bytes, checkpoint::LEGACY_SNAPSHOT_FORMAT)?, lsn, AccountRows::default())
                }
                None => (base, 0, AccountRows::default()),
            },
        };
        let (log, report): (Box<dyn CommandLog>, _) = match shared_log {
            // A cluster node: the shared log in place of the WAL (no `wal/` directory).
            Some(open) => {
                let log = open(base_lsn).map_err(|e| match e {
                    StorageError::Released { .. } => Error::Storage(format!(
                        "{NEEDS_NEWER_CHECKPOINT} (the local checkpoint is at LSN {base_lsn}: {e})"
                    )),
                    e => storage_error("cannot open the shared log", &e),
                })?;
                if log.last_lsn() < base_lsn {
                    return Err(Error::Storage(format!(
                        "the local checkpoint is at LSN {base_lsn} but the shared log ends at {}: this node's data \
                         directory is not this cluster's; refusing to start",
                        log.last_lsn()
                    )));
                }
                (log, None)
            }
            None => {
                let config = WalConfig { segment_bytes_max: policy.segment_bytes, ..WalConfig::default() };
                let (wal, report) = Wal::open(wal_dir(dir), config)
                    .map_err(|e| storage_error(&format!("cannot open the WAL in {}", dir.display()), &e))?;
                if wal.last_lsn() < base_lsn {
                    return Err(Error::Storage(format!(
                        "the checkpoint is at LSN {base_lsn} but the WAL ends at {}: the WAL is not this checkpoint's; refusing to start",
                        wal.last_lsn()
                    )));
                }
                (Box::new(wal) as Box<dyn CommandLog>, Some(WalRecovery::from(&report)))
            }
        };
        let archived = history.archived_counts()?;
        let durable_lsn = log.durable_lsn();
        let journal = Journal {
            durable_lsn,
            written_lsn: durable_lsn,
            log: match wrap {
                Some(wrap) => wrap(log),
                None => log,
            },
            checkpointer: Some(Checkpointer::start(Arc::clone(&history), stored, legacy.is_dir().then_some(legacy))?),
            policy,
            pending: Batch::default(),
            base: Some(base),
            base_lsn,
            history: Some(history),
            archived,
            _lock: Some(lock),
        };
        journal.recovered(report)
    }

    /// A finished trip that left the hot state, from the history (none without one).
    pub(crate) fn archived_trip(&self, id: TripId) -> Result<Option<Trip>> {
        match &self.history {
            Some(history) => history.trip(id),
            None => Ok(None),
        }
    }

    /// Before `command` is applied at `at`: stamps into it what the history keeps for an
    /// idempotency key or a gateway event id that is not in the hot state (and is not
    /// expired) — `Command::Keyed::archived`, `Command::PaymentEvent::archived` — and
    /// clears whatever a caller put there: only the writer stamps them. Returns whether
    /// the command will be answered from a key or an event id (hot or archived) without
    /// running, so that no trip needs to come back from the history for it. A history
    /// that cannot be read refuses the command (it might otherwise run twice).
    pub(crate) fn recall(&self, state: &State, actor: Actor, command: &mut Command, at: Timestamp) -> Result<bool> {
        match command {
            Command::Keyed { key, command: inner, archived } => {
                *archived = None;
                if state.remembered(key.principal, &key.key).is_some() {
                    return Ok(true);
                }
                // A key `apply` refuses anyway (another principal's, malformed) is not read.
                if let Some(h) = &self.history
                    && key.principal == actor
                    && key.validate().is_ok()
                    && let Some(r) = h.remembered(key.principal, &key.key)?
                    && r.expires_at > at
                {
                    *archived = Some(Arc::new(r));
                    return Ok(true);
                }
                self.recall(state, actor, inner, at)
            }
            Command::PaymentEvent { gateway, event_id, archived, .. } => {
                *archived = None;
                if state.gateway_event_seen(gateway, event_id).is_some() {
                    return Ok(true);
                }
                if let Some(h) = &self.history
                    && let Some(seen) = h.gateway_event(gateway, event_id)?
                    && gateway_event_kept(seen, at)
                {
                    *archived = Some(seen);
                    return Ok(true);
                }
                Ok(false)
            }
            Command::Restored { command: inner, .. } | Command::Audited { command: inner, .. } => {
                self.recall(state, actor, inner, at)
            }
            _ => Ok(false),
        }
    }

    /// The history store, when the journal has a data directory.
    pub(crate) fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// After a committed batch at `now`: collects a finished checkpoint (releasing the
    /// WAL below it) and starts the next one when enough records accumulated. Returns
    /// what that checkpoint made durable in the history (finished trips, settled
    /// transfers, idempotency keys, gateway event ids): the writer archives them (logs
    /// their removal from the hot state).
    pub(crate) fn checkpoint_if_due(&mut self, state: &State, now: Timestamp, stats: &CheckpointStats) -> Archivable {
        let mut archivable = Archivable::default();
        let due = self.durable_lsn.saturating_sub(self.base_lsn) >= self.policy.every_records;
        let Some(cp) = self.checkpointer.as_mut() else {
            // No data directory: the checkpoint is the state itself, kept as the
            // rebuild base, and the log below it can go (bounding an in-memory log).
            if due && self.log.release_below(self.durable_lsn + 1).is_ok() {
                self.base = Some(state.clone());
                self.base_lsn = self.durable_lsn;
                stats.written.fetch_add(1, Ordering::Relaxed);
                stats.last_lsn.store(self.durable_lsn, Ordering::Relaxed);
            }
            self.report_counts(state, stats);
            return archivable;
        };
        if let Ok(result) = cp.done.try_recv() {
            match (result, cp.in_flight.take()) {
                (Ok(Committed { lsn, counts, rows, took, archivable: leaving }), Some(sent)) if lsn == sent => {
                    archivable = leaving;
                    self.archived = counts;
                    stats.last_rows.store(rows, Ordering::Relaxed);
                    stats.last_micros.store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                    // The checkpoint is durable: the WAL below it can go, and the snapshot
                    // files of an older version. A failure to release only keeps files
                    // longer; a poisoned WAL surfaces at the next commit.
                    let _ = self.log.release_below(lsn + 1);
                    if let Some(legacy) = cp.legacy.take() {
                        let _ = fs::remove_dir_all(legacy);
                    }
                    // From now on a rebuild reads this checkpoint back from the store.
                    self.base = None;
                    self.base_lsn = lsn;
                    stats.written.fetch_add(1, Ordering::Relaxed);
                    stats.last_lsn.store(lsn, Ordering::Relaxed);
                }
                (result, sent) => {
                    let why = match (result, sent) {
                        (Err(why), _) => why,
                        (Ok(c), Some(sent)) => format!("checkpoint at LSN {} answered for {sent}", c.lsn),
                        (Ok(c), None) => format!("checkpoint at LSN {} answered with none in flight", c.lsn),
                    };
                    *stats.last_error.lock() = Some(why);
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if due
            && cp.in_flight.is_none()
            && let Some(jobs) = &cp.jobs
        {
            // Only encoded by the checkpoint thread: the index (rebuilt when read back) stays.
            let job = Job { lsn: self.durable_lsn, state: state.copy_for_checkpoint(), now };
            if jobs.try_send(job).is_ok() {
                cp.in_flight = Some(self.durable_lsn);
            }
        }
        self.report_counts(state, stats);
        archivable
    }

    /// Puts how many idempotency keys and gateway event ids `state` and the history hold
    /// (as of the last checkpoint) into `stats`.
    pub(crate) fn report_counts(&self, state: &State, stats: &CheckpointStats) {
        stats.keys_hot.store(state.idempotency_keys() as u64, Ordering::Relaxed);
        stats.gateway_events_hot.store(state.gateway_event_ids() as u64, Ordering::Relaxed);
        stats.keys_archived.store(self.archived.keys, Ordering::Relaxed);
        stats.gateway_events_archived.store(self.archived.gateway_events, Ordering::Relaxed);
    }

    fn recovered(self, wal: Option<WalRecovery>) -> Result<(Self, State, Recovery)> {
        let (state, replayed) = self.replay()?;
        let recovery = Recovery { base_lsn: self.base_lsn, replayed, last_lsn: self.log.last_lsn(), wal };
        Ok((self, state, recovery))
    }

    /// Base + every durable record above it. Refuses a log that skips records or
    /// holds one that does not decode or apply.
    fn replay(&self) -> Result<(State, u64)> {
        self.replay_upto(Lsn::MAX)
    }

    /// [`replay`](Self::replay), stopping after the record at `limit`.
    fn replay_upto(&self, limit: Lsn) -> Result<(State, u64)> {
        let (mut state, base_lsn) = self.load_base()?;
        let mut fx = Effects::default();
        let mut replayed = 0u64;
        let first = base_lsn + 1;
        let records = self.log.read_from(first).map_err(|e| storage_error("cannot read the log", &e))?;
        for (expected, item) in (first..=limit).zip(records) {
            let item = item.map_err(|e| storage_error("cannot read the log", &e))?;
            if item.lsn != expected {
                return Err(Error::Storage(format!("the log skips from LSN {} to {}", expected - 1, item.lsn)));
            }
            let record = Record::decode(&item.payload)
                .map_err(|e| Error::Storage(format!("record at LSN {} is unreadable: {e}", item.lsn)))?;
            apply(&mut state, record.actor, &record.command, record.at, &mut fx).map_err(|e| {
                Error::Storage(format!(
                    "record at LSN {} ({}) no longer applies: {e}; refusing to start on a state that differs from the log",
                    item.lsn,
                    record.command.name()
                ))
            })?;
            fx.clear();
            replayed += 1;
        }
        state.check_invariants().map_err(|e| Error::Storage(format!("the recovered state is inconsistent: {e}")))?;
        Ok((state, replayed))
    }

    /// A state and the LSN it stands at, to replay the log onto: the base in memory, or
    /// the checkpoint read back from the store (at `base_lsn`, or a newer one the
    /// checkpoint thread committed meanwhile: both are durable and the log holds what
    /// follows them).
    fn load_base(&self) -> Result<(State, Lsn)> {
        if let Some(base) = &self.base {
            return Ok((base.clone(), self.base_lsn));
        }
        let history = self.history.as_ref().ok_or_else(|| Error::internal("no base and no store"))?;
        match checkpoint::load(history.store())? {
            Stored::State(lsn, state) if lsn >= self.base_lsn => Ok((*state, lsn)),
            _ => Err(Error::Storage(format!("the checkpoint at LSN {} is gone from the store", self.base_lsn))),
        }
    }

    /// Adds an applied command to the current batch.
    pub(crate) fn push(&mut self, record: &Record) -> Result<()> {
        record.encode_into(&mut self.pending.bytes)?;
        self.pending.ends.push(self.pending.bytes.len());
        Ok(())
    }

    /// Appends the batch and makes it durable, with whatever [`Journal::write_deferred`]
    /// wrote before it. Returns how long the sync took (`None` when there was nothing
    /// to write or sync).
    pub(crate) fn commit(&mut self) -> std::result::Result<Option<Duration>, StorageError> {
        self.write_pending()?;
        if self.written_lsn == self.durable_lsn {
            return Ok(None);
        }
        let started = Instant::now();
        let durable = self.log.sync()?;
        if durable != self.written_lsn {
            return Err(StorageError::InvalidLsn { lsn: durable, reason: "a sync must make the whole batch durable" });
        }
        self.durable_lsn = durable;
        Ok(Some(started.elapsed()))
    }

    /// Appends the batch without making it durable: a batch of position reports only,
    /// whose callers were answered already (`Writer::commit` says when). The next
    /// [`Journal::commit`] makes it durable with what follows; a checkpoint waits for
    /// that (its LSN is a durable one).
    pub(crate) fn write_deferred(&mut self) -> std::result::Result<(), StorageError> {
        self.write_pending()
    }

    /// Whether records were written that are not durable yet.
    pub(crate) fn has_unsynced(&self) -> bool {
        self.written_lsn > self.durable_lsn
    }

    fn write_pending(&mut self) -> std::result::Result<(), StorageError> {
        if self.pending.ends.is_empty() {
            return Ok(());
        }
        let mut start = 0;
        let payloads: Vec<&[u8]> = self
            .pending
            .ends
            .iter()
            .map(|&end| {
                let payload = &self.pending.bytes[start..end];
                start = end;
                payload
            })
            .collect();
        let records = payloads.len() as u64;
        let appended = self.log.append(&payloads);
        self.pending.clear();
        let first = appended?;
        // The log is dense and this journal its only writer: the batch follows the last
        // record written, and a sync makes all of it durable. Replay, checkpoints and
        // `release_below` rely on both; a log that breaks them (a shared log over the
        // network, say) fails the batch, and the writer rebuilds from what is durable.
        if first != self.written_lsn + 1 {
            return Err(StorageError::InvalidLsn {
                lsn: first,
                reason: "the batch must follow the last record written",
            });
        }
        self.written_lsn = first + records - 1;
        Ok(())
    }

    /// After a failed write: drops the batch, reopens the log from disk and
    /// rebuilds the state from the base and the durable records.
    pub(crate) fn rebuild(&mut self) -> Result<State> {
        self.reset_log()?;
        self.replay().map(|(state, _)| state)
    }

    /// For a cluster node that stops leading: drops the batch not written, reopens the
    /// shared log (which moves to its end) and rebuilds the state as of this journal's
    /// last durable record — exactly what the view shows, since a batch is published
    /// only once durable. What other writers appended since is then *followed*, so it
    /// reaches the view and the subscribers like any followed record (a rebuild to the
    /// log's end would hold records the view never showed).
    pub(crate) fn rebuild_published(&mut self) -> Result<State> {
        self.pending.clear();
        self.log.reopen().map_err(|e| storage_error("cannot reopen the log", &e))?;
        self.written_lsn = self.durable_lsn;
        let (state, _) = self.replay_upto(self.durable_lsn)?;
        Ok(state)
    }

    /// After a failed write: drops the batch not written and reopens the log, which
    /// cuts it back to what is durable (a failed fsync poisons the WAL until then).
    pub(crate) fn reset_log(&mut self) -> Result<()> {
        self.pending.clear();
        self.log.reopen().map_err(|e| storage_error("cannot reopen the log", &e))?;
        self.durable_lsn = self.log.durable_lsn();
        self.written_lsn = self.durable_lsn;
        Ok(())
    }

    /// For a node of a cluster: waits up to `timeout` for records another writer made
    /// durable after the last one this journal holds, and returns them (dense, in order;
    /// empty: none came). They are then durable here too: the caller applies them.
    pub(crate) fn follow(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Vec<dispatch_storage::Record>, StorageError> {
        let records = self.log.follow(self.durable_lsn, timeout)?;
        for (expected, record) in (self.durable_lsn + 1..).zip(&records) {
            if record.lsn != expected {
                return Err(StorageError::InvalidLsn { lsn: record.lsn, reason: "the shared log skipped a record" });
            }
        }
        if let Some(last) = records.last() {
            self.durable_lsn = last.lsn;
            self.written_lsn = last.lsn;
        }
        Ok(records)
    }

    /// For a node of a cluster: makes this journal the shared log's only writer (see
    /// [`CommandLog::claim`]); `Fenced` when another writer appended since the last follow.
    pub(crate) fn claim(&mut self) -> std::result::Result<(), StorageError> {
        self.pending.clear();
        self.log.claim()
    }

    /// The last LSN this journal holds durable (written or followed).
    pub(crate) fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// Writes what a followed `Archive` names (built from the follower's own state) to
    /// the history in one transaction, before the follower applies it: its history then
    /// holds them as the leader's does. Idempotent. Nothing to do without a history.
    pub(crate) fn write_archived(&self, state: &State, command: &Command) -> Result<()> {
        let Some(history) = &self.history else { return Ok(()) };
        let Command::Archive { trips, transfer_ids, keys, gateway_events, alerts, audit } = command else {
            return Ok(());
        };
        let leaving = crate::history::Leaving {
            trips: trips
                .iter()
                .filter_map(|(id, revision)| state.trip(*id).filter(|t| t.revision == *revision).cloned())
                .collect(),
            transfers: transfer_ids.iter().filter_map(|id| state.ledger().transfer(*id).cloned()).collect(),
            keys: keys
                .iter()
                .filter_map(|(principal, key, expires_at)| {
                    let r = state.remembered(*principal, key).filter(|r| r.expires_at == *expires_at)?;
                    Some((*principal, key.clone(), Arc::clone(r)))
                })
                .collect(),
            events: gateway_events.clone(),
            alerts: alerts.iter().filter_map(|id| state.alert(*id).cloned()).collect(),
            audit: audit.iter().filter_map(|seq| state.audit_entry(*seq).cloned()).collect(),
        };
        history.write_leaving(&leaving)
    }

    /// Whether the current batch holds records not yet written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.ends.is_empty()
    }
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// The directory under a data directory where the server keeps the files the state
/// names by content hash (driver documents: `<sha256 hex>`, written to a temporary name,
/// synced, then renamed). The engine never reads them; [`backup`] and [`restore`] copy
/// them.
pub const DOCUMENTS_DIR: &str = "documents";

fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            Err(Error::Storage(format!("data dir {} is in use by another dispatch process", dir.display())))
        }
        Err(TryLockError::Error(e)) => Err(Error::Storage(format!("cannot lock {}: {e}", path.display()))),
    }
}
