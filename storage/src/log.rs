//! The seam between the engine's writer thread and its command log.
//!
//! Owns [`CommandLog`], the [`Lsn`] numbering and the size bounds every log enforces.
//! Guarantees, for every implementation: LSNs start at 1 and are dense and increasing;
//! a record is visible to [`CommandLog::read_from`] only once it is durable; a batch is
//! checked against the bounds before anything is written, so a refused batch changes
//! nothing.
//!
//! The trait is deliberately small (append a batch, wait until durable, read from an
//! LSN, release a prefix) so that a replicated stream (NATS JetStream) can replace the
//! local WAL without touching the engine. It is object safe: the engine can hold a
//! `Box<dyn CommandLog>` and pick the WAL or [`MemLog`](crate::MemLog) at start-up.

use std::time::Duration;

pub use crate::Lsn;
use crate::error::StorageError;

/// Largest payload of one record. A command is a few hundred bytes; the largest
/// (a zone polygon) is a few KiB. 16 MiB leaves ample room and keeps a corrupt length
/// field from turning into a huge allocation on read.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most records in one [`CommandLog::append`]. The writer's batch is bounded by its
/// command channel, which is far smaller; this bounds the work of one append.
pub const BATCH_RECORDS_MAX: usize = 65_536;

/// Most payload bytes in one [`CommandLog::append`]. Bounds the WAL's write buffer,
/// which holds one batch's frames (payload plus 16 bytes per record).
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

const _: () = assert!(RECORD_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize); // the frame's `len` is a u32

/// One durable record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position in the log.
    pub lsn: Lsn,
    /// The bytes given to [`CommandLog::append`], unchanged.
    pub payload: Vec<u8>,
}

/// The records returned by [`CommandLog::read_from`], in LSN order.
///
/// A boxed iterator keeps the trait object safe and lets the WAL stream a replay of
/// millions of records from disk in bounded memory. After yielding an `Err` it yields
/// nothing more.
pub type Records<'a> = Box<dyn Iterator<Item = Result<Record, StorageError>> + 'a>;

/// The command log of the engine's single writer thread.
///
/// The writer appends a batch, calls [`sync`](CommandLog::sync) once (group commit),
/// and answers the callers of the records up to the returned LSN. Implementations:
/// [`Wal`](crate::Wal) (segment files on local disk) and [`MemLog`](crate::MemLog).
pub trait CommandLog: Send + 'static {
    /// Appends a batch of opaque payloads after the last record, not yet durable, and
    /// returns the LSN of the first; the batch holds `first..first + len`.
    ///
    /// The batch must hold 1 to [`BATCH_RECORDS_MAX`] records, each at most
    /// [`RECORD_BYTES_MAX`] bytes, [`BATCH_BYTES_MAX`] bytes in all. On any error
    /// nothing of the batch is in the log and a retry appends at the same LSN.
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError>;

    /// Makes every record appended so far durable (one fdatasync for the WAL: group
    /// commit) and returns the last durable LSN, which is then `last_lsn()`.
    ///
    /// A failed sync poisons a WAL: see [`Wal`](crate::Wal) for why and what to do.
    fn sync(&mut self) -> Result<Lsn, StorageError>;

    /// Every durable record with `lsn >= from`, in order, up to the durable LSN at the
    /// time of the call. `from` 0 reads like 1. Records appended but not yet synced
    /// are not returned: what a crash could take away is never shown.
    ///
    /// Fails with [`StorageError::Released`] when records from `from` on were
    /// released, rather than silently starting later.
    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError>;

    /// The last LSN appended, durable or not (0 when the log has no record yet).
    fn last_lsn(&self) -> Lsn;

    /// The last LSN known durable (0 when none is). It may advance without a call
    /// to `sync` (the WAL syncs a full segment before starting the next), never
    /// beyond `last_lsn()`.
    fn durable_lsn(&self) -> Lsn;

    /// Declares the records below `lsn` checkpointed elsewhere: the log may delete
    /// them (the WAL deletes whole segments only, so some may remain readable).
    /// `lsn` may be at most `durable_lsn() + 1`: only durable records can have been
    /// checkpointed.
    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError>;

    /// After a failed `append` or `sync`: re-reads the log from its medium, dropping
    /// what was appended but never synced, so the writer can rebuild its state from
    /// what is durable and try again. A log that keeps nothing outside memory has
    /// nothing to re-read.
    fn reopen(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// For a log several nodes share (a replicated stream; issue 21): waits up to
    /// `timeout` for records after `after` that another writer made durable, and returns
    /// them in LSN order, dense from `after + 1` (at most [`BATCH_RECORDS_MAX`] at a
    /// time; an empty answer means none came within `timeout`). It is how a follower
    /// learns what the leader committed; what it returns is then part of this log
    /// (`last_lsn` and `durable_lsn` move past it). Fails with
    /// [`StorageError::Released`] when `after + 1` was purged.
    ///
    /// A log only this process writes (the WAL, [`MemLog`](crate::MemLog)) has no other
    /// writer: it returns nothing, at once.
    fn follow(&mut self, after: Lsn, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        let _ = (after, timeout);
        Ok(Vec::new())
    }

    /// For a log several nodes share: makes this node its only writer, once `follow`
    /// has returned every record (the caller's `last_lsn()` is the log's end). From then
    /// on an append by any earlier writer is refused with [`StorageError::Fenced`]; this
    /// one fails with `Fenced` when another writer appended since (follow again, then
    /// claim again). A log only this process writes is always claimed.
    fn claim(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Checks a batch against the bounds before anything is written; returns its
/// payload bytes. Every `CommandLog` calls it first in `append` (one rule for all logs).
pub fn check_batch(payloads: &[&[u8]]) -> Result<usize, StorageError> {
    let records = payloads.len();
    let mut bytes = 0usize;
    for payload in payloads {
        if payload.len() > RECORD_BYTES_MAX {
            return Err(StorageError::RecordTooLarge { bytes: payload.len(), max: RECORD_BYTES_MAX });
        }
        // Saturating: a caller may pass any number of records, and a saturated total
        // is still over the bound, which is all it is compared with.
        bytes = bytes.saturating_add(payload.len());
    }
    let reason = if records == 0 {
        "a batch holds at least one record"
    } else if records > BATCH_RECORDS_MAX {
        "more records than BATCH_RECORDS_MAX"
    } else if bytes > BATCH_BYTES_MAX {
        "more payload bytes than BATCH_BYTES_MAX"
    } else {
        return Ok(bytes);
    };
    Err(StorageError::InvalidBatch { records, bytes, reason })
}

/// The LSN range a batch of `records` records would take after `last`, or an error
/// when the LSN space is exhausted (at a million records a second, in 584,000 years).
pub(crate) fn next_lsns(last: Lsn, records: usize) -> Result<Lsn, StorageError> {
    let first = last.checked_add(1);
    let records = u64::try_from(records).ok();
    match (first, records) {
        (Some(first), Some(records)) if first.checked_add(records).is_some() => Ok(first),
        _ => Err(StorageError::InvalidLsn { lsn: last, reason: "the LSN space is exhausted" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_batch_is_refused() {
        let error = check_batch(&[]).err();
        assert!(matches!(error, Some(StorageError::InvalidBatch { records: 0, .. })));
    }

    #[test]
    fn oversized_record_is_refused() {
        let big = vec![0u8; RECORD_BYTES_MAX + 1];
        let error = check_batch(&[b"ok", &big]).err();
        assert!(matches!(error, Some(StorageError::RecordTooLarge { .. })));
    }

    #[test]
    fn too_many_records_are_refused() {
        let payloads = vec![&b""[..]; BATCH_RECORDS_MAX + 1];
        let error = check_batch(&payloads).err();
        assert!(matches!(error, Some(StorageError::InvalidBatch { .. })));
        assert_eq!(check_batch(&payloads[..BATCH_RECORDS_MAX]).ok(), Some(0));
    }

    #[test]
    fn too_many_bytes_are_refused() {
        let record = vec![0u8; RECORD_BYTES_MAX];
        let payloads = vec![&record[..]; BATCH_BYTES_MAX / RECORD_BYTES_MAX + 1];
        let error = check_batch(&payloads).err();
        assert!(matches!(error, Some(StorageError::InvalidBatch { .. })));
    }

    #[test]
    fn lsn_space_exhaustion_is_an_error() {
        assert_eq!(next_lsns(0, 1).ok(), Some(1));
        assert_eq!(next_lsns(u64::MAX - 2, 1).ok(), Some(u64::MAX - 1));
        assert!(next_lsns(u64::MAX - 1, 1).is_err());
        assert!(next_lsns(u64::MAX, 1).is_err());
    }
}
