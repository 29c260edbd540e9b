//! [`SharedMemLog`]: one in-memory command log that several handles (several engines, as
//! the nodes of a cluster in a test) share, with the fencing of a replicated stream.
//!
//! Owns the list of records and a claim counter behind one `Arc<Mutex<..>>`; each handle
//! owns what it has seen of them and the batch it appended but has not synced.
//!
//! Guarantees, like the real stream (dispatch-cluster's JetStream log, issue 21): LSNs are
//! dense from 1 for every handle; a handle sees another's records only through
//! [`CommandLog::follow`]; an append (or the sync that publishes it) is refused with
//! [`StorageError::Fenced`] when any record or claim was added since this handle's last
//! follow, append or claim, and then nothing of the batch is in the log;
//! [`CommandLog::claim`] is refused with `Fenced` while the handle has not followed to
//! the end. Nothing survives the process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::StorageError;
use crate::log::{BATCH_RECORDS_MAX, CommandLog, Lsn, Record, Records, check_batch, next_lsns};

#[derive(Debug, Default)]
struct Inner {
    /// LSN of `records[0]` minus one: what [`SharedMemLog::purge_below`] removed.
    base_lsn: Lsn,
    /// Payloads of `base_lsn + 1 ..`, every one durable (published by a sync).
    records: Vec<Vec<u8>>,
    /// Claims made so far, by any handle.
    claims: u64,
}

impl Inner {
    fn end(&self) -> Lsn {
        self.base_lsn + self.records.len() as u64
    }

    fn get(&self, lsn: Lsn) -> Option<&Vec<u8>> {
        let index = usize::try_from(lsn.checked_sub(self.base_lsn + 1)?).ok()?;
        self.records.get(index)
    }
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// Woken whenever records are added.
    grew: Condvar,
}

/// A handle on a command log shared in memory. [`SharedMemLog::handle`] makes another
/// handle on the same log (another node).
#[derive(Debug, Default)]
pub struct SharedMemLog {
    shared: Arc<Shared>,
    /// The last LSN this handle knows (appended and synced, or followed).
    known: Lsn,
    /// The claim counter as of this handle's last follow, append or claim.
    seen_claims: u64,
    /// The lowest LSN this handle still reads (`release_below` moves it up).
    first: Lsn,
    /// Appended, not yet synced.
    pending: Vec<Vec<u8>>,
}

impl SharedMemLog {
    /// A new, empty shared log and a first handle on it.
    pub fn new() -> Self {
        SharedMemLog { first: 1, ..Self::default() }
    }

    /// Another handle on the same log, knowing every record it holds now (as a node
    /// that opens the stream reads it to its end).
    pub fn handle(&self) -> SharedMemLog {
        let inner = lock(&self.shared);
        SharedMemLog {
            shared: Arc::clone(&self.shared),
            known: inner.end(),
            seen_claims: inner.claims,
            first: inner.base_lsn + 1,
            pending: Vec::new(),
        }
    }

    /// Another handle that must read from `after + 1` (a node whose checkpoint is at
    /// `after`): [`StorageError::Released`] when the log no longer holds that record.
    pub fn handle_after(&self, after: Lsn) -> Result<SharedMemLog, StorageError> {
        let handle = self.handle();
        let first_available = lock(&self.shared).base_lsn + 1;
        if after + 1 < first_available {
            return Err(StorageError::Released { from: after + 1, first_available });
        }
        Ok(SharedMemLog { first: after + 1, ..handle })
    }

    /// Removes the records below `lsn` from the log for every handle (as a stream's
    /// purge does): a follow or a new handle that needs one is then `Released`.
    pub fn purge_below(&self, lsn: Lsn) {
        let mut inner = lock(&self.shared);
        let drop = usize::try_from(lsn.saturating_sub(inner.base_lsn + 1)).unwrap_or(usize::MAX);
        let drop = drop.min(inner.records.len());
        inner.records.drain(..drop);
        inner.base_lsn += drop as u64;
    }

    /// The last LSN the log holds, whoever appended it.
    pub fn end_lsn(&self) -> Lsn {
        lock(&self.shared).end()
    }

    /// Claims made so far, by any handle.
    pub fn claims(&self) -> u64 {
        lock(&self.shared).claims
    }

    /// Whether anything was added to the log since this handle last looked.
    fn fenced(&self, inner: &Inner) -> Option<StorageError> {
        if inner.end() != self.known {
            return Some(StorageError::Fenced {
                reason: format!("the log ends at LSN {}, this writer knows {}", inner.end(), self.known),
            });
        }
        if inner.claims != self.seen_claims {
            return Some(StorageError::Fenced { reason: "another writer claimed the log".into() });
        }
        None
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A panic while holding it leaves the records consistent (every change is one push
    // or one drain), so a poisoned lock is still usable.
    shared.inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl CommandLog for SharedMemLog {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        check_batch(payloads)?;
        let first = next_lsns(self.last_lsn(), payloads.len())?;
        if self.pending.is_empty()
            && let Some(fenced) = self.fenced(&lock(&self.shared))
        {
            return Err(fenced);
        }
        self.pending.extend(payloads.iter().map(|p| p.to_vec()));
        Ok(first)
    }

    fn sync(&mut self) -> Result<Lsn, StorageError> {
        if self.pending.is_empty() {
            return Ok(self.known);
        }
        let mut inner = lock(&self.shared);
        if let Some(fenced) = self.fenced(&inner) {
            self.pending.clear();
            return Err(fenced);
        }
        inner.records.append(&mut self.pending);
        self.known = inner.end();
        drop(inner);
        self.shared.grew.notify_all();
        Ok(self.known)
    }

    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        let from = from.max(1);
        let inner = lock(&self.shared);
        let first_available = self.first.max(inner.base_lsn + 1);
        if from < first_available {
            return Err(StorageError::Released { from, first_available });
        }
        let records: Vec<_> = (from..=self.known)
            .map_while(|lsn| inner.get(lsn).map(|p| Ok(Record { lsn, payload: p.clone() })))
            .collect();
        Ok(Box::new(records.into_iter()))
    }

    fn last_lsn(&self) -> Lsn {
        self.known + self.pending.len() as u64
    }

    fn durable_lsn(&self) -> Lsn {
        self.known
    }

    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        if lsn > self.known + 1 {
            return Err(StorageError::InvalidLsn {
                lsn,
                reason: "records above the durable lsn cannot have been checkpointed",
            });
        }
        self.first = self.first.max(lsn);
        Ok(())
    }

    /// Drops what was appended and not synced and moves to the log's end, as the
    /// JetStream log does (its view is re-read from the stream): what other handles
    /// wrote since is then durable here. The claim counter is not refreshed, so a
    /// handle that others fenced stays fenced until it follows or claims.
    fn reopen(&mut self) -> Result<(), StorageError> {
        self.pending.clear();
        self.known = lock(&self.shared).end();
        Ok(())
    }

    fn follow(&mut self, after: Lsn, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        let deadline = Instant::now() + timeout;
        let mut inner = lock(&self.shared);
        loop {
            if after < inner.base_lsn {
                return Err(StorageError::Released { from: after + 1, first_available: inner.base_lsn + 1 });
            }
            if inner.end() > after {
                let last = inner.end().min(after + BATCH_RECORDS_MAX as u64);
                let records: Vec<Record> = (after + 1..=last)
                    .filter_map(|lsn| inner.get(lsn).map(|p| Record { lsn, payload: p.clone() }))
                    .collect();
                self.pending.clear();
                self.known = last;
                self.seen_claims = inner.claims;
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                self.known = self.known.max(after);
                self.seen_claims = inner.claims;
                return Ok(Vec::new());
            }
            inner = self
                .shared
                .grew
                .wait_timeout(inner, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn claim(&mut self) -> Result<(), StorageError> {
        let mut inner = lock(&self.shared);
        if inner.end() != self.known {
            return Err(StorageError::Fenced {
                reason: format!("the log ends at LSN {}: follow it to the end before claiming", inner.end()),
            });
        }
        inner.claims += 1;
        self.seen_claims = inner.claims;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    fn payloads(records: &[Record]) -> Vec<&[u8]> {
        records.iter().map(|r| r.payload.as_slice()).collect()
    }

    #[test]
    fn a_follower_sees_what_another_handle_synced_and_only_that() -> Result<(), StorageError> {
        let mut leader = SharedMemLog::new();
        let mut follower = leader.handle();
        leader.claim()?;
        assert_eq!(leader.append(&[b"a", b"b"])?, 1);
        assert!(follower.follow(0, NOW)?.is_empty(), "not synced yet");
        assert_eq!(leader.sync()?, 2);
        let got = follower.follow(0, NOW)?;
        assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(payloads(&got), vec![&b"a"[..], b"b"]);
        assert_eq!((follower.last_lsn(), follower.durable_lsn()), (2, 2));
        let read: Vec<_> = follower.read_from(2)?.collect::<Result<_, _>>()?;
        assert_eq!(payloads(&read), vec![&b"b"[..]]);
        assert!(follower.follow(2, NOW)?.is_empty());
        Ok(())
    }

    #[test]
    fn a_follow_waits_for_a_record_appended_meanwhile() -> Result<(), StorageError> {
        let mut leader = SharedMemLog::new();
        let mut follower = leader.handle();
        let writer = std::thread::spawn(move || -> Result<(), StorageError> {
            leader.append(&[b"x"])?;
            leader.sync().map(|_| ())
        });
        // Long enough never to expire in a test: it returns as soon as the record lands.
        let got = follower.follow(0, Duration::from_secs(600))?;
        writer.join().map_err(|_| StorageError::Unavailable { reason: "writer panicked".into() })??;
        assert_eq!(payloads(&got), vec![&b"x"[..]]);
        Ok(())
    }

    #[test]
    fn a_claim_fences_the_earlier_writer() -> Result<(), StorageError> {
        let mut old = SharedMemLog::new();
        let mut new = old.handle();
        old.claim()?;
        old.append(&[b"1"])?;
        old.sync()?;
        // The new writer must follow before it may claim.
        assert!(new.claim().is_err_and(|e| e.is_fenced()));
        assert_eq!(new.follow(0, NOW)?.len(), 1);
        new.claim()?;
        // The old one is refused, at append or at sync, and nothing of its batch lands.
        assert!(old.append(&[b"2"]).is_err_and(|e| e.is_fenced()));
        assert_eq!(old.end_lsn(), 1);
        new.append(&[b"2"])?;
        new.sync()?;
        new.append(&[b"3"])?; // appended locally before another writer claims...
        let mut late = new.handle();
        late.claim()?;
        assert!(new.sync().is_err_and(|e| e.is_fenced()), "...and refused there");
        assert_eq!((new.end_lsn(), new.last_lsn()), (2, 2));
        Ok(())
    }

    #[test]
    fn an_append_after_another_writers_record_is_fenced() -> Result<(), StorageError> {
        let mut a = SharedMemLog::new();
        let mut b = a.handle();
        b.append(&[b"b"])?;
        b.sync()?;
        assert!(a.append(&[b"a"]).is_err_and(|e| e.is_fenced()));
        assert_eq!(a.follow(0, NOW)?.len(), 1);
        assert_eq!(a.append(&[b"a"])?, 2, "after following, it writes after the end");
        Ok(())
    }

    #[test]
    fn a_purged_prefix_is_released() -> Result<(), StorageError> {
        let mut log = SharedMemLog::new();
        log.append(&[b"a", b"b", b"c"])?;
        log.sync()?;
        let mut behind = SharedMemLog { known: 0, seen_claims: 0, first: 1, ..log.handle() };
        log.purge_below(3);
        assert!(matches!(behind.follow(0, NOW), Err(StorageError::Released { from: 1, first_available: 3 })));
        assert!(matches!(log.handle_after(1), Err(StorageError::Released { from: 2, first_available: 3 })));
        let mut fresh = log.handle_after(2)?;
        assert_eq!(fresh.last_lsn(), 3);
        let read: Vec<_> = fresh.read_from(3)?.collect::<Result<_, _>>()?;
        assert_eq!(payloads(&read), vec![&b"c"[..]]);
        assert!(fresh.follow(3, NOW)?.is_empty());
        // A local release only moves this handle's start.
        fresh.release_below(4)?;
        assert!(fresh.read_from(3).is_err());
        assert!(log.read_from(3).is_ok());
        Ok(())
    }
}
