//! [`Wal`]: the command log on local disk, as segment files of checksummed frames.
//!
//! Owns the WAL directory while open: its segment files are written only through
//! this type. Guarantees (the format and the reasoning are in `storage/WAL.md`):
//! - a batch is written with one write and made durable with one `fdatasync` per
//!   [`sync`](CommandLog::sync): group commit;
//! - a failed write leaves the log as it was: the partial batch is cut off (and the
//!   cut made durable) so a retry appends at the same LSN right after valid data;
//! - a failed fsync (file or directory) poisons the log: every call fails with
//!   [`StorageError::Poisoned`] until [`Wal::reopen`] re-runs recovery from disk;
//! - a segment is made durable before the next one is created, so only the last
//!   segment can end in a torn write;
//! - [`Wal::open`] is recovery: it keeps the longest verified prefix of the log and
//!   says in a [`RecoveryReport`] what it cut.
//!
//! One process, one `Wal` per directory: nothing locks the directory, so two writers
//! would interleave frames. The caller (the engine's data-dir lock) must ensure it.

mod format;
mod io;
mod reader;
mod recovery;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::log::{CommandLog, Lsn, Records, check_batch, next_lsns};

pub use format::DamageKind;
pub use recovery::{Damage, RecoveryReport};

use format::{SEGMENT_HEADER_BYTES, encode_frame, frame_bytes};
use io::Io;
use reader::{SegmentReader, Span};
use recovery::{CreateFailure, Recovered, SegmentInfo, create_segment, recover};

/// Default size at which a segment is closed: large enough that rotation (three
/// fsyncs) is rare, small enough that a release frees disk promptly.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Smallest allowed segment size. Tiny segments are only useful to tests, which use
/// them to exercise rotation; a segment always holds at least one batch anyway.
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// Largest allowed segment size: segments are released whole, so a bigger one would
/// keep that much disk after its records are checkpointed.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// The batch buffer is dropped after a batch that grew it beyond this, so one huge
/// batch does not pin up to [`BATCH_BYTES_MAX`](crate::BATCH_BYTES_MAX) for the life
/// of the log.
const BATCH_BUFFER_KEEP_BYTES: usize = 4 * 1024 * 1024;

const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_HEADER_BYTES as u64 + 16 <= SEGMENT_BYTES_MIN);

/// What recovery does with damage that a crash cannot explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryPolicy {
    /// Cuts a torn tail of the last segment, but refuses to open
    /// ([`StorageError::Corrupt`], nothing changed) when damage is followed by a later
    /// segment or a segment is missing: that is media corruption or a tampered
    /// directory, and cutting there would discard acknowledged records.
    #[default]
    Strict,
    /// Cuts the log at the first damage wherever it is and deletes every later
    /// segment. For an operator who has decided those records are lost (or restored
    /// them elsewhere) and wants the node back.
    TruncateAtDamage,
}

/// Settings of a [`Wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// A segment that has reached this size is closed before the next batch, which
    /// goes to a new segment. A batch never spans segments, so a segment can exceed
    /// it by one batch. Between [`SEGMENT_BYTES_MIN`] and [`SEGMENT_BYTES_MAX`];
    /// default [`SEGMENT_BYTES_DEFAULT`].
    pub segment_bytes_max: u64,
    /// What to do with damage a crash cannot explain; default
    /// [`RecoveryPolicy::Strict`].
    pub recovery_policy: RecoveryPolicy,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig { segment_bytes_max: SEGMENT_BYTES_DEFAULT, recovery_policy: RecoveryPolicy::Strict }
    }
}

impl WalConfig {
    fn validate(&self) -> Result<(), StorageError> {
        if (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            Ok(())
        } else {
            Err(StorageError::InvalidConfig {
                reason: format!(
                    "segment_bytes_max is {}, must be within {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                    self.segment_bytes_max
                ),
            })
        }
    }
}

/// The write-ahead log: a [`CommandLog`] in segment files of one directory.
///
/// ## After a failed fsync
/// When `fdatasync` (or a directory fsync) fails, the kernel may already have dropped
/// the dirty pages it could not write while the page cache still shows them
/// ("fsyncgate"): retrying the fsync can succeed without the data being on disk. So
/// the log is poisoned: every call fails with [`StorageError::Poisoned`] (which says
/// whether the disk was full) until [`Wal::reopen`] succeeds. Reopening re-runs
/// recovery from disk and cuts the log back to the last LSN this handle had synced:
/// the records of the failed sync were never acknowledged and must not resurface.
/// The engine goes read-only, and retries `reopen` until it succeeds (when space
/// returns). Dropping the `Wal` and calling [`Wal::open`] again also works, but keeps
/// whatever unsynced records the page cache still holds.
#[derive(Debug)]
pub struct Wal {
    /// The directory of the segments; recovery lists it.
    dir: PathBuf,
    config: WalConfig,
    /// Every change to files goes through it (and its faults, in tests).
    io: Io,
    /// Segments before the active one, oldest first: read by replays, deleted by
    /// `release_below`.
    closed: VecDeque<SegmentInfo>,
    /// The segment appends go to.
    active: ActiveSegment,
    last_lsn: Lsn,
    durable_lsn: Lsn,
    /// Set by a failed fsync (or a failure that leaves the files unknown); cleared by
    /// a successful reopen.
    poison: Option<Poison>,
    /// The frames of the batch being appended, kept to reuse its allocation.
    batch: Vec<u8>,
}

#[derive(Debug)]
struct ActiveSegment {
    file: File,
    path: PathBuf,
    first_lsn: Lsn,
    /// Where the next batch is written: the end of the last good frame.
    end_offset: u64,
    /// The end of the last durable frame: replays read no further.
    durable_offset: u64,
}

#[derive(Debug, Clone)]
struct Poison {
    cause: String,
    disk_full: bool,
}

impl Poison {
    fn error(&self) -> StorageError {
        StorageError::Poisoned { cause: self.cause.clone(), disk_full: self.disk_full }
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and recovers it: see
    /// [`RecoveryReport`] for what may have been cut. Everything recovered is durable
    /// when this returns.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Wal, RecoveryReport), StorageError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let io = Io::default();
        let recovered = recover(&dir, config.recovery_policy, &io, None)?;
        let report = recovered.report.clone();
        let state = RecoveredState::from(recovered);
        let wal = Wal {
            dir,
            config,
            io,
            closed: state.closed,
            active: state.active,
            last_lsn: state.last_lsn,
            durable_lsn: state.last_lsn,
            poison: None,
            batch: Vec::new(),
        };
        Ok((wal, report))
    }

    /// Re-runs recovery from disk, cutting the log back to [`durable_lsn`]: records
    /// appended but never synced through this handle are discarded (their callers
    /// were told the write failed, or were never told it succeeded). Clears the poison
    /// on success. On failure the log is (or stays) poisoned; call it again later.
    ///
    /// Fails with [`StorageError::Corrupt`] if the disk no longer holds every record up
    /// to [`durable_lsn`]: acknowledged records are missing, which needs an operator.
    ///
    /// [`durable_lsn`]: CommandLog::durable_lsn
    pub fn reopen(&mut self) -> Result<RecoveryReport, StorageError> {
        let durable = self.durable_lsn;
        match recover(&self.dir, self.config.recovery_policy, &self.io, Some(durable)) {
            Ok(recovered) => {
                let report = recovered.report.clone();
                let state = RecoveredState::from(recovered);
                self.closed = state.closed;
                self.active = state.active;
                self.last_lsn = state.last_lsn;
                self.durable_lsn = state.last_lsn;
                self.poison = None;
                Ok(report)
            }
            Err(error) => {
                self.set_poison(format!("reopen failed: {error}"), error.is_disk_full());
                Err(error)
            }
        }
    }

    /// The directory of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lowest LSN still stored; records below it were released.
    pub fn first_lsn(&self) -> Lsn {
        self.closed.front().map_or(self.active.first_lsn, |segment| segment.first_lsn)
    }

    /// Segment files in the log, the active one included.
    pub fn segment_count(&self) -> usize {
        self.closed.len() + 1
    }

    /// True after a failed fsync, until a successful [`Wal::reopen`].
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }

    fn check_poison(&self) -> Result<(), StorageError> {
        match &self.poison {
            Some(poison) => Err(poison.error()),
            None => Ok(()),
        }
    }

    fn set_poison(&mut self, cause: String, disk_full: bool) {
        // The first cause is the one that matters; later failures follow from it.
        if self.poison.is_none() {
            self.poison = Some(Poison { cause, disk_full });
        }
    }

    /// fdatasync of the active segment; poisons on failure.
    fn sync_active(&mut self) -> Result<(), StorageError> {
        match self.io.sync_data(&self.active.file) {
            Ok(()) => {
                self.durable_lsn = self.last_lsn;
                self.active.durable_offset = self.active.end_offset;
                Ok(())
            }
            Err(e) => {
                let error = StorageError::io("fdatasync", &self.active.path, e);
                self.set_poison(error.to_string(), error.is_disk_full());
                Err(error)
            }
        }
    }

    /// Cuts what part of a failed batch reached the file, and makes the cut durable,
    /// so the next batch lands right after the last good frame and no record of the
    /// failed batch can reappear after a crash.
    fn undo_partial_write(&mut self, error: &StorageError) {
        let cut = self
            .io
            .set_len(&self.active.file, self.active.end_offset)
            .map_err(|e| StorageError::io("truncate segment", &self.active.path, e));
        let result = cut.and_then(|()| self.sync_active());
        if let Err(cleanup) = result {
            self.set_poison(
                format!("{error}; then the partial batch could not be cut off: {cleanup}"),
                error.is_disk_full() || cleanup.is_disk_full(),
            );
        }
    }

    /// Closes the active segment and starts the next. The active segment is made
    /// durable first: recovery tells a crash from damage by relying on only the last
    /// segment ever ending in a torn write.
    fn rotate(&mut self) -> Result<(), StorageError> {
        if self.durable_lsn < self.last_lsn {
            self.sync_active()?;
        }
        let first_lsn = self.last_lsn + 1;
        let (file, path) = match create_segment(&self.io, &self.dir, first_lsn) {
            Ok(created) => created,
            Err(CreateFailure::Clean(error)) => return Err(error),
            Err(CreateFailure::Unclean(error)) => {
                self.set_poison(error.to_string(), error.is_disk_full());
                return Err(error);
            }
        };
        let end_offset = SEGMENT_HEADER_BYTES as u64;
        let previous = std::mem::replace(
            &mut self.active,
            ActiveSegment { file, path, first_lsn, end_offset, durable_offset: end_offset },
        );
        self.closed.push_back(SegmentInfo {
            first_lsn: previous.first_lsn,
            path: previous.path,
            end_offset: previous.end_offset,
        });
        Ok(())
    }
}

impl CommandLog for Wal {
    fn reopen(&mut self) -> Result<(), StorageError> {
        Wal::reopen(self).map(|_| ())
    }

    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        self.check_poison()?;
        check_batch(payloads)?;
        let first = next_lsns(self.last_lsn, payloads.len())?;
        if self.active.end_offset >= self.config.segment_bytes_max {
            self.rotate()?;
        }
        self.batch.clear();
        for (lsn, payload) in (first..).zip(payloads) {
            encode_frame(&mut self.batch, lsn, payload);
        }
        debug_assert_eq!(self.batch.len() as u64, payloads.iter().map(|p| frame_bytes(p.len())).sum::<u64>());
        let written = self.io.write_at(&mut self.active.file, self.active.end_offset, &self.batch);
        let batch_bytes = self.batch.len() as u64;
        if self.batch.capacity() > BATCH_BUFFER_KEEP_BYTES {
            self.batch = Vec::new();
        }
        match written {
            Ok(()) => {
                self.active.end_offset += batch_bytes;
                self.last_lsn = first + (payloads.len() as u64 - 1);
                Ok(first)
            }
            Err(e) => {
                let error = StorageError::io("write", &self.active.path, e);
                self.undo_partial_write(&error);
                Err(error)
            }
        }
    }

    fn sync(&mut self) -> Result<Lsn, StorageError> {
        self.check_poison()?;
        if self.durable_lsn < self.last_lsn {
            self.sync_active()?;
        }
        Ok(self.durable_lsn)
    }

    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        self.check_poison()?;
        let from = from.max(1);
        let first_available = self.first_lsn();
        if from < first_available {
            return Err(StorageError::Released { from, first_available });
        }
        if from > self.durable_lsn {
            return Ok(Box::new(std::iter::empty()));
        }
        let active = Span {
            path: self.active.path.clone(),
            first_lsn: self.active.first_lsn,
            end_offset: self.active.durable_offset,
        };
        let mut spans: Vec<Span> = self
            .closed
            .iter()
            .map(|segment| Span {
                path: segment.path.clone(),
                first_lsn: segment.first_lsn,
                end_offset: segment.end_offset,
            })
            .chain(std::iter::once(active))
            .collect();
        // Start at the last segment beginning at or before `from`.
        let start = spans.partition_point(|span| span.first_lsn <= from).saturating_sub(1);
        spans.drain(..start);
        Ok(Box::new(SegmentReader::new(spans, from, self.durable_lsn)))
    }

    fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// Deletes the closed segments whose records are all below `lsn`, oldest first,
    /// with a directory fsync after each so that a crash leaves the log contiguous.
    /// The active segment is never deleted.
    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        self.check_poison()?;
        if lsn > self.durable_lsn.saturating_add(1) {
            return Err(StorageError::InvalidLsn {
                lsn,
                reason: "records above the durable lsn cannot have been checkpointed",
            });
        }
        while let Some(oldest) = self.closed.front() {
            let next_first_lsn = self.closed.get(1).map_or(self.active.first_lsn, |segment| segment.first_lsn);
            if next_first_lsn > lsn {
                break;
            }
            // A failed delete changes nothing: the segment stays, valid, and the next
            // release tries again.
            self.io.remove_file(&oldest.path).map_err(|e| StorageError::io("delete segment", &oldest.path, e))?;
            self.closed.pop_front();
            if let Err(e) = self.io.sync_dir(&self.dir) {
                let error = StorageError::io("fsync directory", &self.dir, e);
                self.set_poison(error.to_string(), error.is_disk_full());
                return Err(error);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl Wal {
    /// The fault plan of this log's I/O, to arm faults and read fsync counters.
    pub(crate) fn faults(&self) -> std::sync::Arc<std::sync::Mutex<io::FaultPlan>> {
        self.io.faults()
    }

    /// The active segment, the end of its durable frames, and the end of all frames.
    pub(crate) fn active_offsets(&self) -> (PathBuf, u64, u64) {
        (self.active.path.clone(), self.active.durable_offset, self.active.end_offset)
    }
}

/// The in-memory state of a freshly recovered log.
struct RecoveredState {
    closed: VecDeque<SegmentInfo>,
    active: ActiveSegment,
    last_lsn: Lsn,
}

impl From<Recovered> for RecoveredState {
    fn from(recovered: Recovered) -> Self {
        let Recovered { closed, active, active_file, last_lsn, report: _ } = recovered;
        RecoveredState {
            closed: closed.into(),
            active: ActiveSegment {
                file: active_file,
                path: active.path,
                first_lsn: active.first_lsn,
                end_offset: active.end_offset,
                // Recovery fdatasyncs what it keeps.
                durable_offset: active.end_offset,
            },
            last_lsn,
        }
    }
}
