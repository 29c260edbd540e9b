//! Time as the engine sees it: the domain's [`Timestamp`], [`Clock`] and
//! [`ManualClock`], and the operating system's [`SystemClock`], which only the runtime
//! may read (the domain never reads a clock: `apply` is given the writer's reading).

pub use dispatch_domain::clock::*;

use std::time::{SystemTime, UNIX_EPOCH};

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_after_the_epoch() {
        assert!(SystemClock.now() > Timestamp::from_millis(1_600_000_000_000));
    }
}
