//! `dispatchd serve --fault-file PATH` (hidden, for tests of the whole server): while
//! `PATH` exists, the WAL refuses to write as a full disk would (`ENOSPC`), so a
//! black-box test can watch the engine go read-only (`503 read_only`, reads still
//! served, `/readyz` failing its `engine_writable` check) and come back by itself once
//! the file is removed. While `PATH.stall` exists (the same path and `.stall`), every
//! append waits instead, as on a disk that stopped answering: commands pile up in the
//! writer's queue, so a black-box test can fill it (or one zone's share of it) at will and
//! let it drain by removing the file.
//!
//! Also `--clock-offset-s N` (hidden, `--dev` only): [`OffsetClock`], the system clock
//! shifted by `N` seconds, so a black-box test can see what expires (a licence) without
//! waiting for it.
//!
//! And `--limiter-clock PATH` (hidden, `--dev` only): [`limiter_clock`], the rate
//! limiter's clock driven by the test instead of time: each reading advances it by the
//! nanoseconds written in `PATH` at that moment (a missing, empty or unreadable file:
//! none, a frozen clock). A black-box test can then spend a bucket exactly (frozen) and
//! give each judgment exactly one interval back (a step of one interval), so what it
//! checks of the limiter's arithmetic and ordering never depends on how fast it runs.
//!
//! Guarantees: without the flag nothing here runs (the engine's log is not wrapped);
//! with it, every append, sync and release checks the file first and fails with a
//! disk-full error while it exists, and otherwise passes the call to the real WAL
//! unchanged. Re-reading the log (`reopen`) is never refused: on a real full disk it
//! only reads and cuts an unsynced tail.

use std::path::PathBuf;

use dispatch_storage::{CommandLog, Lsn, Records, StorageError};

/// The system clock, `offset_ms` ahead (tests only: `--clock-offset-s`).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    /// How far ahead, ms (negative: behind).
    pub offset_ms: i64,
}

impl dispatch_core::clock::Clock for OffsetClock {
    fn now(&self) -> dispatch_core::clock::Timestamp {
        dispatch_core::clock::SystemClock.now().plus_millis(self.offset_ms)
    }
}

/// The rate limiter's clock for `--limiter-clock`: from 0 ns, each reading adds the step
/// read from `path` then (tests only; see the module's doc).
pub fn limiter_clock(path: PathBuf) -> crate::ratelimit::Clock {
    let now = std::sync::atomic::AtomicU64::new(0);
    std::sync::Arc::new(move || {
        let step = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        now.fetch_add(step, std::sync::atomic::Ordering::SeqCst).saturating_add(step)
    })
}

/// A command log that fails like a full disk while a file exists.
pub struct FaultFileLog {
    inner: Box<dyn CommandLog>,
    file: PathBuf,
    /// `file` with `.stall` added: appends wait while it exists.
    stall: PathBuf,
}

impl FaultFileLog {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn CommandLog>, file: PathBuf) -> Self {
        let mut stall = file.clone().into_os_string();
        stall.push(".stall");
        FaultFileLog { inner, file, stall: PathBuf::from(stall) }
    }

    /// The engine's hook: wraps the data directory's WAL.
    pub fn wrapper(file: PathBuf) -> dispatch_core::LogWrapper {
        Box::new(move |inner| Box::new(FaultFileLog::new(inner, file)))
    }

    fn check(&self, op: &'static str) -> Result<(), StorageError> {
        if self.file.exists() {
            let source = std::io::Error::from(std::io::ErrorKind::StorageFull);
            return Err(StorageError::Io { op, path: self.file.clone(), source });
        }
        Ok(())
    }
}

impl CommandLog for FaultFileLog {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        // A stalled disk: the writer waits here, and its queue fills behind it.
        while self.stall.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.check("write")?;
        self.inner.append(payloads)
    }

    fn sync(&mut self) -> Result<Lsn, StorageError> {
        self.check("fdatasync")?;
        self.inner.sync()
    }

    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        self.inner.read_from(from)
    }

    fn last_lsn(&self) -> Lsn {
        self.inner.last_lsn()
    }

    fn durable_lsn(&self) -> Lsn {
        self.inner.durable_lsn()
    }

    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        self.check("release")?;
        self.inner.release_below(lsn)
    }

    fn reopen(&mut self) -> Result<(), StorageError> {
        self.inner.reopen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fail_as_a_full_disk_only_while_the_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fail");
        let mut log = FaultFileLog::new(Box::new(dispatch_storage::MemLog::new()), file.clone());
        assert_eq!(log.append(&[b"a"]).unwrap(), 1);
        assert_eq!(log.sync().unwrap(), 1);
        std::fs::write(&file, b"").unwrap();
        let e = log.append(&[b"b"]).unwrap_err();
        assert!(e.is_disk_full(), "{e}");
        assert!(log.sync().unwrap_err().is_disk_full());
        assert_eq!((log.last_lsn(), log.durable_lsn()), (1, 1), "a refused batch changes nothing");
        log.reopen().unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(log.append(&[b"b"]).unwrap(), 2);
        assert_eq!(log.sync().unwrap(), 2);
        let read: Vec<Vec<u8>> = log.read_from(1).unwrap().map(|r| r.unwrap().payload).collect();
        assert_eq!(read, vec![b"a".to_vec(), b"b".to_vec()]);
    }
}
