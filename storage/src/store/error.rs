//! The error type of the checkpoint and history store.
//!
//! Owns [`StoreError`] and the translation of redb's errors into it. Guarantees: every
//! failure names the file it happened on; a file that is not a dispatch store, one in
//! a format this build does not read, and one that redb finds corrupt are told apart
//! (so the engine can refuse to start with a message an operator can act on); a full
//! disk is recognisable through [`StoreError::is_disk_full`]; a caller's bug (an older
//! LSN, an oversized row, a cursor from another query) is its own variant, never
//! confused with damage on disk.
//!
//! The store has its own type, beside the log's [`crate::StorageError`], because its
//! failures are redb's and its callers (checkpoints, the history, backups) act on other
//! distinctions than the log's writer does (redb's habit: an error type per operation
//! that composes).

use std::io;
use std::path::{Path, PathBuf};

use crate::error::io_error_is_disk_full;

/// Everything that can go wrong in [`crate::store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system call on a file or directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"fsync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The file is not a dispatch store: not a redb file at all, or another program's
    /// redb file. Refused and left as it is.
    #[error("{} is not a dispatch store: {reason}", path.display())]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// A dispatch store in a format this build does not read (written by a newer
    /// dispatch). Refused and left as it is.
    #[error("{} is dispatch store format {found}; this build reads format {supported} only", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The format recorded in the file.
        found: u32,
        /// The format this build reads and writes.
        supported: u32,
    },

    /// The file fails redb's checks or ours. Serving from it could return wrong data,
    /// so it is refused; restore the last backup and replay the log.
    #[error("{} is corrupt ({reason}); refusing to serve from it: restore the last backup", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Another process (or another handle in this one) has the store open for writing,
    /// or holds it in a way that excludes this open.
    #[error("{} is already open elsewhere: {reason}", path.display())]
    Locked {
        /// The file.
        path: PathBuf,
        /// redb's account of the conflict.
        reason: String,
    },

    /// A read-only open found a store that was not closed cleanly and that no writer
    /// holds. Opening it for writing ([`Store::open`](super::Store::open)) repairs it.
    #[error("{} was not closed cleanly and needs a writable open to recover", path.display())]
    NeedsRecovery {
        /// The file.
        path: PathBuf,
    },

    /// A checkpoint whose LSN is not above the stored one: the caller is replaying or
    /// reordering, which is a bug. Nothing was written.
    #[error("checkpoint at lsn {lsn} refused: the store already holds a checkpoint at lsn {current}")]
    StaleLsn {
        /// The LSN offered.
        lsn: u64,
        /// The LSN of the stored checkpoint.
        current: u64,
    },

    /// A key, value, state or batch above its bound (see the constants in
    /// [`crate::store`]). Nothing was written.
    #[error("{what} of {size} exceeds the maximum of {max}")]
    TooLarge {
        /// What was too large (`"key"`, `"value"`, `"state"`, `"changes in one checkpoint"`).
        what: &'static str,
        /// Its size (bytes, or a count for the number of changes).
        size: usize,
        /// The bound.
        max: usize,
    },

    /// A table name that is not `[a-z0-9_]{1,64}` or is reserved.
    #[error("invalid table name {name:?}: {reason}")]
    InvalidTableName {
        /// The name given (or found in a file).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A scan the store will not run: a limit out of range, or a cursor that does not
    /// belong to the scan's prefix (a cursor is caller input and may only move within it).
    #[error("invalid scan: {reason}")]
    InvalidScan {
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A key range whose start is after its end.
    #[error("invalid range on table {table}: start is after end")]
    InvalidRange {
        /// The table the range was for.
        table: &'static str,
    },

    /// Any other failure reported by redb (an I/O error inside a transaction, a
    /// previous I/O error that requires reopening, ...).
    #[error("{op} {}: {source}", path.display())]
    Database {
        /// What was being done.
        op: &'static str,
        /// The store file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: Box<redb::Error>,
    },
}

impl StoreError {
    /// True when the failure is a full disk or an exhausted quota, so the engine can go
    /// read-only and retry later instead of treating it as damage.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => io_error_is_disk_full(source),
            StoreError::Database { source, .. } => matches!(&**source, redb::Error::Io(e) if io_error_is_disk_full(e)),
            _ => false,
        }
    }

    /// True when the file itself is the problem (foreign, unsupported or corrupt), as
    /// opposed to a caller's bug or a passing I/O failure.
    pub fn is_bad_file(&self) -> bool {
        matches!(self, StoreError::NotAStore { .. } | StoreError::UnsupportedFormat { .. } | StoreError::Corrupt { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io { op, path: path.into(), source }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        StoreError::Corrupt { path: path.to_owned(), reason: reason.into() }
    }

    pub(crate) fn not_a_store(path: &Path, reason: impl Into<String>) -> Self {
        StoreError::NotAStore { path: path.to_owned(), reason: reason.into() }
    }

    /// Translates any redb error met while doing `op` on the store at `path`.
    pub(crate) fn redb(op: &'static str, path: &Path, error: impl Into<redb::Error>) -> Self {
        let path = path.to_owned();
        match error.into() {
            redb::Error::Corrupted(reason) => StoreError::Corrupt { path, reason },
            error @ (redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch) => {
                StoreError::Locked { path, reason: error.to_string() }
            }
            redb::Error::RepairAborted => StoreError::NeedsRecovery { path },
            redb::Error::UpgradeRequired(version) => StoreError::NotAStore {
                path,
                reason: format!("a redb file in file format {version}, older than any dispatch store"),
            },
            // redb says "Not a redb database: magic number mismatch" this way.
            redb::Error::Io(error) if error.kind() == io::ErrorKind::InvalidData => {
                StoreError::NotAStore { path, reason: error.to_string() }
            }
            error @ (redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TableIsNotMultimap(_)) => {
                StoreError::NotAStore { path, reason: format!("it holds a table dispatch did not write ({error})") }
            }
            source => StoreError::Database { op, path, source: Box::new(source) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_errors_are_sorted_into_what_an_operator_can_act_on() {
        let path = Path::new("/data/history.redb");
        let corrupt = StoreError::redb("open", path, redb::Error::Corrupted("bad checksum".into()));
        assert!(matches!(corrupt, StoreError::Corrupt { .. }) && corrupt.is_bad_file());
        let locked = StoreError::redb("open", path, redb::Error::DatabaseAlreadyOpen);
        assert!(matches!(locked, StoreError::Locked { .. }) && !locked.is_bad_file());
        let foreign = io::Error::new(io::ErrorKind::InvalidData, "Not a redb database: magic number mismatch");
        let foreign = StoreError::redb("open", path, redb::Error::Io(foreign));
        assert!(matches!(foreign, StoreError::NotAStore { .. }), "{foreign}");
        assert!(matches!(StoreError::redb("open", path, redb::Error::RepairAborted), StoreError::NeedsRecovery { .. }));
    }

    #[test]
    fn a_full_disk_inside_redb_is_recognised() {
        let path = Path::new("/data/history.redb");
        let full = StoreError::redb("commit", path, redb::Error::Io(io::Error::from(io::ErrorKind::StorageFull)));
        assert!(full.is_disk_full(), "{full}");
        let eio = StoreError::redb("commit", path, redb::Error::Io(io::Error::other("EIO")));
        assert!(!eio.is_disk_full());
        assert!(StoreError::io("fsync", path, io::Error::from(io::ErrorKind::QuotaExceeded)).is_disk_full());
    }
}
