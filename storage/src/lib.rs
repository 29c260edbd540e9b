//! # dispatch-storage
//!
//! Durability for dispatch: the command log the engine's writer appends to, and its
//! crash recovery. It stores opaque byte payloads and knows nothing of trips (the
//! engine encodes each command as a schema-version byte followed by postcard bytes).
//!
//! ## Layout
//! - [`log`]: the [`CommandLog`] trait, the seam through which the writer reaches its
//!   log (a replicated stream can replace the WAL later), [`Lsn`] numbering and the
//!   bounds every log enforces.
//! - [`mem_log`]: [`MemLog`], the log in memory, for tests and data-dir-less runs.
//! - [`store`]: [`store::Store`], the redb file of checkpoints and history rows
//!   (named tables of byte keys and values, a checkpoint's state and rows committed and
//!   read back together, prefix scans with cursors, online backup); what recovery
//!   starts from before replaying the WAL above it.
//! - [`snapshot`]: the checkpoint files older versions wrote (one immutable checksummed
//!   file per LSN), read to open their data directories.
//! - [`wal`]: [`Wal`], segment files of checksummed frames with group commit,
//!   rotation, release and recovery. The on-disk format and the crash guarantees are
//!   in `storage/WAL.md`.
//! - [`error`]: [`StorageError`], the log's error type, which tells a full disk and a
//!   poisoned log apart; the store has its own, [`store::StoreError`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod log;
pub mod mem_log;
pub mod shared_mem_log;
pub mod snapshot;
pub mod store;
pub mod wal;

pub use error::StorageError;
pub use log::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, CommandLog, RECORD_BYTES_MAX, Record, Records, check_batch};

/// Log sequence number: the position of a record. The first record is 1; 0 means
/// "no record" (an empty log). Dense: the records of a log are `first..=last`.
/// (At the crate root: the log and the errors both speak of it.)
pub type Lsn = u64;
pub use mem_log::MemLog;
pub use shared_mem_log::SharedMemLog;
pub use wal::{Damage, DamageKind, RecoveryPolicy, RecoveryReport, Wal, WalConfig};
