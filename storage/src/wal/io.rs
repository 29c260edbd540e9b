//! The system calls that change the WAL on disk.
//!
//! Owns every write, fsync, truncate, create and delete of segment files and of
//! their directory, so that one place decides how they are done and tests can make
//! any of them fail. Guarantees: in normal builds [`Io`] is a zero-sized
//! pass-through to `std::fs`; under `cfg(test)` it also carries a [`FaultPlan`] that
//! fails the N-th call of a kind (a full disk, a failing fsync) and counts fsyncs.
//! Reads are not routed here: a failing read changes nothing on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

/// The write path's access to the file system.
#[derive(Debug, Default)]
pub(crate) struct Io {
    /// Shared with the test that armed it, so it can re-arm faults between calls.
    #[cfg(test)]
    faults: std::sync::Arc<std::sync::Mutex<FaultPlan>>,
}

impl Io {
    /// Creates a segment file that must not exist yet, open for reading and writing.
    pub(crate) fn create_new(&self, path: &Path) -> io::Result<File> {
        #[cfg(test)]
        self.fault(|plan| plan.creates.fire())?;
        OpenOptions::new().read(true).write(true).create_new(true).open(path)
    }

    /// Writes all of `bytes` at `offset`. On error an unknown prefix may have been
    /// written: the caller truncates back.
    pub(crate) fn write_at(&self, file: &mut File, offset: u64, bytes: &[u8]) -> io::Result<()> {
        file.seek(SeekFrom::Start(offset))?;
        #[cfg(test)]
        {
            let partial = self.with_plan(|plan| plan.writes.fire().then_some(plan.partial_write_bytes));
            if let Some(partial) = partial {
                file.write_all(&bytes[..partial.min(bytes.len())])?;
                return Err(self.injected_error());
            }
        }
        file.write_all(bytes)
    }

    /// `fdatasync`: the file's data and the metadata needed to read it back (its
    /// length) reach the disk.
    pub(crate) fn sync_data(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        {
            self.with_plan(|plan| plan.file_syncs += 1);
            self.fault(|plan| plan.syncs.fire())?;
        }
        file.sync_data()
    }

    /// Sets the file's length (cuts a torn or failed tail).
    pub(crate) fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        #[cfg(test)]
        self.fault(|plan| plan.set_lens.fire())?;
        file.set_len(len)
    }

    /// Deletes a segment file.
    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        #[cfg(test)]
        self.fault(|plan| plan.removes.fire())?;
        fs::remove_file(path)
    }

    /// fsyncs a directory, so that files created in or deleted from it stay created
    /// or deleted after a crash.
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(test)]
        {
            self.with_plan(|plan| plan.dir_syncs += 1);
            self.fault(|plan| plan.syncs.fire())?;
        }
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            // Directories cannot be opened as files elsewhere; their metadata is
            // journaled by the file system (NTFS).
            let _ = dir;
            Ok(())
        }
    }
}

#[cfg(test)]
impl Io {
    /// The fault plan, to arm faults and read the counters.
    pub(crate) fn faults(&self) -> std::sync::Arc<std::sync::Mutex<FaultPlan>> {
        std::sync::Arc::clone(&self.faults)
    }

    fn with_plan<T>(&self, f: impl FnOnce(&mut FaultPlan) -> T) -> T {
        let mut plan = self.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut plan)
    }

    fn fault(&self, fire: impl FnOnce(&mut FaultPlan) -> bool) -> io::Result<()> {
        if self.with_plan(fire) { Err(self.injected_error()) } else { Ok(()) }
    }

    fn injected_error(&self) -> io::Error {
        let kind = self.with_plan(|plan| plan.error_kind);
        io::Error::new(kind, "injected fault")
    }
}

/// Which calls fail, and counters of what was called. Tests only.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct FaultPlan {
    /// Writes.
    pub(crate) writes: Countdown,
    /// Bytes of a failing write that reach the file before the error (a short write).
    pub(crate) partial_write_bytes: usize,
    /// File and directory fsyncs.
    pub(crate) syncs: Countdown,
    /// Truncations.
    pub(crate) set_lens: Countdown,
    /// Segment creations.
    pub(crate) creates: Countdown,
    /// Segment deletions.
    pub(crate) removes: Countdown,
    /// The error every injected fault returns (a full disk unless changed).
    pub(crate) error_kind: io::ErrorKind,
    /// `fdatasync` calls on segment files, failed or not.
    pub(crate) file_syncs: u64,
    /// fsync calls on the directory, failed or not.
    pub(crate) dir_syncs: u64,
}

#[cfg(test)]
impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            writes: Countdown::default(),
            partial_write_bytes: 0,
            syncs: Countdown::default(),
            set_lens: Countdown::default(),
            creates: Countdown::default(),
            removes: Countdown::default(),
            error_kind: io::ErrorKind::StorageFull,
            file_syncs: 0,
            dir_syncs: 0,
        }
    }
}

/// "Let `ok_first` calls through, then fail `failures` calls, then let all through."
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Countdown {
    ok_first: u64,
    failures: u64,
}

#[cfg(test)]
impl Countdown {
    /// Fails the call after `ok_first` successful ones, once.
    pub(crate) fn once_after(ok_first: u64) -> Self {
        Countdown { ok_first, failures: 1 }
    }

    /// Fails every call from the one after `ok_first` on, until re-armed (a disk that
    /// stays full).
    pub(crate) fn always_after(ok_first: u64) -> Self {
        Countdown { ok_first, failures: u64::MAX }
    }

    /// Whether this call fails.
    fn fire(&mut self) -> bool {
        if self.failures == 0 {
            false
        } else if self.ok_first > 0 {
            self.ok_first -= 1;
            false
        } else {
            self.failures -= 1;
            true
        }
    }
}
