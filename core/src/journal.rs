//! The engine's journal: how applied commands become durable, and how the state
//! comes back after a crash or a failed write.
//!
//! Owns the command log (the WAL in a data directory — optionally wrapped through
//! [`LogWrapper`], the seam a whole-server test uses to make writes fail — or
//! [`MemLog`] in memory), the directory lock, and the *base* a state can be rebuilt from (the initial
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
//! - what a checkpoint moves to the history (finished trips, settled transfers,
//!   idempotency keys and gateway event ids older than [`KEYS_HOT_WINDOW_S`]) is bounded
//!   per checkpoint, fits one history transaction and one `Archive` record, and is durable
//!   there before the writer logs its removal from the hot state.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dispatch_storage::{CommandLog, Lsn, RecoveryReport, StorageError, Wal, WalConfig, snapshot};

use crate::checkpoint::{self, Stored};
use crate::clock::Timestamp;
use crate::command::{Actor, Command};
use crate::error::{Error, Result};
use crate::history::{self, ArchivedCounts, ArchivedEvent, ArchivedKey, History};
use crate::id::{TransferId, TripId};
use crate::ledger::Transfer;
use crate::record::Record;
use crate::state::{ARCHIVED_ENTRY_BYTES, AccountRows, Effects, State, apply, gateway_event_kept};
use crate::trip::Trip;

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

/// When and where checkpoints are taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    /// Take a checkpoint once this many records were logged since the last one.
    pub every_records: u64,
    /// WAL segment size (segments below a checkpoint are deleted whole).
    pub segment_bytes: u64,
}

/// The background thread that encodes and commits checkpoints, so the writer only
/// pays for a shallow clone of the state (its entities are shared `Arc`s, its account
/// maps persistent).
struct Checkpointer {
    jobs: Option<Sender<Job>>,
    /// Each checkpoint, or why it failed.
    done: Receiver<std::result::Result<Committed, String>>,
    /// The LSN of the checkpoint sent and not yet confirmed.
    in_flight: Option<Lsn>,
    /// The snapshot directory of a data directory written before checkpoints moved
    /// into the store, if it is still there: removed after the first checkpoint.
    legacy: Option<PathBuf>,
    handle: Option<JoinHandle<()>>,
}

/// A checkpoint the thread committed.
struct Committed {
    lsn: Lsn,
    /// What the history holds after it.
    counts: ArchivedCounts,
    /// Rows it put or deleted (accounts, zones, and what left the hot state).
    rows: u64,
    /// How long the thread took: choosing what leaves, the diff, the encoding, the commit.
    took: Duration,
    /// What it wrote to the history, which the writer may now archive.
    archivable: Archivable,
}

/// One checkpoint to take: the state at an LSN, and the time that decides which
/// idempotency keys and gateway event ids are past the hot window and which rows expired.
struct Job {
    lsn: Lsn,
    state: State,
    now: Timestamp,
}

/// What leaves the hot state with the checkpoint of `state` at `now`: its finished trips
/// and the settled transfers that go with them, the idempotency keys and gateway event ids
/// past the hot window — each bounded, so that one history transaction stays well inside
/// the store's limit however many piled up (after failed checkpoints, say): the rest go
/// with the next checkpoint. Chosen by the checkpoint thread from its copy, which is the
/// writer's state at the checkpoint's LSN, so the writer pays none of it (it took 13 ms
/// with 50,000 trips in the hot state).
fn leaving(state: &State, now: Timestamp) -> (Vec<Arc<Trip>>, Vec<Transfer>, Vec<ArchivedKey>, Vec<ArchivedEvent>) {
    let mut finished = state.finished_trips();
    finished.truncate(ARCHIVE_TRIPS_MAX);
    let trips: std::collections::HashSet<TripId> = finished.iter().map(|t| t.id).collect();
    let mut transfers = state.ledger().archivable(&trips);
    transfers.truncate(ARCHIVE_TRANSFERS_MAX);
    let (keys, events) = archivable_keys(state, now, finished.len() * 4 + transfers.len() * 3);
    (finished, transfers, keys, events)
}

/// What a collected checkpoint lets the writer archive.
#[derive(Debug, Default)]
pub(crate) struct Archivable {
    /// Each with the revision written to the history.
    pub(crate) trips: Vec<(TripId, u32)>,
    pub(crate) transfers: Vec<TransferId>,
    /// `(principal, key, expires_at)` of each key written.
    pub(crate) keys: Vec<(Actor, String, Timestamp)>,
    /// `(gateway, event id, seen_at)` of each event id written.
    pub(crate) gateway_events: Vec<ArchivedEvent>,
}

/// Trips one `Archive` command removes from the hot state, at most (and twice as many
/// transfers, keys or event ids). About 0.3 ms to apply and 1 ms to publish: at 1,000 a
/// command took 3-4 ms of the writer's time per batch through the whole archive (hundreds of
/// batches at 20,000 accepts/s), which alone put the accept p99 near 5 ms.
pub(crate) const ARCHIVE_CHUNK_TRIPS: usize = 250;

impl Archivable {
    /// As `Archive` commands of at most [`ARCHIVE_CHUNK_TRIPS`] trips and twice as many
    /// of each other kind; none when there is nothing to archive. Each stands alone: a
    /// trip or an entry leaves only if it is still the one written, whichever command
    /// carries it.
    pub(crate) fn into_commands(self) -> Vec<Command> {
        fn take<T>(from: &mut std::vec::IntoIter<T>, n: usize) -> Vec<T> {
            from.by_ref().take(n).collect()
        }
        let chunks = self
            .trips
            .len()
            .div_ceil(ARCHIVE_CHUNK_TRIPS)
            .max(self.transfers.len().div_ceil(2 * ARCHIVE_CHUNK_TRIPS))
            .max(self.keys.len().div_ceil(2 * ARCHIVE_CHUNK_TRIPS))
            .max(self.gateway_events.len().div_ceil(2 * ARCHIVE_CHUNK_TRIPS));
        let (mut trips, mut transfers) = (self.trips.into_iter(), self.transfers.into_iter());
        let (mut keys, mut events) = (self.keys.into_iter(), self.gateway_events.into_iter());
        (0..chunks)
            .map(|_| Command::Archive {
                trips: take(&mut trips, ARCHIVE_CHUNK_TRIPS),
                transfer_ids: take(&mut transfers, 2 * ARCHIVE_CHUNK_TRIPS),
                keys: take(&mut keys, 2 * ARCHIVE_CHUNK_TRIPS),
                gateway_events: take(&mut events, 2 * ARCHIVE_CHUNK_TRIPS),
            })
            .collect()
    }
}

impl Checkpointer {
    /// Starts the thread, with the account rows as `history`'s store holds them.
    fn start(history: Arc<History>, mut stored: AccountRows, legacy: Option<PathBuf>) -> Result<Self> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(1);
        let (tx, done) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("dispatch-checkpoint".into())
            .spawn(move || {
                for Job { lsn, state, now } in rx {
                    let started = Instant::now();
                    let (finished, transfers, keys, events) = leaving(&state, now);
                    // One transaction: the state, its changed rows, and what leaves the
                    // hot state — durable before the writer is told it may drop that.
                    let result = checkpoint::prepare(lsn, state, &stored)
                        .and_then(|(prepared, rows)| {
                            let n = prepared.changes.puts.len() + prepared.changes.deletes.len() + finished.len() * 4;
                            let n = n + transfers.len() * 3 + (keys.len() + events.len()) * 2;
                            let counts = history.write(prepared, &finished, &transfers, &keys, &events, now)?;
                            stored = rows;
                            // What the history now holds, which the writer may drop.
                            let archivable = Archivable {
                                trips: finished.iter().map(|t| (t.id, t.revision)).collect(),
                                transfers: transfers.iter().map(|t| t.id).collect(),
                                keys: keys
                                    .iter()
                                    .map(|(principal, k, r)| (*principal, k.clone(), r.expires_at))
                                    .collect(),
                                gateway_events: events,
                            };
                            Ok(Committed { lsn, counts, rows: n as u64, took: started.elapsed(), archivable })
                        })
                        .map_err(|e| e.to_string());
                    if tx.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { jobs: Some(jobs), done, in_flight: None, legacy, handle: Some(handle) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the job channel ends the thread once any checkpoint in progress is written.
        self.jobs.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Counters of checkpointing, and what the hot state and the history hold of
/// idempotency keys and gateway event ids, for operators.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints written.
    pub written: AtomicU64,
    /// Checkpoints that failed (the WAL keeps everything until one succeeds).
    pub failed: AtomicU64,
    /// LSN of the last checkpoint.
    pub last_lsn: AtomicU64,
    /// Rows the last checkpoint put or deleted: the accounts and zones changed since the
    /// one before, and the rows of what left the hot state (estimated: 4 per trip, 3 per
    /// transfer, 2 per key or event id, the purge of expired rows not counted).
    pub last_rows: AtomicU64,
    /// How long the last checkpoint took on its thread (diff, encoding, commit), in µs.
    pub last_micros: AtomicU64,
    /// Why the last failed checkpoint failed (the server logs it).
    pub last_error: parking_lot::Mutex<Option<String>>,
    /// Idempotency keys in the hot state (as of the last commit).
    pub keys_hot: AtomicU64,
    /// Idempotency keys in the history (as of the last checkpoint; expired ones count
    /// until a checkpoint purges them).
    pub keys_archived: AtomicU64,
    /// Gateway event ids in the hot state (as of the last commit).
    pub gateway_events_hot: AtomicU64,
    /// Gateway event ids in the history (as of the last checkpoint).
    pub gateway_events_archived: AtomicU64,
}

/// Finished trips one checkpoint moves to the history, at most (each is a handful of
/// rows; `dispatch_storage::store::CHANGES_MAX` bounds a transaction).
const ARCHIVE_TRIPS_MAX: usize = 50_000;
/// Settled transfers one checkpoint moves to the history, at most (two rows each).
const ARCHIVE_TRANSFERS_MAX: usize = 200_000;

/// Idempotency keys and gateway event ids stay in the hot state this long (most retries
/// come within it, and answer without a read of the history); older ones move to the
/// history with the next checkpoint.
pub const KEYS_HOT_WINDOW_S: u32 = 10 * 60;
/// Keys and event ids one checkpoint moves to the history, at most (two rows each;
/// fewer when trips and transfers leave little room in the transaction): above the
/// records between two checkpoints (each key or event id came with one record), so the
/// archive keeps up with any request rate.
const ARCHIVE_KEYS_MAX: usize = 200_000;
/// Bytes the keys and event ids may take in one `Archive` record (the WAL takes records
/// up to `dispatch_storage::RECORD_BYTES_MAX`, 16 MiB; trips and transfers need under 3).
const ARCHIVE_KEYS_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The idempotency keys and gateway event ids of `state` that the next checkpoint moves
/// to the history at `now`: past the hot window and not expired, within what the
/// transaction has left after `rows_used` rows (half of it: the purge takes the other
/// half) and within [`ARCHIVE_KEYS_MAX`] and [`ARCHIVE_KEYS_BYTES_MAX`], keys first.
fn archivable_keys(state: &State, now: Timestamp, rows_used: usize) -> (Vec<ArchivedKey>, Vec<ArchivedEvent>) {
    let room = dispatch_storage::store::CHANGES_MAX.saturating_sub(rows_used) / 2;
    let max = ARCHIVE_KEYS_MAX.min(room / 2);
    let before = now.plus_millis(-i64::from(KEYS_HOT_WINDOW_S) * 1000);
    let keys = state.archivable_keys(before, now, max, ARCHIVE_KEYS_BYTES_MAX);
    let bytes: usize = keys.iter().map(|(_, k, _)| k.len() + ARCHIVED_ENTRY_BYTES).sum();
    let events = state.archivable_gateway_events(
        before,
        now,
        max.saturating_sub(keys.len()),
        ARCHIVE_KEYS_BYTES_MAX.saturating_sub(bytes),
    );
    (keys, events)
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
        let config = WalConfig { segment_bytes_max: policy.segment_bytes, ..WalConfig::default() };
        let (wal, report) = Wal::open(wal_dir(dir), config)
            .map_err(|e| storage_error(&format!("cannot open the WAL in {}", dir.display()), &e))?;
        if wal.last_lsn() < base_lsn {
            return Err(Error::Storage(format!(
                "the checkpoint is at LSN {base_lsn} but the WAL ends at {}: the WAL is not this checkpoint's; refusing to start",
                wal.last_lsn()
            )));
        }
        let archived = history.archived_counts()?;
        let durable_lsn = wal.durable_lsn();
        let log: Box<dyn CommandLog> = Box::new(wal);
        let journal = Journal {
            durable_lsn,
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
        journal.recovered(Some(WalRecovery::from(&report)))
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
            Command::Restored { command: inner, .. } => self.recall(state, actor, inner, at),
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
        let (mut state, base_lsn) = self.load_base()?;
        let mut fx = Effects::default();
        let mut replayed = 0u64;
        let first = base_lsn + 1;
        let records = self.log.read_from(first).map_err(|e| storage_error("cannot read the log", &e))?;
        for (expected, item) in (first..).zip(records) {
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

    /// Appends the batch and makes it durable. Returns how long the sync took
    /// (`None` when there was nothing to write).
    pub(crate) fn commit(&mut self) -> std::result::Result<Option<Duration>, StorageError> {
        if self.pending.ends.is_empty() {
            return Ok(None);
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
        let appended = self.log.append(&payloads);
        self.pending.clear();
        appended?;
        let started = Instant::now();
        self.durable_lsn = self.log.sync()?;
        Ok(Some(started.elapsed()))
    }

    /// After a failed write: drops the batch, reopens the log from disk and
    /// rebuilds the state from the base and the durable records.
    pub(crate) fn rebuild(&mut self) -> Result<State> {
        self.reset_log()?;
        self.replay().map(|(state, _)| state)
    }

    /// After a failed write: drops the batch not written and reopens the log, which
    /// cuts it back to what is durable (a failed fsync poisons the WAL until then).
    pub(crate) fn reset_log(&mut self) -> Result<()> {
        self.pending.clear();
        self.log.reopen().map_err(|e| storage_error("cannot reopen the log", &e))?;
        self.durable_lsn = self.log.durable_lsn();
        Ok(())
    }

    /// Whether the current batch holds records not yet written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.ends.is_empty()
    }
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

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

/// What a backup or a restore holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// WAL segment files copied.
    pub segments: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Records in the copy after its recovery: the copy is the state after them.
    pub records: u64,
    /// Copies started again because a checkpoint taken meanwhile removed what was
    /// being copied (0 when the first copy held).
    pub retries: u32,
}

/// Takes a consistent copy of the data directory `data_dir` into `to` (which
/// must not exist, or be empty), while an engine may be serving from it.
///
/// The log is append-only with closed segments that never change, so copying its
/// segments in LSN order yields a prefix of it (at worst the last segment ends in a
/// half-written record, which the copy's own recovery cuts). The store is copied after
/// it, as of one commit (a redb read transaction, from this process or another): its
/// checkpoint is one the log copy reaches, and it holds every trip, key and event id
/// the copied log archived (each is committed there before the log records its removal
/// from the hot state). The copy is then opened as an engine (full recovery and
/// invariant checks) before this returns, so a backup that reports success can be
/// restored. If a checkpoint taken meanwhile removed a segment being copied, or
/// committed a state the log copy does not reach, the copy is retried.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport> {
    copy_verified(data_dir, to, "holds no dispatch log (no wal/ directory)")
}

/// Restores the backup in `from` into the data directory `data_dir` (which must
/// not exist, or be empty), then verifies it by recovering it.
pub fn restore(from: &Path, data_dir: &Path) -> Result<BackupReport> {
    copy_verified(from, data_dir, "is not a dispatch backup (no wal/ directory)")
}

fn copy_verified(from: &Path, to: &Path, not_a_store: &str) -> Result<BackupReport> {
    if !wal_dir(from).is_dir() {
        return Err(Error::Storage(format!("{} {not_a_store}", from.display())));
    }
    prepare_empty(to)?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let copied = copy_store(from, to).and_then(|(segments, bytes)| {
            verify(to).map(|records| BackupReport { segments, bytes, records, retries: attempts - 1 })
        });
        match copied {
            Ok(report) => return Ok(report),
            Err(e) if attempts >= 5 => return Err(e),
            Err(_) => {
                // Only what this function created is in `to`: start again from empty.
                for sub in [wal_dir(to), snapshot_dir(to)] {
                    let _ = fs::remove_dir_all(&sub);
                }
                let _ = fs::remove_file(history::path(to));
                let _ = fs::remove_file(to.join("LOCK"));
                prepare_empty(to)?;
            }
        }
    }
}

/// Copies the log, then the store, of the data directory `from` into `to` (and the
/// newest snapshot first, for a directory an older version wrote that no checkpoint
/// has yet moved into the store).
fn copy_store(from: &Path, to: &Path) -> Result<(usize, u64)> {
    let mut bytes = 0;
    if let Some(snap) =
        snapshot::latest_path(&snapshot_dir(from)).map_err(|e| storage_error("cannot list snapshots", &e))?
    {
        fs::create_dir_all(snapshot_dir(to)).map_err(|e| Error::Storage(format!("{}: {e}", to.display())))?;
        let name = snap.file_name().ok_or_else(|| Error::internal("snapshot without a name"))?;
        let target = snapshot_dir(to).join(name);
        bytes += fs::copy(&snap, &target).map_err(|e| Error::Storage(format!("{}: {e}", snap.display())))?;
        File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::Storage(format!("{}: {e}", target.display())))?;
    }
    let (segments, wal_bytes) = copy_log(&wal_dir(from), &wal_dir(to))?;
    // The store last: it then holds every trip, idempotency key and gateway event id
    // the copied log archived (each is committed there before the log records its
    // removal from the hot state; a row goes from the history only once expired, when
    // neither place answers for it any more). Its checkpoint must be one the copied log
    // reaches, which the copy's recovery checks (a checkpoint committed between the two
    // copies is retried).
    history::backup_file(from, to)?;
    Ok((segments, bytes + wal_bytes))
}

fn prepare_empty(dir: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", dir.display()));
    if dir.exists() && fs::read_dir(dir).map_err(io)?.next().is_some() {
        return Err(Error::Storage(format!("{} exists and is not empty: refusing to overwrite it", dir.display())));
    }
    fs::create_dir_all(dir.join("wal")).map_err(io)?;
    Ok(())
}

/// Copies every file of the log directory `from`, in name (= LSN) order, into `to`
/// and makes the copies durable.
fn copy_log(from: &Path, to: &Path) -> Result<(usize, u64)> {
    let io = |what: &Path, e: std::io::Error| Error::Storage(format!("{}: {e}", what.display()));
    let mut names: Vec<PathBuf> = fs::read_dir(from)
        .map_err(|e| io(from, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut bytes = 0;
    for path in &names {
        let Some(name) = path.file_name() else { continue };
        let target = to.join(name);
        bytes += fs::copy(path, &target).map_err(|e| io(path, e))?;
        File::open(&target).and_then(|f| f.sync_all()).map_err(|e| io(&target, e))?;
    }
    File::open(to).and_then(|d| d.sync_all()).map_err(|e| io(to, e))?;
    Ok((names.len(), bytes))
}

/// Recovers the data directory `dir` as an engine would, and returns its records.
fn verify(dir: &Path) -> Result<u64> {
    let policy = CheckpointPolicy { every_records: u64::MAX, segment_bytes: WalConfig::default().segment_bytes_max };
    let (journal, _state, recovery) = Journal::open_dir(dir, State::default(), policy, None)?;
    drop(journal);
    Ok(recovery.last_lsn)
}

#[cfg(test)]
mod tests {
    use super::{ARCHIVE_CHUNK_TRIPS, Archivable};
    use crate::clock::Timestamp;
    use crate::command::{Actor, Command};
    use crate::id::{TransferId, TripId};

    /// A checkpoint's archive is cut into commands that each stay within the bound and
    /// together carry every item once, in order.
    #[test]
    fn an_archive_is_cut_into_bounded_commands_that_carry_everything_once() {
        assert!(Archivable::default().into_commands().is_empty());
        let n = ARCHIVE_CHUNK_TRIPS as u64;
        let trips: Vec<(TripId, u32)> = (1..=n * 5 / 2).map(|i| (TripId::from_raw(i).unwrap(), 3)).collect();
        let transfers: Vec<TransferId> = (1..=7 * n).map(|i| TransferId::from_raw(i).unwrap()).collect();
        let keys = vec![(Actor::Admin, "k".to_string(), Timestamp::from_millis(1)); 10];
        let all = Archivable { trips: trips.clone(), transfers: transfers.clone(), keys, gateway_events: Vec::new() };
        let commands = all.into_commands();
        assert_eq!(commands.len(), 4, "7 chunks' worth of transfers, two chunks' worth per command");
        let (mut got_trips, mut got_transfers, mut got_keys) = (Vec::new(), Vec::new(), 0);
        for c in commands {
            let Command::Archive { trips, transfer_ids, keys, gateway_events } = c else { panic!("{c:?}") };
            assert!(trips.len() <= ARCHIVE_CHUNK_TRIPS && transfer_ids.len() <= 2 * ARCHIVE_CHUNK_TRIPS);
            assert!(gateway_events.is_empty());
            got_trips.extend(trips);
            got_transfers.extend(transfer_ids);
            got_keys += keys.len();
        }
        assert_eq!((got_trips, got_transfers, got_keys), (trips, transfers, 10));
    }
}
