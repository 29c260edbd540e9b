//! [`PacedFile`]: the store's redb backend. It makes what a commit writes durable in
//! steps of at most [`SYNC_STEP_BYTES`], so a checkpoint never has megabytes queued at
//! the disk ahead of the WAL's `fdatasync`.
//!
//! Why: the store and the WAL share a disk by default. A checkpoint commit writes
//! megabytes (the state blob, changed rows, history) and then fsyncs; the writer's
//! next group-commit `fdatasync` is queued behind all of it, so acknowledgements stall
//! for tens of milliseconds once per checkpoint. Measured on this project's VM (a
//! thread appending 2 KB + `fdatasync` in a loop while another writes 10 MiB then
//! fsyncs every 1.5 s, 20 s runs): in one write, 10-15 of the appender's fsyncs took
//! over 5 ms (max 26-62 ms); in steps of 1 MiB, 7; of 256 KiB, 0-2; of 128 KiB, 0-5,
//! the same as with no store writes at all (0-1). The 10 MiB then took 24-84 ms
//! instead of about 20.
//!
//! Guarantees: every call is passed to redb's own [`FileBackend`] (reads, length,
//! locks, close); a write is the same bytes at the same offsets, cut in steps, with a
//! `sync_data` after each step's worth of bytes. Extra syncs only narrow what a crash
//! can leave (a prefix of the writes is durable earlier), and redb's commit does not
//! depend on its writes staying volatile, so its crash safety is unchanged. A failed
//! step sync fails the write, and redb fails the commit.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, DatabaseError, StorageBackend};

/// At most this many bytes are written between two syncs (see the module docs for
/// the measurements behind the figure).
pub const SYNC_STEP_BYTES: u64 = 128 * 1024;

/// redb's file backend, syncing every `step` bytes written.
#[derive(Debug)]
pub(crate) struct PacedFile {
    inner: FileBackend,
    /// Bytes written since the last sync. Only redb's committing thread writes, so
    /// relaxed ordering is enough; a race would only move a sync by one step.
    unsynced: AtomicU64,
    /// The step; `u64::MAX` syncs only when redb asks.
    step: u64,
    /// Syncs made by the steps (not those redb asked for).
    step_syncs: AtomicU64,
}

impl PacedFile {
    /// Wraps `file`, syncing every `step` bytes (`None`: only when redb asks).
    pub(crate) fn new(file: File, step: Option<u64>) -> Result<PacedFile, DatabaseError> {
        Ok(PacedFile {
            inner: FileBackend::new(file)?,
            unsynced: AtomicU64::new(0),
            step: step.unwrap_or(u64::MAX).max(1),
            step_syncs: AtomicU64::new(0),
        })
    }
}

impl StorageBackend for PacedFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.unsynced.store(0, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let step = usize::try_from(self.step).unwrap_or(usize::MAX);
        let mut at = offset;
        for chunk in data.chunks(step) {
            self.inner.write(at, chunk)?;
            at += chunk.len() as u64;
            let unsynced = self.unsynced.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if unsynced >= self.step {
                self.sync_data()?;
                self.step_syncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use redb::StorageBackend;

    use super::PacedFile;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn backend(dir: &tempfile::TempDir, step: Option<u64>) -> Result<PacedFile, Box<dyn std::error::Error>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join("f"))?;
        Ok(PacedFile::new(file, step)?)
    }

    /// A write is the same bytes at the same offsets, with a sync after each step's worth
    /// of bytes, counted across writes; without a step, no sync but redb's own.
    #[test]
    fn writes_land_whole_with_a_sync_per_step() -> TestResult {
        let dir = tempfile::tempdir()?;
        let paced = backend(&dir, Some(64 * 1024))?;
        let data: Vec<u8> = (0..1024 * 1024 + 100).map(|i| (i % 251) as u8).collect();
        paced.set_len(4096 + data.len() as u64 + 1000)?;
        paced.write(4096, &data)?;
        // 1 MiB + 100 bytes in 64 KiB steps: 16 syncs, 100 bytes left over...
        assert_eq!(paced.step_syncs.load(std::sync::atomic::Ordering::Relaxed), 16);
        // ... which count towards the next write's step.
        paced.write(4096 + data.len() as u64, &[7u8; 64 * 1024 - 100])?;
        assert_eq!(paced.step_syncs.load(std::sync::atomic::Ordering::Relaxed), 17);
        let mut back = vec![0u8; data.len()];
        paced.read(4096, &mut back)?;
        assert_eq!(back, data);
        // redb's own sync starts the count again.
        paced.write(0, &[1u8; 1000])?;
        paced.sync_data()?;
        paced.write(1000, &[1u8; 64 * 1024 - 1000])?;
        assert_eq!(paced.step_syncs.load(std::sync::atomic::Ordering::Relaxed), 17);

        let unpaced = backend(&dir, None)?;
        unpaced.write(0, &data)?;
        assert_eq!(unpaced.step_syncs.load(std::sync::atomic::Ordering::Relaxed), 0);
        let mut back = vec![0u8; data.len()];
        unpaced.read(0, &mut back)?;
        assert_eq!(back, data);
        Ok(())
    }
}
