//! Backups and restores of a data directory: [`backup`] and [`restore`].
//!
//! Guarantees: a backup is a consistent copy — the log first, then the store — whose
//! checkpoint the copied log reaches (a checkpoint that pruned the log under the copy
//! makes it start again, counted in [`BackupReport::retries`]); a restore goes only into
//! an empty directory and is verified by opening it. The documents the state names by
//! hash ([`super::DOCUMENTS_DIR`]) are copied after the log, so a copy holds every
//! document its log names.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use dispatch_storage::{WalConfig, snapshot};

use super::{CheckpointPolicy, Journal, snapshot_dir, storage_error, wal_dir};
use crate::error::{Error, Result};
use crate::history;
use crate::state::State;

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
    backup_pausing(data_dir, to, &mut || {})
}

/// [`backup`], calling `between` after each copy of the log and before the copy of the
/// store: the window in which a checkpoint makes the copy start again. For tests, which
/// must make that race happen rather than wait for it.
#[doc(hidden)]
pub fn backup_pausing(data_dir: &Path, to: &Path, between: &mut dyn FnMut()) -> Result<BackupReport> {
    copy_verified(data_dir, to, "holds no dispatch log (no wal/ directory)", between)
}

/// Restores the backup in `from` into the data directory `data_dir` (which must
/// not exist, or be empty), then verifies it by recovering it.
pub fn restore(from: &Path, data_dir: &Path) -> Result<BackupReport> {
    copy_verified(from, data_dir, "is not a dispatch backup (no wal/ directory)", &mut || {})
}

fn copy_verified(from: &Path, to: &Path, not_a_store: &str, between: &mut dyn FnMut()) -> Result<BackupReport> {
    if !wal_dir(from).is_dir() {
        return Err(Error::Storage(format!("{} {not_a_store}", from.display())));
    }
    prepare_empty(to)?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let copied = copy_store(from, to, between).and_then(|(segments, bytes)| {
            verify(to).map(|records| BackupReport { segments, bytes, records, retries: attempts - 1 })
        });
        match copied {
            Ok(report) => return Ok(report),
            Err(e) if attempts >= 5 => return Err(e),
            Err(_) => {
                // Only what this function created is in `to`: start again from empty.
                for sub in [wal_dir(to), snapshot_dir(to), to.join(super::DOCUMENTS_DIR)] {
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
fn copy_store(from: &Path, to: &Path, between: &mut dyn FnMut()) -> Result<(usize, u64)> {
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
    // The documents after the log: a document's file is durable before the command
    // naming its hash is logged, so every hash the copied log names is copied.
    bytes += copy_documents(&from.join(super::DOCUMENTS_DIR), &to.join(super::DOCUMENTS_DIR))?;
    between();
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

/// Copies the documents of `from` (files named by their SHA-256 in hex; temporary files
/// of uploads in progress are skipped) into `to`, durably; none when `from` does not exist.
fn copy_documents(from: &Path, to: &Path) -> Result<u64> {
    let io = |what: &Path, e: std::io::Error| Error::Storage(format!("{}: {e}", what.display()));
    if !from.is_dir() {
        return Ok(0);
    }
    fs::create_dir_all(to).map_err(|e| io(to, e))?;
    let mut bytes = 0;
    for entry in fs::read_dir(from).map_err(|e| io(from, e))? {
        let path = entry.map_err(|e| io(from, e))?.path();
        let named_by_hash = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
        if !named_by_hash || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name() else { continue };
        let target = to.join(name);
        bytes += fs::copy(&path, &target).map_err(|e| io(&path, e))?;
        File::open(&target).and_then(|f| f.sync_all()).map_err(|e| io(&target, e))?;
    }
    File::open(to).and_then(|d| d.sync_all()).map_err(|e| io(to, e))?;
    Ok(bytes)
}

/// Recovers the data directory `dir` as an engine would, and returns its records.
fn verify(dir: &Path) -> Result<u64> {
    let policy = CheckpointPolicy { every_records: u64::MAX, segment_bytes: WalConfig::default().segment_bytes_max };
    let (journal, _state, recovery) = Journal::open_dir(dir, State::default(), policy, None, None)?;
    drop(journal);
    Ok(recovery.last_lsn)
}
