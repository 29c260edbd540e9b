//! How many WebSockets may be open: in all, and per user. A socket is claimed at the
//! upgrade, before the `101` is sent, and released when it closes (or the upgrade fails).
//!
//! Why: one rider opened 120 sockets in 0.1 s and nine riders took down a server with
//! 1,024 descriptors. Each socket holds a descriptor, an outbox and two tasks.
//!
//! Guarantees:
//! - a rider or a driver holds at most `[server] ws_per_user` sockets (default 5: a phone
//!   and a reconnect racing the old socket, with room to spare), staff (the console, several
//!   tabs) at most `ws_per_staff` (default 50; the bootstrap admin is one holder); one
//!   more is refused with `429 rate_limited` and `Retry-After` ([`RETRY_AFTER_S`]);
//! - at most `max_total` sockets are open at once (`crate::ws::MAX_SOCKETS`, lowered to
//!   the connection budget of `crate::admission` when descriptors are fewer); one more is
//!   `503 overloaded`;
//! - the check and the claim are one step under one lock, so a burst of upgrades cannot
//!   slip past the cap between them; memory is one entry per user with a socket open.

use std::collections::HashMap;
use std::sync::Arc;

use dispatch_core::UserId;
use parking_lot::Mutex;

use crate::auth::Principal;
use crate::http::ApiError;

/// `Retry-After` of an upgrade refused for the per-user cap: a socket of the user must
/// close first, which a client cannot hurry; a few seconds keeps a retry loop cheap.
pub const RETRY_AFTER_S: u64 = 5;

/// Who a socket counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    User(UserId),
    BootstrapAdmin,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_holder: HashMap<Holder, usize>,
}

/// The caps and the sockets counted against them.
pub struct SocketCaps {
    max_total: usize,
    per_user: usize,
    per_staff: usize,
    counts: Mutex<Counts>,
}

/// One open (or opening) socket's place; released on drop.
pub struct SocketClaim {
    caps: Arc<SocketCaps>,
    holder: Holder,
}

impl SocketCaps {
    /// At most `max_total` sockets, `per_user` per rider or driver, `per_staff` per staff
    /// member.
    pub fn new(max_total: usize, per_user: usize, per_staff: usize) -> Self {
        SocketCaps { max_total, per_user, per_staff, counts: Mutex::new(Counts::default()) }
    }

    /// The cap of `who`.
    pub fn cap_of(&self, who: Principal) -> usize {
        if who.is_staff() { self.per_staff } else { self.per_user }
    }

    /// Claims a socket for `who`: `429 rate_limited` over the user's cap, `503 overloaded`
    /// over the total.
    pub fn claim(self: &Arc<Self>, who: Principal) -> Result<SocketClaim, ApiError> {
        let holder = who.user_id().map_or(Holder::BootstrapAdmin, Holder::User);
        let cap = self.cap_of(who);
        let mut c = self.counts.lock();
        if c.total >= self.max_total {
            return Err(ApiError::new("overloaded", "too many open sockets; try again shortly"));
        }
        let held = c.by_holder.entry(holder).or_default();
        if *held >= cap {
            return Err(ApiError::rate_limited(
                RETRY_AFTER_S,
                &format!("at most {cap} open WebSockets per user: close one first"),
            ));
        }
        *held += 1;
        c.total += 1;
        Ok(SocketClaim { caps: Arc::clone(self), holder })
    }

    /// Sockets claimed now.
    pub fn total(&self) -> usize {
        self.counts.lock().total
    }
}

impl Drop for SocketClaim {
    fn drop(&mut self) {
        let mut c = self.caps.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(held) = c.by_holder.get_mut(&self.holder) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                c.by_holder.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dispatch_core::Role;

    use super::*;

    fn user(id: u64, role: Role) -> Principal {
        Principal::user(UserId::from_raw(id).unwrap(), role)
    }

    #[test]
    fn each_user_has_a_cap_and_staff_a_higher_one() {
        let caps = Arc::new(SocketCaps::new(100, 2, 3));
        let rider = user(1, Role::Rider);
        let (a, _b) = (caps.claim(rider).unwrap(), caps.claim(rider).unwrap());
        let refused = caps.claim(rider).err().unwrap();
        assert_eq!((refused.status.as_u16(), refused.code, refused.retry_after_s), (429, "rate_limited", Some(5)));
        // Another user, and staff with their own cap.
        let _other = caps.claim(user(2, Role::Driver)).unwrap();
        let support = user(3, Role::Support);
        let staff: Vec<_> = (0..3).map(|_| caps.claim(support).unwrap()).collect();
        assert!(caps.claim(support).is_err());
        let admin: Vec<_> = (0..3).map(|_| caps.claim(Principal::BootstrapAdmin).unwrap()).collect();
        assert!(caps.claim(Principal::BootstrapAdmin).is_err());
        // A closed socket gives its place back.
        drop(a);
        let _again = caps.claim(rider).unwrap();
        assert_eq!(caps.total(), 2 + 1 + 3 + 3);
        drop((staff, admin));
        assert_eq!(caps.total(), 3);
        assert_eq!(caps.counts.lock().by_holder.len(), 2, "no entry is left for users without sockets");
    }

    #[test]
    fn the_total_is_capped_whoever_asks() {
        let caps = Arc::new(SocketCaps::new(2, 5, 5));
        let _held: Vec<_> = (1..=2).map(|i| caps.claim(user(i, Role::Rider)).unwrap()).collect();
        let refused = caps.claim(user(9, Role::Rider)).err().unwrap();
        assert_eq!((refused.status.as_u16(), refused.code), (503, "overloaded"));
    }
}
