//! Rate limits: GCRA buckets keyed by (class, subject), from `[limits]`.
//!
//! Owns the limiter and its classes: trip creations per rider, accepts per driver,
//! requests per user, unauthenticated requests per IP. Each class allows `n` per minute
//! with a burst of the full `n`.
//!
//! Guarantees:
//! - a refusal says when the next request would pass (`Retry-After`, whole seconds ≥ 1);
//! - memory is bounded: at most [`MAX_KEYS`] buckets; a bucket whose theoretical arrival
//!   time has passed is equivalent to no bucket and is evicted when space is needed;
//! - time comes from an injected clock (milliseconds), so tests never sleep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::LimitsSection;

/// Most buckets kept at once.
pub const MAX_KEYS: usize = 200_000;

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `POST /v1/trips` per rider.
    TripCreate,
    /// `POST /v1/trips/{id}/accept` per driver.
    Accept,
    /// Every request of an authenticated user.
    User,
    /// Every unauthenticated request per client IP.
    Ip,
}

impl Class {
    /// The name for metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::TripCreate => "trip_create",
            Class::Accept => "accept",
            Class::User => "user",
            Class::Ip => "ip",
        }
    }
}

/// Whose bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user (raw id).
    User(u64),
    /// A client address.
    Ip(IpAddr),
}

/// A millisecond clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The limiter.
pub struct RateLimiter {
    per_min: [u32; 4],
    clock: Clock,
    /// Theoretical arrival time (ms) per bucket.
    buckets: Mutex<HashMap<(Class, Subject), u64>>,
    max_keys: usize,
}

impl RateLimiter {
    /// A limiter with `limits`' rates and `clock`.
    pub fn new(limits: &LimitsSection, clock: Clock) -> Self {
        Self::with_capacity(limits, clock, MAX_KEYS)
    }

    /// The same with a bound on buckets (tests).
    pub fn with_capacity(limits: &LimitsSection, clock: Clock, max_keys: usize) -> Self {
        RateLimiter {
            per_min: [limits.trip_create_per_min, limits.accept_per_min, limits.user_per_min, limits.ip_per_min],
            clock,
            buckets: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// A monotonic millisecond clock from now.
    pub fn monotonic() -> Clock {
        let start = std::time::Instant::now();
        Arc::new(move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn rate(&self, class: Class) -> u32 {
        self.per_min[match class {
            Class::TripCreate => 0,
            Class::Accept => 1,
            Class::User => 2,
            Class::Ip => 3,
        }]
        .max(1)
    }

    /// Counts one request; `Err(retry_after_s)` when over the limit (nothing counted).
    pub fn check(&self, class: Class, subject: Subject) -> Result<(), u64> {
        let now = (self.clock)();
        let n = u64::from(self.rate(class));
        let interval = 60_000 / n; // ms between requests at the steady rate
        let burst = interval * n; // a full minute's worth at once
        let mut buckets = self.buckets.lock();
        if buckets.len() >= self.max_keys && !buckets.contains_key(&(class, subject)) {
            buckets.retain(|_, tat| *tat > now);
            if buckets.len() >= self.max_keys {
                // Every bucket is busy: refuse rather than grow (the caller retries soon).
                return Err(1);
            }
        }
        let tat = buckets.get(&(class, subject)).copied().unwrap_or(now).max(now);
        let new_tat = tat + interval;
        if new_tat - now > burst {
            let wait_ms = new_tat - now - burst;
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        buckets.insert((class, subject), new_tat);
        Ok(())
    }

    /// Buckets held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn limiter(max_keys: usize) -> (RateLimiter, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_000_000));
        let n = Arc::clone(&now);
        let limits = LimitsSection { user_per_min: 6, ip_per_min: 60, ..LimitsSection::default() };
        (RateLimiter::with_capacity(&limits, Arc::new(move || n.load(Ordering::SeqCst)), max_keys), now)
    }

    #[test]
    fn a_full_burst_then_one_per_interval() {
        let (l, now) = limiter(100);
        let u = Subject::User(1);
        for _ in 0..6 {
            assert_eq!(l.check(Class::User, u), Ok(()));
        }
        assert_eq!(l.check(Class::User, u), Err(10), "6/min: the next slot is 10 s away");
        now.fetch_add(9_000, Ordering::SeqCst);
        assert_eq!(l.check(Class::User, u), Err(1));
        now.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(l.check(Class::User, u), Ok(()));
        assert!(l.check(Class::User, u).is_err());
        // Other subjects and classes have their own buckets.
        assert_eq!(l.check(Class::User, Subject::User(2)), Ok(()));
        assert_eq!(l.check(Class::Accept, u), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_are_evicted() {
        let (l, now) = limiter(3);
        for i in 0..3 {
            l.check(Class::Ip, Subject::User(i)).unwrap();
        }
        assert_eq!(l.check(Class::Ip, Subject::User(9)), Err(1), "full of busy buckets");
        now.fetch_add(2_000, Ordering::SeqCst); // 60/min: each bucket is idle after 1 s
        assert_eq!(l.check(Class::Ip, Subject::User(9)), Ok(()));
        assert!(l.len() <= 3);
    }
}
