//! [`Stats`]: the counters and histograms the writer keeps for operators.
//!
//! Guarantees: recording costs the writer a few relaxed atomic adds, never a lock; a
//! reader sees each counter monotonic (relaxed ordering: counters are not mutually
//! consistent at an instant).

use std::sync::atomic::AtomicU64;

use crate::histogram::Histogram;
use crate::journal::CheckpointStats;

/// Counters the writer keeps for operators (read with relaxed ordering).
#[derive(Debug)]
pub struct Stats {
    /// Commands applied.
    pub applied: AtomicU64,
    /// Commands refused by the state machine.
    pub refused: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Commands answered `Overloaded` because the queue was full.
    pub overloaded: AtomicU64,
    /// Positions refused as implausible jumps (suspected spoofing).
    pub spoofing_suspected: AtomicU64,
    /// Position reports coalesced (held back, not logged) because they came within the
    /// driver's minimum interval of the last published one.
    pub locations_coalesced: AtomicU64,
    /// Size of the last batch.
    pub last_batch: AtomicU64,
    /// Syncs of the log (one per batch that wrote records).
    pub syncs: AtomicU64,
    /// Duration of the last sync, in microseconds.
    pub last_sync_us: AtomicU64,
    /// Longest sync so far, in microseconds.
    pub max_sync_us: AtomicU64,
    /// Batches that could not be made durable (each put the engine in read-only mode).
    pub failed_batches: AtomicU64,
    /// Checkpoints.
    pub checkpoints: CheckpointStats,
    /// Every sync's duration, microseconds ([`crate::histogram::FSYNC_BOUNDS_US`]).
    pub sync_us: Histogram,
    /// Every committed batch's size: the commands answered with it
    /// ([`crate::histogram::BATCH_BOUNDS`]).
    pub batch_commands: Histogram,
    // ----- issue 21 -----
    /// Records a cluster follower applied from the shared log (the leader's commits).
    pub followed: AtomicU64,
    /// Why a cluster follower stopped following (a record that does not decode or
    /// apply, or a log purged past it): it keeps answering reads of the state as of the
    /// record before, never a state that differs from the log. `None` while it follows.
    pub follow_error: parking_lot::Mutex<Option<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            applied: AtomicU64::default(),
            refused: AtomicU64::default(),
            batches: AtomicU64::default(),
            overloaded: AtomicU64::default(),
            spoofing_suspected: AtomicU64::default(),
            locations_coalesced: AtomicU64::default(),
            last_batch: AtomicU64::default(),
            syncs: AtomicU64::default(),
            last_sync_us: AtomicU64::default(),
            max_sync_us: AtomicU64::default(),
            failed_batches: AtomicU64::default(),
            checkpoints: CheckpointStats::default(),
            sync_us: Histogram::new(crate::histogram::FSYNC_BOUNDS_US),
            batch_commands: Histogram::new(crate::histogram::BATCH_BOUNDS),
            followed: AtomicU64::default(),
            follow_error: parking_lot::Mutex::new(None),
        }
    }
}
