//! The error type of the command log (the WAL and the in-memory log).
//!
//! Owns [`StorageError`] and the rule for recognising a full disk. Guarantees:
//! every I/O failure names the operation and the path it failed on; a full disk
//! (ENOSPC, EDQUOT) is recognisable through [`StorageError::is_disk_full`] both when
//! it happens and, afterwards, through the poisoned state it may cause, so the engine
//! can go read-only and come back by itself when space returns.

use std::io;
use std::path::PathBuf;

use crate::Lsn;

/// Everything that can go wrong in dispatch-storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"write"`, `"fdatasync"`, `"create segment"`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// Data on disk fails its checks where a crash cannot explain it, so discarding it
    /// could lose acknowledged records. Nothing was changed on disk.
    #[error("corrupt log {} at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where in the file the damage starts.
        offset: u64,
        /// What is wrong and why it was not repaired.
        reason: String,
    },

    /// A file named like a segment is not one of ours (wrong magic): refused, never
    /// truncated, because it may be another program's data.
    #[error("{} is not a dispatch WAL segment: {reason}", path.display())]
    ForeignFile {
        /// The file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// A segment was written in a format version this build does not understand
    /// (written by a newer dispatch): refused, never truncated.
    #[error(
        "{} uses WAL format version {version}; this build reads version {supported} only",
        path.display()
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        version: u32,
        /// The version this build writes and reads.
        supported: u32,
    },

    /// An fsync failed earlier. The page cache can no longer be trusted to match the
    /// disk (fsyncgate), so every call fails until the log is reopened, which re-runs
    /// recovery from what is really on disk.
    #[error("log poisoned: reopen required (after: {cause})")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: String,
        /// Whether that failure was a full disk.
        disk_full: bool,
    },

    /// One payload is larger than [`RECORD_BYTES_MAX`](crate::RECORD_BYTES_MAX).
    #[error("record of {bytes} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Size of the payload.
        bytes: usize,
        /// The limit.
        max: usize,
    },

    /// A batch is empty or larger than [`BATCH_RECORDS_MAX`](crate::BATCH_RECORDS_MAX)
    /// records or [`BATCH_BYTES_MAX`](crate::BATCH_BYTES_MAX) bytes.
    #[error("batch of {records} records and {bytes} payload bytes rejected: {reason}")]
    InvalidBatch {
        /// Records in the batch.
        records: usize,
        /// Payload bytes in the batch.
        bytes: usize,
        /// Which limit it broke.
        reason: &'static str,
    },

    /// Records below `first_available` were released (checkpointed and deleted), so a
    /// read from `from` cannot be served.
    #[error("records from lsn {from} were released; the log starts at lsn {first_available}")]
    Released {
        /// The LSN asked for.
        from: Lsn,
        /// The lowest LSN still stored.
        first_available: Lsn,
    },

    /// An LSN argument makes no sense for this log.
    #[error("invalid lsn {lsn}: {reason}")]
    InvalidLsn {
        /// The LSN given.
        lsn: Lsn,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A log several nodes share (a replicated stream) refused this node's append or
    /// claim because another writer appended first: this node is no longer (or not yet)
    /// the only writer. Nothing of the refused batch is in the log. The writer drops the
    /// batch, follows the log to its end, and writes again only after a new
    /// [`CommandLog::claim`](crate::CommandLog::claim) succeeds.
    #[error("fenced: another writer appended to the shared log ({reason})")]
    Fenced {
        /// What the log said.
        reason: String,
    },

    /// A log several nodes share cannot be reached (its servers are down or partitioned
    /// away): nothing is known to be written. Retried by the caller.
    #[error("the shared log is unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },

    /// A configuration value is out of its documented range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which value and its range.
        reason: String,
    },
}

impl StorageError {
    /// True when the failure, or the failure that poisoned the log, is a full disk
    /// or an exhausted quota. The engine answers `503 read_only` and retries later.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => io_error_is_disk_full(source),
            StorageError::Poisoned { disk_full, .. } => *disk_full,
            _ => false,
        }
    }

    /// True when a shared log refused the append because another writer appended first.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StorageError::Fenced { .. })
    }

    /// True when the log refuses every call until it is reopened.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, StorageError::Poisoned { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io { op, path: path.into(), source }
    }
}

/// The standard library decodes ENOSPC to `StorageFull` and EDQUOT to
/// `QuotaExceeded` on every Unix, so the kind is the portable test; the raw codes are
/// checked too for errors built by hand from an errno.
pub(crate) fn io_error_is_disk_full(error: &io::Error) -> bool {
    // Linux errno values; other Unixes are covered by the kind.
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || (cfg!(target_os = "linux") && matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_full_and_quota_are_disk_full() {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
            let error = StorageError::io("write", "/x", io::Error::from(kind));
            assert!(error.is_disk_full(), "{kind:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn enospc_and_edquot_from_errno_are_disk_full() {
        for errno in [28, 122] {
            let error = StorageError::io("write", "/x", io::Error::from_raw_os_error(errno));
            assert!(error.is_disk_full(), "errno {errno}");
        }
    }

    #[test]
    fn other_errors_are_not_disk_full() {
        let error = StorageError::io("write", "/x", io::Error::other("boom"));
        assert!(!error.is_disk_full());
        let eio = StorageError::io("fdatasync", "/x", io::Error::from(io::ErrorKind::Other));
        assert!(!eio.is_disk_full());
    }

    #[test]
    fn poisoned_remembers_whether_the_disk_was_full() {
        let full = StorageError::Poisoned { cause: "fdatasync: no space".into(), disk_full: true };
        assert!(full.is_disk_full());
        assert!(full.is_poisoned());
        assert!(full.to_string().contains("reopen required"));
        let eio = StorageError::Poisoned { cause: "fdatasync: EIO".into(), disk_full: false };
        assert!(!eio.is_disk_full());
    }
}
