//! [`MemLog`]: the command log kept in memory.
//!
//! Owns nothing on disk. For tests, and for an engine run without a data directory
//! (a demo, a simulation): it follows the [`CommandLog`] contract exactly (bounds,
//! durable-only reads, released prefixes), and [`MemLog::crash`] drops what a crash
//! would, so engine crash tests can run without files.

use std::collections::VecDeque;

use crate::error::StorageError;
use crate::log::{CommandLog, Lsn, Record, Records, check_batch, next_lsns};

/// An in-memory [`CommandLog`]. "Durable" means "synced": nothing survives the process.
#[derive(Debug, Default)]
pub struct MemLog {
    /// LSN of `records[0]` minus one: the records released or never stored below it.
    base_lsn: Lsn,
    /// Payloads of `base_lsn + 1 ..= last_lsn`, durable ones first.
    records: VecDeque<Vec<u8>>,
    /// The last synced LSN; the records above it are what [`MemLog::crash`] drops.
    durable_lsn: Lsn,
}

impl MemLog {
    /// An empty log whose first record will get LSN 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash: forgets every record appended since the last sync, as a
    /// crash of a real log may. Appending continues at `durable_lsn() + 1`.
    pub fn crash(&mut self) {
        let durable = usize::try_from(self.durable_lsn - self.base_lsn).unwrap_or(usize::MAX);
        self.records.truncate(durable);
    }

    /// The lowest LSN still stored (`last_lsn() + 1` when none is).
    pub fn first_lsn(&self) -> Lsn {
        self.base_lsn + 1
    }
}

impl CommandLog for MemLog {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        check_batch(payloads)?;
        let first = next_lsns(self.last_lsn(), payloads.len())?;
        self.records.extend(payloads.iter().map(|p| p.to_vec()));
        Ok(first)
    }

    fn sync(&mut self) -> Result<Lsn, StorageError> {
        self.durable_lsn = self.last_lsn();
        Ok(self.durable_lsn)
    }

    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        let from = from.max(1);
        if from < self.first_lsn() {
            return Err(StorageError::Released { from, first_available: self.first_lsn() });
        }
        let skip = usize::try_from(from - self.first_lsn()).unwrap_or(usize::MAX);
        let durable = usize::try_from(self.durable_lsn - self.base_lsn).unwrap_or(usize::MAX);
        let base = self.base_lsn;
        Ok(Box::new(
            self.records
                .iter()
                .enumerate()
                .take(durable)
                .skip(skip)
                .map(move |(index, payload)| Ok(Record { lsn: base + 1 + index as u64, payload: payload.clone() })),
        ))
    }

    fn last_lsn(&self) -> Lsn {
        self.base_lsn + self.records.len() as u64
    }

    fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        if lsn > self.durable_lsn + 1 {
            return Err(StorageError::InvalidLsn {
                lsn,
                reason: "records above the durable lsn cannot have been checkpointed",
            });
        }
        while self.base_lsn + 1 < lsn && self.records.pop_front().is_some() {
            self.base_lsn += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(log: &MemLog, from: Lsn) -> Result<Vec<(Lsn, Vec<u8>)>, StorageError> {
        log.read_from(from)?.map(|r| r.map(|r| (r.lsn, r.payload))).collect()
    }

    #[test]
    fn reads_only_what_was_synced() -> Result<(), StorageError> {
        let mut log = MemLog::new();
        assert_eq!((log.last_lsn(), log.durable_lsn()), (0, 0));
        assert_eq!(log.append(&[b"a", b"b"])?, 1);
        assert_eq!(collect(&log, 1)?, vec![]);
        assert_eq!(log.sync()?, 2);
        assert_eq!(log.append(&[b"c"])?, 3);
        assert_eq!(collect(&log, 0)?, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        assert_eq!(collect(&log, 2)?, vec![(2, b"b".to_vec())]);
        assert_eq!(collect(&log, 9)?, vec![]);
        Ok(())
    }

    #[test]
    fn crash_drops_the_unsynced_tail_and_lsns_stay_dense() -> Result<(), StorageError> {
        let mut log = MemLog::new();
        log.append(&[b"a"])?;
        log.sync()?;
        log.append(&[b"lost", b"lost too"])?;
        log.crash();
        assert_eq!(log.last_lsn(), 1);
        assert_eq!(log.append(&[b"b"])?, 2);
        log.sync()?;
        assert_eq!(collect(&log, 1)?, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        Ok(())
    }

    #[test]
    fn release_below_forgets_the_prefix() -> Result<(), StorageError> {
        let mut log = MemLog::new();
        log.append(&[b"a", b"b", b"c"])?;
        log.sync()?;
        log.release_below(3)?;
        assert_eq!(log.first_lsn(), 3);
        assert!(matches!(log.read_from(2).err(), Some(StorageError::Released { from: 2, first_available: 3 })));
        assert_eq!(collect(&log, 3)?, vec![(3, b"c".to_vec())]);
        log.release_below(4)?;
        assert_eq!((log.first_lsn(), log.last_lsn()), (4, 3));
        assert_eq!(log.append(&[b"d"])?, 4);
        assert!(log.release_below(9).is_err());
        Ok(())
    }
}
