//! Rate limits: GCRA buckets keyed by (class, subject), from `[limits]`.
//!
//! Owns the limiter and its classes: trip creations per rider, accepts per driver,
//! requests per user, unauthenticated requests per IP. Each class allows `n` per minute
//! with a burst of the full `n`.
//!
//! Guarantees:
//! - a refusal says when the next request would pass (`Retry-After`, whole seconds ≥ 1);
//! - memory is bounded: each class has its own map of at most [`MAX_KEYS`] buckets, so a
//!   flood of unauthenticated addresses never evicts or crowds out users' buckets; a
//!   bucket whose theoretical arrival time has passed is equivalent to no bucket and is
//!   evicted when space is needed; when every bucket is busy, a new subject is refused;
//! - the cost of a full map is bounded and amortised: a class is split into [`SHARDS`]
//!   maps under their own locks; each remembers a lower bound of its earliest expiry,
//!   so a full shard refuses a new subject in O(1) until a bucket can have expired, and
//!   a sweep (O(shard), at most [`MAX_KEYS`] / [`SHARDS`] buckets) then evicts at least
//!   one idle bucket or learns the exact next expiry — never a scan of every bucket per
//!   request under one lock;
//! - IPv6 clients are keyed by their /64 (one customer's usual allocation: a client
//!   rotating addresses inside it shares one bucket); IPv4-mapped IPv6 addresses count
//!   as the IPv4 address;
//! - time comes from an injected clock (milliseconds), so tests never sleep.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::LimitsSection;

/// Most buckets kept at once per class.
pub const MAX_KEYS: usize = 200_000;

/// Shards of each class's map (each under its own lock).
pub const SHARDS: usize = 64;

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

    fn index(self) -> usize {
        match self {
            Class::TripCreate => 0,
            Class::Accept => 1,
            Class::User => 2,
            Class::Ip => 3,
        }
    }
}

/// Whose bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user (raw id).
    User(u64),
    /// A client address (IPv6: its /64, see [`Subject::key`]).
    Ip(IpAddr),
}

impl Subject {
    /// The bucket's key: an IPv6 address cut to its /64 prefix, an IPv4-mapped one to
    /// its IPv4 address; anything else unchanged.
    pub fn key(self) -> Subject {
        match self {
            Subject::Ip(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => Subject::Ip(IpAddr::V4(v4)),
                None => Subject::Ip(IpAddr::V6(Ipv6Addr::from(u128::from(a) & !u128::from(u64::MAX)))),
            },
            other => other,
        }
    }
}

/// A millisecond clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// One lock's worth of buckets.
struct Shard {
    /// Theoretical arrival time (ms) per subject.
    tats: HashMap<Subject, u64>,
    /// At most the earliest `tat` of `tats` (`u64::MAX` when empty): before it, no bucket
    /// is idle and a sweep would evict nothing.
    next_expiry: u64,
    /// Sweeps done (tests check they are amortised).
    sweeps: u64,
}

impl Shard {
    fn new() -> Self {
        Shard { tats: HashMap::new(), next_expiry: u64::MAX, sweeps: 0 }
    }

    /// Makes room for one more bucket if an idle one can go; `false` when all are busy.
    fn make_room(&mut self, now: u64, cap: usize) -> bool {
        if self.tats.len() < cap {
            return true;
        }
        if now < self.next_expiry {
            return false; // nothing can have expired yet: O(1)
        }
        self.sweeps += 1;
        self.tats.retain(|_, tat| *tat > now);
        self.next_expiry = self.tats.values().copied().min().unwrap_or(u64::MAX);
        self.tats.len() < cap
    }
}

/// The limiter.
pub struct RateLimiter {
    per_min: [u32; 4],
    clock: Clock,
    /// Per class, its shards.
    classes: [Box<[Mutex<Shard>]>; 4],
    /// Buckets per shard.
    shard_cap: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    /// A limiter with `limits`' rates and `clock`.
    pub fn new(limits: &LimitsSection, clock: Clock) -> Self {
        Self::with_capacity(limits, clock, MAX_KEYS, SHARDS)
    }

    /// The same with a bound on buckets per class, split into `shards` (tests).
    pub fn with_capacity(limits: &LimitsSection, clock: Clock, max_keys: usize, shards: usize) -> Self {
        let shards = shards.clamp(1, max_keys.max(1));
        let class = || (0..shards).map(|_| Mutex::new(Shard::new())).collect::<Box<[_]>>();
        RateLimiter {
            per_min: [limits.trip_create_per_min, limits.accept_per_min, limits.user_per_min, limits.ip_per_min],
            clock,
            classes: [class(), class(), class(), class()],
            shard_cap: (max_keys / shards).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// A monotonic millisecond clock from now.
    pub fn monotonic() -> Clock {
        let start = std::time::Instant::now();
        Arc::new(move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn shard(&self, class: Class, subject: &Subject) -> &Mutex<Shard> {
        let shards = &self.classes[class.index()];
        // The hash is keyed per process, so a client cannot aim at one shard.
        let h = self.hasher.hash_one(subject);
        &shards[usize::try_from(h % shards.len() as u64).unwrap_or(0)]
    }

    /// Counts one request; `Err(retry_after_s)` when over the limit (nothing counted).
    pub fn check(&self, class: Class, subject: Subject) -> Result<(), u64> {
        let subject = subject.key();
        let now = (self.clock)();
        let n = u64::from(self.per_min[class.index()].max(1));
        let interval = 60_000 / n; // ms between requests at the steady rate
        let burst = interval * n; // a full minute's worth at once
        let mut shard = self.shard(class, &subject).lock();
        let (tat, new) = match shard.tats.get(&subject).copied() {
            Some(t) => (t.max(now), false),
            // Every bucket is busy: refuse rather than grow (the caller retries soon).
            None if !shard.make_room(now, self.shard_cap) => return Err(1),
            None => (now, true),
        };
        let new_tat = tat + interval;
        if new_tat - now > burst {
            let wait_ms = new_tat - now - burst;
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        shard.tats.insert(subject, new_tat);
        if new {
            // Updates only move a bucket's expiry later; a new one may be the earliest.
            shard.next_expiry = shard.next_expiry.min(new_tat);
        }
        Ok(())
    }

    /// Buckets held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.classes.iter().flat_map(|c| c.iter()).map(|s| s.lock().tats.len()).sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn sweeps(&self) -> u64 {
        self.classes.iter().flat_map(|c| c.iter()).map(|s| s.lock().sweeps).sum()
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
        (RateLimiter::with_capacity(&limits, Arc::new(move || n.load(Ordering::SeqCst)), max_keys, 1), now)
    }

    fn ip(s: &str) -> Subject {
        Subject::Ip(s.parse().unwrap())
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

    #[test]
    fn a_full_map_of_busy_buckets_is_not_swept_on_every_new_subject() {
        let (l, now) = limiter(100);
        for i in 0..100 {
            l.check(Class::Ip, Subject::User(i)).unwrap();
        }
        // Thousands of new subjects while every bucket is busy: one sweep learns when the
        // first can expire; the rest are refused without touching the map.
        for i in 1_000..5_000 {
            assert_eq!(l.check(Class::Ip, Subject::User(i)), Err(1));
        }
        assert_eq!(l.sweeps(), 0, "the lower bound of the earliest expiry was enough");
        now.fetch_add(1_000, Ordering::SeqCst); // the first buckets are idle now
        for i in 5_000..5_100 {
            assert_eq!(l.check(Class::Ip, Subject::User(i)), Ok(()));
        }
        assert_eq!(l.sweeps(), 1, "one sweep evicted every idle bucket at once");
        assert_eq!(l.check(Class::Ip, Subject::User(9_999)), Err(1));
        assert_eq!(l.sweeps(), 1);
    }

    #[test]
    fn addresses_flooding_the_ip_class_never_evict_or_crowd_out_users() {
        let (l, _now) = limiter(10);
        for i in 0..6 {
            l.check(Class::User, Subject::User(i)).unwrap();
        }
        for i in 0..50u8 {
            let _ = l.check(Class::Ip, ip(&format!("10.0.0.{i}")));
        }
        assert_eq!(l.check(Class::Ip, ip("10.0.1.1")), Err(1), "the IP class is full");
        // Users still have their buckets (one request left of 6 each would be the 2nd).
        for i in 0..6 {
            assert_eq!(l.check(Class::User, Subject::User(i)), Ok(()), "user {i} kept its bucket");
        }
        assert_eq!(l.check(Class::User, Subject::User(77)), Ok(()), "and new users get one");
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
        let (l, _now) = limiter(100);
        for i in 0..60 {
            // Addresses rotating inside one /64.
            assert_eq!(l.check(Class::Ip, ip(&format!("2001:db8:1:2::{i:x}"))), Ok(()));
        }
        assert!(l.check(Class::Ip, ip("2001:db8:1:2:ffff::1")).is_err(), "the /64 spent its 60");
        assert_eq!(l.check(Class::Ip, ip("2001:db8:1:3::1")), Ok(()), "another /64 has its own");
        assert_eq!(ip("::ffff:192.0.2.1").key(), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8::1").key(), ip("2001:db8::"));
        assert_eq!(ip("192.0.2.1").key(), ip("192.0.2.1"));
    }

    #[test]
    fn shards_together_hold_the_class_bound() {
        let now = Arc::new(AtomicU64::new(0));
        let n = Arc::clone(&now);
        let limits = LimitsSection::default();
        let l = RateLimiter::with_capacity(&limits, Arc::new(move || n.load(Ordering::SeqCst)), 1_000, 8);
        let admitted = (0..5_000).filter(|i| l.check(Class::Ip, Subject::User(*i)).is_ok()).count();
        assert!(admitted <= 1_000 && l.len() <= 1_000, "{admitted}");
        assert!(admitted > 500, "shards fill roughly evenly: {admitted}");
    }
}
