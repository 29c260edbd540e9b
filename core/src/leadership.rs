//! Who may write, when several nodes share one command log (issue 21): the handshake
//! between the lease keeper (dispatch-cluster, which holds or watches the leader lease)
//! and the engine's writer thread.
//!
//! Owns [`Leadership`]: a few atomics, written by one side and read by the other. The
//! lease keeper *grants* (it won the lease) and *revokes* (the lease is lost or lapsed);
//! the writer *leads* only after a grant and a successful
//! [`CommandLog::claim`](dispatch_storage::CommandLog::claim), and stops leading at once
//! on a revoke or when the log fences one of its appends. The writer reports how far it
//! has applied the log, so the lease keeper only bids for the lease once this node has
//! applied the whole stream.
//!
//! Guarantees: [`Leadership::is_leader`] is true only while the writer leads (it answers
//! writes), never merely because a lease was granted; a revoke is seen by the writer
//! before its next commit; an engine without a `Leadership` (one node on its local WAL)
//! always leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dispatch_storage::Lsn;

/// The shared flags between the lease keeper and the writer. Cheap to read from any
/// thread (the server reads them on every write request).
#[derive(Debug, Default)]
pub struct Leadership {
    /// The lease keeper holds the lease: the writer may claim the log and lead.
    granted: AtomicBool,
    /// The term of the last grant (a counter the lease keeper increments per won lease).
    term: AtomicU64,
    /// The writer leads: it has claimed the log under the current grant.
    leading: AtomicBool,
    /// The last LSN the writer applied (leader or follower).
    applied_lsn: AtomicU64,
    /// The last LSN the log is known to hold (the stream's end as last seen).
    log_end_lsn: AtomicU64,
    /// The writer's last look at the log found nothing it had not applied.
    caught_up: AtomicBool,
    /// The record time (`Timestamp` milliseconds) of the last applied record.
    applied_at_ms: AtomicU64,
    /// How many times this node became leader, and stepped down (for metrics).
    elections_won: AtomicU64,
    step_downs: AtomicU64,
}

impl Leadership {
    /// A node that starts as a follower.
    pub fn new() -> Self {
        Self::default()
    }

    // ----- the lease keeper's side -----

    /// The lease is this node's (term `term`): the writer should claim the log and lead.
    pub fn grant(&self, term: u64) {
        self.term.store(term, Ordering::SeqCst);
        self.granted.store(true, Ordering::SeqCst);
    }

    /// The lease is lost or lapsed: the writer stops leading before its next commit.
    pub fn revoke(&self) {
        self.granted.store(false, Ordering::SeqCst);
    }

    /// Whether the lease keeper holds the lease.
    pub fn is_granted(&self) -> bool {
        self.granted.load(Ordering::SeqCst)
    }

    /// The term of the last grant.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    // ----- the writer's side -----

    /// The writer claimed the log: it leads from now on.
    pub fn set_leading(&self, leading: bool) {
        let was = self.leading.swap(leading, Ordering::SeqCst);
        match (was, leading) {
            (false, true) => {
                self.elections_won.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.step_downs.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// The writer applied every record up to `lsn`, the last one recorded at `at_ms`.
    pub fn set_applied(&self, lsn: Lsn, at_ms: u64) {
        self.applied_lsn.store(lsn, Ordering::SeqCst);
        self.applied_at_ms.store(at_ms, Ordering::Relaxed);
        self.log_end_lsn.fetch_max(lsn, Ordering::SeqCst);
    }

    /// The writer saw the log end at `lsn`; `caught_up` when it has applied all of it.
    pub fn set_log_end(&self, lsn: Lsn, caught_up: bool) {
        self.log_end_lsn.store(lsn, Ordering::SeqCst);
        self.caught_up.store(caught_up, Ordering::SeqCst);
    }

    // ----- anyone's side -----

    /// Whether this node leads: it takes writes.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// The last LSN this node applied.
    pub fn applied_lsn(&self) -> Lsn {
        self.applied_lsn.load(Ordering::SeqCst)
    }

    /// The last LSN the log is known to hold.
    pub fn log_end_lsn(&self) -> Lsn {
        self.log_end_lsn.load(Ordering::SeqCst)
    }

    /// Whether the writer's last look at the log found nothing left to apply.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// The record time (milliseconds since the epoch) of the last applied record, 0
    /// before the first.
    pub fn applied_at_ms(&self) -> u64 {
        self.applied_at_ms.load(Ordering::Relaxed)
    }

    /// Times this node became leader, and stepped down.
    pub fn transitions(&self) -> (u64, u64) {
        (self.elections_won.load(Ordering::Relaxed), self.step_downs.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_alone_does_not_make_a_leader() {
        let l = Leadership::new();
        l.grant(1);
        assert!(l.is_granted());
        assert!(!l.is_leader(), "leading needs the writer's claim, not only the lease");
        l.set_leading(true);
        assert!(l.is_leader());
        l.revoke();
        assert!(!l.is_granted());
        l.set_leading(false);
        assert_eq!(l.transitions(), (1, 1));
    }

    #[test]
    fn the_log_end_never_trails_what_was_applied() {
        let l = Leadership::new();
        l.set_applied(10, 5);
        assert_eq!(l.log_end_lsn(), 10);
        l.set_log_end(12, false);
        assert_eq!((l.applied_lsn(), l.log_end_lsn(), l.is_caught_up()), (10, 12, false));
    }
}
