//! The engine's journal: how applied commands become durable, and how the state
//! comes back after a crash or a failed write.
//!
//! Owns the command log (the WAL in a data directory, or [`MemLog`] in memory),
//! the directory lock, and the *base* a state can be rebuilt from (the initial
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
//!   the lock.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dispatch_storage::{CommandLog, Lsn, RecoveryReport, StorageError, Wal, WalConfig};

use crate::engine::Record;
use crate::error::{Error, Result};
use crate::state::{Effects, State, apply};

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

pub(crate) struct Journal {
    log: Box<dyn CommandLog>,
    /// Encoded records of the batch being built.
    pending: Vec<Vec<u8>>,
    /// The state at `base_lsn`: where a rebuild starts.
    base: State,
    base_lsn: Lsn,
    /// Held for the life of the journal: the data directory's lock.
    _lock: Option<File>,
}

pub(crate) fn storage_error(context: &str, e: &StorageError) -> Error {
    Error::Storage(format!("{context}: {e}"))
}

impl Journal {
    /// A journal over any command log (a replicated stream, or a fault-injecting log
    /// in tests), starting from `base` at LSN 0 and replaying what the log holds.
    pub(crate) fn with_log(log: Box<dyn CommandLog>, base: State) -> Result<(Self, State, Recovery)> {
        let journal = Journal { log, pending: Vec::new(), base, base_lsn: 0, _lock: None };
        journal.recovered(None)
    }

    /// Opens (creating) the data directory `dir`, locks it, recovers the log, and
    /// returns the journal with the recovered state.
    pub(crate) fn open_dir(dir: &Path, base: State) -> Result<(Self, State, Recovery)> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot create data dir {}: {e}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let (wal, report) = Wal::open(wal_dir(dir), WalConfig::default())
            .map_err(|e| storage_error(&format!("cannot open the WAL in {}", dir.display()), &e))?;
        let journal = Journal { log: Box::new(wal), pending: Vec::new(), base, base_lsn: 0, _lock: Some(lock) };
        journal.recovered(Some(WalRecovery::from(&report)))
    }

    fn recovered(self, wal: Option<WalRecovery>) -> Result<(Self, State, Recovery)> {
        let (state, replayed) = self.replay()?;
        let recovery = Recovery { base_lsn: self.base_lsn, replayed, last_lsn: self.log.last_lsn(), wal };
        Ok((self, state, recovery))
    }

    /// Base + every durable record above it. Refuses a log that skips records or
    /// holds one that does not decode or apply.
    fn replay(&self) -> Result<(State, u64)> {
        let mut state = self.base.clone();
        let mut fx = Effects::default();
        let mut replayed = 0u64;
        let first = self.base_lsn + 1;
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

    /// Adds an applied command to the current batch.
    pub(crate) fn push(&mut self, record: &Record) -> Result<()> {
        self.pending.push(record.encode()?);
        Ok(())
    }

    /// Appends the batch and makes it durable. Returns how long the sync took
    /// (`None` when there was nothing to write).
    pub(crate) fn commit(&mut self) -> std::result::Result<Option<Duration>, StorageError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let payloads: Vec<&[u8]> = self.pending.iter().map(Vec::as_slice).collect();
        let appended = self.log.append(&payloads);
        self.pending.clear();
        appended?;
        let started = Instant::now();
        self.log.sync()?;
        Ok(Some(started.elapsed()))
    }

    /// After a failed write: drops the batch, reopens the log from disk and
    /// rebuilds the state from the base and the durable records.
    pub(crate) fn rebuild(&mut self) -> Result<State> {
        self.pending.clear();
        self.log.reopen().map_err(|e| storage_error("cannot reopen the log", &e))?;
        self.replay().map(|(state, _)| state)
    }

    /// Whether the current batch holds records not yet written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
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
}

/// Takes a consistent copy of the data directory `data_dir` into `to` (which
/// must not exist, or be empty), while an engine may be serving from it.
///
/// The log is append-only and its closed segments never change, so copying the
/// segments in order yields a prefix of the log: at worst the last one ends in a
/// half-written record, which the copy's own recovery cuts. The copy is then
/// opened as an engine (full recovery and invariant checks) before this returns,
/// so a backup that reports success can be restored.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport> {
    let from = wal_dir(data_dir);
    if !from.is_dir() {
        return Err(Error::Storage(format!("{} holds no dispatch log (no wal/ directory)", data_dir.display())));
    }
    let (segments, bytes) = copy_log(&from, &wal_dir(prepare_empty(to)?))?;
    let records = verify(to)?;
    Ok(BackupReport { segments, bytes, records })
}

/// Restores the backup in `from` into the data directory `data_dir` (which must
/// not exist, or be empty), then verifies it by recovering it.
pub fn restore(from: &Path, data_dir: &Path) -> Result<BackupReport> {
    let source = wal_dir(from);
    if !source.is_dir() {
        return Err(Error::Storage(format!("{} is not a dispatch backup (no wal/ directory)", from.display())));
    }
    let (segments, bytes) = copy_log(&source, &wal_dir(prepare_empty(data_dir)?))?;
    let records = verify(data_dir)?;
    Ok(BackupReport { segments, bytes, records })
}

fn prepare_empty(dir: &Path) -> Result<&Path> {
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", dir.display()));
    if dir.exists() && fs::read_dir(dir).map_err(io)?.next().is_some() {
        return Err(Error::Storage(format!("{} exists and is not empty: refusing to overwrite it", dir.display())));
    }
    fs::create_dir_all(dir.join("wal")).map_err(io)?;
    Ok(dir)
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
    let (journal, _state, recovery) = Journal::open_dir(dir, State::default())?;
    drop(journal);
    Ok(recovery.last_lsn)
}
