//! Time as the engine sees it: an injected [`Clock`] read only by the writer.
//!
//! The domain defines the instant, the trait and the [`ManualClock`] of tests; the
//! operating system's clock (`dispatch_core::clock::SystemClock`) is the runtime's.
//!
//! `apply` never reads a clock; the writer reads it once per command and records the
//! reading in the command's log record, so replay sees the same instants. Tests use
//! [`ManualClock`] and move time by hand: no test waits on the wall clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

/// An instant: milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant plus `seconds` (saturating: an absurd duration cannot wrap time).
    pub const fn plus_secs(self, seconds: u32) -> Self {
        Self(self.0.saturating_add(seconds as i64 * 1000))
    }

    /// This instant plus `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}ms", self.0)
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.0)))
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `s` seconds.
    pub fn advance_secs(&self, s: i64) {
        self.advance_millis(s * 1000);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_millis(1_000));
        let c2 = c.clone();
        c.advance_secs(2);
        assert_eq!(c2.now(), Timestamp::from_millis(3_000));
        assert_eq!(c2.now().millis_since(Timestamp::from_millis(1_000)), 2_000);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::from_millis(i64::MAX).plus_secs(10), Timestamp::from_millis(i64::MAX));
        assert_eq!(Timestamp::from_millis(-1).as_secs(), -1);
    }
}
