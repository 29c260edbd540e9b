//! Checkpoints in the background: the thread that encodes and commits them, and what
//! each one lets leave the hot state.
//!
//! Owns the [`Checkpointer`] (its thread, the job it is given and what it committed),
//! the choice of what leaves the hot state with a checkpoint (finished trips, settled
//! transfers, idempotency keys and gateway event ids past [`KEYS_HOT_WINDOW_S`]), and
//! [`CheckpointStats`].
//!
//! Guarantees: the writer pays only for a copy of the state (its entities are shared
//! `Arc`s, its account maps persistent); what a checkpoint moves to the history is
//! bounded (one history transaction, one `Archive` record) and is durable there before
//! the writer logs its removal from the hot state ([`Archivable`] is built only after the
//! history write succeeded).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dispatch_storage::Lsn;

use crate::checkpoint::{self};
use crate::clock::Timestamp;
use crate::command::{Actor, Command};
use crate::error::{Error, Result};
use crate::history::{ArchivedCounts, ArchivedEvent, ArchivedKey, History, Leaving};
use crate::id::{AlertId, TransferId, TripId};
use crate::state::{ARCHIVED_ENTRY_BYTES, AccountRows, State};

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
pub(super) struct Checkpointer {
    pub(super) jobs: Option<Sender<Job>>,
    /// Each checkpoint, or why it failed.
    pub(super) done: Receiver<std::result::Result<Committed, String>>,
    /// The LSN of the checkpoint sent and not yet confirmed.
    pub(super) in_flight: Option<Lsn>,
    /// The snapshot directory of a data directory written before checkpoints moved
    /// into the store, if it is still there: removed after the first checkpoint.
    pub(super) legacy: Option<PathBuf>,
    pub(super) handle: Option<JoinHandle<()>>,
}

/// A checkpoint the thread committed.
pub(super) struct Committed {
    pub(super) lsn: Lsn,
    /// What the history holds after it.
    pub(super) counts: ArchivedCounts,
    /// Rows it put or deleted (accounts, zones, and what left the hot state).
    pub(super) rows: u64,
    /// How long the thread took: choosing what leaves, the diff, the encoding, the commit.
    pub(super) took: Duration,
    /// What it wrote to the history, which the writer may now archive.
    pub(super) archivable: Archivable,
}

/// One checkpoint to take: the state at an LSN, and the time that decides which
/// idempotency keys and gateway event ids are past the hot window and which rows expired.
pub(super) struct Job {
    pub(super) lsn: Lsn,
    pub(super) state: State,
    pub(super) now: Timestamp,
}

/// What leaves the hot state with the checkpoint of `state` at `now`: its finished trips
/// and the settled transfers that go with them, the idempotency keys and gateway event ids
/// past the hot window — each bounded, so that one history transaction stays well inside
/// the store's limit however many piled up (after failed checkpoints, say): the rest go
/// with the next checkpoint. Chosen by the checkpoint thread from its copy, which is the
/// writer's state at the checkpoint's LSN, so the writer pays none of it (it took 13 ms
/// with 50,000 trips in the hot state).
fn leaving(state: &State, now: Timestamp) -> Leaving {
    let mut finished = state.finished_trips();
    finished.truncate(ARCHIVE_TRIPS_MAX);
    let trips: std::collections::HashSet<TripId> = finished.iter().map(|t| t.id).collect();
    let mut transfers = state.ledger().archivable(&trips);
    transfers.truncate(ARCHIVE_TRANSFERS_MAX);
    let mut alerts = state.acknowledged_alerts();
    alerts.truncate(ARCHIVE_ALERTS_MAX);
    let audit: Vec<_> = state.audit_entries().take(ARCHIVE_AUDIT_MAX).cloned().collect();
    let rows =
        finished.len() * crate::history::ROWS_PER_TRIP_MAX + transfers.len() * 3 + alerts.len() * 2 + audit.len() * 4;
    let (keys, events) = archivable_keys(state, now, rows);
    Leaving { trips: finished, transfers, keys, events, alerts, audit }
}

/// Acknowledged alerts one checkpoint moves to the history, at most (two rows each).
const ARCHIVE_ALERTS_MAX: usize = 50_000;

/// Audit entries one checkpoint moves to the history, at most (four rows each; every
/// entry goes with the first checkpoint after it was made: they never change).
const ARCHIVE_AUDIT_MAX: usize = 50_000;

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
    /// Each acknowledged alert written.
    pub(crate) alerts: Vec<AlertId>,
    /// Each audit entry written, by number.
    pub(crate) audit: Vec<u64>,
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
            .max(self.gateway_events.len().div_ceil(2 * ARCHIVE_CHUNK_TRIPS))
            .max(self.alerts.len().div_ceil(2 * ARCHIVE_CHUNK_TRIPS))
            .max(self.audit.len().div_ceil(2 * ARCHIVE_CHUNK_TRIPS));
        let (mut trips, mut transfers) = (self.trips.into_iter(), self.transfers.into_iter());
        let (mut keys, mut events) = (self.keys.into_iter(), self.gateway_events.into_iter());
        let mut alerts = self.alerts.into_iter();
        let mut audit = self.audit.into_iter();
        (0..chunks)
            .map(|_| Command::Archive {
                trips: take(&mut trips, ARCHIVE_CHUNK_TRIPS),
                transfer_ids: take(&mut transfers, 2 * ARCHIVE_CHUNK_TRIPS),
                keys: take(&mut keys, 2 * ARCHIVE_CHUNK_TRIPS),
                gateway_events: take(&mut events, 2 * ARCHIVE_CHUNK_TRIPS),
                alerts: take(&mut alerts, 2 * ARCHIVE_CHUNK_TRIPS),
                audit: take(&mut audit, 2 * ARCHIVE_CHUNK_TRIPS),
            })
            .collect()
    }
}

impl Checkpointer {
    /// Starts the thread, with the account rows as `history`'s store holds them.
    pub(super) fn start(history: Arc<History>, mut stored: AccountRows, legacy: Option<PathBuf>) -> Result<Self> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(1);
        let (tx, done) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("dispatch-checkpoint".into())
            .spawn(move || {
                // The last checkpoint's time and chat retention, while archived chat is due.
                let mut chat_due: Option<(Timestamp, u32)> = None;
                loop {
                    let Job { lsn, state, now } = match rx.recv_timeout(CHAT_PRUNE_IDLE) {
                        Ok(job) => job,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            chat_due = prune_chat(&history, chat_due, &rx);
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    };
                    let retention_s = state.rules().chat_retention_s;
                    let started = Instant::now();
                    let leaving = leaving(&state, now);
                    // One transaction: the state, its changed rows, and what leaves the
                    // hot state — durable before the writer is told it may drop that.
                    let result = checkpoint::prepare(lsn, state, &stored)
                        .and_then(|(prepared, rows)| {
                            let l = &leaving;
                            let n = prepared.changes.puts.len() + prepared.changes.deletes.len() + l.trips.len() * 4;
                            let n = n + l.transfers.len() * 3 + (l.keys.len() + l.events.len() + l.alerts.len()) * 2;
                            let n = n + l.audit.len() * 4;
                            let counts = history.write(prepared, l, now)?;
                            stored = rows;
                            // What the history now holds, which the writer may drop.
                            let Leaving { trips, transfers, keys, events, alerts, audit } = leaving;
                            let archivable = Archivable {
                                trips: trips.iter().map(|t| (t.id, t.revision)).collect(),
                                transfers: transfers.iter().map(|t| t.id).collect(),
                                keys: keys
                                    .iter()
                                    .map(|(principal, k, r)| (*principal, k.clone(), r.expires_at))
                                    .collect(),
                                gateway_events: events,
                                alerts: alerts.iter().map(|a| a.id).collect(),
                                audit: audit.iter().map(|e| e.seq).collect(),
                            };
                            Ok(Committed { lsn, counts, rows: n as u64, took: started.elapsed(), archivable })
                        })
                        .map_err(|e| e.to_string());
                    if tx.send(result).is_err() {
                        break;
                    }
                    chat_due = prune_chat(&history, Some((now, retention_s)), &rx);
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { jobs: Some(jobs), done, in_flight: None, legacy, handle: Some(handle) })
    }
}

// ----- issue 20: P -----
/// How often an idle checkpoint thread goes on with chat retention that is still due.
const CHAT_PRUNE_IDLE: Duration = Duration::from_secs(1);
/// Chat retention batches one round takes (each its own transaction of at most
/// [`crate::history::CHAT_PRUNE_BATCH_MAX`] trips) before the thread looks for a
/// checkpoint to take again.
const CHAT_PRUNE_ROUND_BATCHES: usize = 16;

/// Chat retention between checkpoints (`history/chat.rs`): rewrites archived trips whose
/// messages expired as of `due`'s time, in bounded batches, while no checkpoint waits.
/// Returns what is still due (`None` once nothing is, until the next checkpoint).
/// Best effort: a failed batch is tried again in the next round.
fn prune_chat(history: &History, due: Option<(Timestamp, u32)>, jobs: &Receiver<Job>) -> Option<(Timestamp, u32)> {
    let (now, retention_s) = due?;
    for _ in 0..CHAT_PRUNE_ROUND_BATCHES {
        if !jobs.is_empty() {
            break;
        }
        match history.prune_chat(now, retention_s, crate::history::CHAT_PRUNE_BATCH_MAX) {
            Ok(done) if done.trips < crate::history::CHAT_PRUNE_BATCH_MAX as u64 => return None,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    due
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint's archive is cut into commands that each stay within the bound and
    /// together carry every item once, in order.
    #[test]
    fn an_archive_is_cut_into_bounded_commands_that_carry_everything_once() {
        assert!(Archivable::default().into_commands().is_empty());
        let n = ARCHIVE_CHUNK_TRIPS as u64;
        let trips: Vec<(TripId, u32)> = (1..=n * 5 / 2).map(|i| (TripId::from_raw(i).unwrap(), 3)).collect();
        let transfers: Vec<TransferId> = (1..=7 * n).map(|i| TransferId::from_raw(i).unwrap()).collect();
        let keys = vec![(Actor::Admin, "k".to_string(), Timestamp::from_millis(1)); 10];
        let all = Archivable {
            trips: trips.clone(),
            transfers: transfers.clone(),
            keys,
            gateway_events: Vec::new(),
            alerts: Vec::new(),
            audit: Vec::new(),
        };
        let commands = all.into_commands();
        assert_eq!(commands.len(), 4, "7 chunks' worth of transfers, two chunks' worth per command");
        let (mut got_trips, mut got_transfers, mut got_keys) = (Vec::new(), Vec::new(), 0);
        for c in commands {
            let Command::Archive { trips, transfer_ids, keys, gateway_events, .. } = c else { panic!("{c:?}") };
            assert!(trips.len() <= ARCHIVE_CHUNK_TRIPS && transfer_ids.len() <= 2 * ARCHIVE_CHUNK_TRIPS);
            assert!(gateway_events.is_empty());
            got_trips.extend(trips);
            got_transfers.extend(transfer_ids);
            got_keys += keys.len();
        }
        assert_eq!((got_trips, got_transfers, got_keys), (trips, transfers, 10));
    }
}
