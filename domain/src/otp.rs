//! One-time sign-in codes: the per-phone record, its send limits and its lockout.
//!
//! Owns [`OtpRecord`], the engine's memory of one phone's codes: the keyed hash of the
//! code in force (never the code: the server generates it, sends it, and hands the
//! engine only `HMAC(secret, code)`), when it expires, how many codes were sent in the
//! last minute, hour and day, and the wrong attempts. The record lives in the engine's
//! state, so the limits and the lockout survive a restart (a brute-forcer gains nothing
//! by crashing the server).
//!
//! Guarantees (API.md "Accounts and auth"):
//! - at most 1 code a minute, 5 an hour and 10 a day per phone (sliding windows over
//!   the send times, which are kept); one more is `rate_limited` with the seconds
//!   until the oldest send leaves the window;
//! - a code is good for [`CODE_TTL_S`] seconds and for one successful sign-in;
//! - after [`MAX_WRONG`] wrong codes the phone is locked for [`LOCK_S`] seconds: every
//!   attempt then, even with the right code, is `rate_limited` and does not count;
//! - hashes are compared in constant time ([`constant_time_eq`]), and every attempt a
//!   lockout does not refuse makes exactly one comparison: with a code in force, with
//!   its code used or expired, or for a phone with no record at all ([`verify_absent`],
//!   against a dummy), so the time of an answer does not tell whether a code is pending.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::user::Role;

/// Seconds a code stays valid (`expires_in_s` of API.md).
pub const CODE_TTL_S: u32 = 300;
/// Wrong codes before the lockout.
pub const MAX_WRONG: u8 = 5;
/// Seconds a phone stays locked.
pub const LOCK_S: u32 = 60 * 60;
/// Send limits: (window in seconds, sends allowed in it).
pub const SEND_LIMITS: [(u32, usize); 3] = [(60, 1), (60 * 60, 5), (24 * 60 * 60, 10)];

/// One phone's codes and attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpRecord {
    /// The role the phone signs in as with the current code.
    pub role: Role,
    /// `HMAC(secret, code)` of the code in force; `None` once used.
    pub code_hash: Option<[u8; 32]>,
    /// When the code in force stops working.
    pub expires_at: Timestamp,
    /// Send times within the longest window, oldest first (at most 10).
    pub sent: Vec<Timestamp>,
    /// Wrong codes since the last success or lockout.
    pub wrong: u8,
    /// Locked until then.
    pub locked_until: Option<Timestamp>,
}

impl OtpRecord {
    /// A record with no code yet.
    pub fn new(role: Role) -> Self {
        OtpRecord {
            role,
            code_hash: None,
            expires_at: Timestamp::from_millis(0),
            sent: Vec::new(),
            wrong: 0,
            locked_until: None,
        }
    }

    /// Whether the record can be forgotten at `now` (nothing in it still matters).
    pub fn is_idle(&self, now: Timestamp) -> bool {
        let day = SEND_LIMITS[2].0;
        self.locked_until.is_none_or(|t| t <= now) && self.sent.last().is_none_or(|&t| t.plus_secs(day) <= now)
    }

    fn check_lock(&self, now: Timestamp) -> Result<()> {
        match self.locked_until {
            Some(until) if until > now => Err(Error::RateLimited {
                what: "this phone is locked after too many wrong codes",
                retry_after_s: secs_until(now, until),
            }),
            _ => Ok(()),
        }
    }

    /// Records a new code sent at `now` for `role`, if the limits allow.
    pub fn issue(&mut self, role: Role, code_hash: [u8; 32], now: Timestamp) -> Result<()> {
        self.check_lock(now)?;
        let day = SEND_LIMITS[2].0;
        let kept: Vec<Timestamp> = self.sent.iter().copied().filter(|t| t.plus_secs(day) > now).collect();
        for (window, allowed) in SEND_LIMITS {
            let recent: Vec<Timestamp> = kept.iter().copied().filter(|t| t.plus_secs(window) > now).collect();
            if recent.len() >= allowed {
                // The send that frees a slot is the oldest of the `allowed` newest.
                let frees = recent[recent.len() - allowed];
                return Err(Error::RateLimited {
                    what: "too many codes sent to this phone",
                    retry_after_s: secs_until(now, frees.plus_secs(window)),
                });
            }
        }
        self.sent = kept;
        self.sent.push(now);
        self.role = role;
        self.code_hash = Some(code_hash);
        self.expires_at = now.plus_secs(CODE_TTL_S);
        Ok(())
    }

    /// Checks a code at `now`. `Ok(role)` consumes the code; a wrong one counts and the
    /// fifth locks the phone. Callers must keep the record changes even when this errs
    /// (a wrong attempt must count): see [`Attempt`].
    pub fn verify(&mut self, code_hash: &[u8; 32], now: Timestamp) -> Attempt {
        if let Err(e) = self.check_lock(now) {
            return Attempt::Refused(e);
        }
        // One comparison whether a code is in force or not (the same work either way).
        let matches = constant_time_eq(self.code_hash.as_ref().unwrap_or(&NO_CODE), code_hash);
        let good = self.code_hash.is_some() && matches && self.expires_at > now;
        if good {
            self.code_hash = None;
            self.wrong = 0;
            return Attempt::Good(self.role);
        }
        self.wrong = self.wrong.saturating_add(1);
        if self.wrong >= MAX_WRONG {
            self.wrong = 0;
            self.code_hash = None;
            self.locked_until = Some(now.plus_secs(LOCK_S));
        }
        Attempt::Wrong
    }
}

/// What an attempt is compared with when no code is in force (the result is ignored).
const NO_CODE: [u8; 32] = [0; 32];

/// An attempt for a phone with no record: wrong, after the comparison a record would
/// have made, so it takes the same work as one for a phone with a code pending.
pub fn verify_absent(code_hash: &[u8; 32]) -> Attempt {
    let _ = constant_time_eq(&NO_CODE, code_hash);
    Attempt::Wrong
}

/// What a sign-in attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The code was right: sign in as this role.
    Good(Role),
    /// Wrong or expired (counted): `invalid_otp`.
    Wrong,
    /// Locked: nothing was counted.
    Refused(Error),
}

fn secs_until(now: Timestamp, then: Timestamp) -> u64 {
    let ms = then.millis_since(now).max(0) as u64;
    ms.div_ceil(1000).max(1)
}

/// Whether `a == b`, in time independent of where they differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    #[cfg(test)]
    COMPARISONS.with(|c| c.set(c.get() + 1));
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
thread_local! {
    /// Test hook: the comparisons of code hashes made on this thread.
    static COMPARISONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(T0 + s * 1000)
    }

    fn limited(r: Result<()>) -> u64 {
        match r {
            Err(Error::RateLimited { retry_after_s, .. }) => retry_after_s,
            other => panic!("expected rate_limited, got {other:?}"),
        }
    }

    #[test]
    fn one_a_minute_five_an_hour_ten_a_day() {
        let mut r = OtpRecord::new(Role::Rider);
        r.issue(Role::Rider, [1; 32], at(0)).unwrap();
        assert_eq!(limited(r.issue(Role::Rider, [1; 32], at(30))), 30);
        for m in 1..5 {
            r.issue(Role::Rider, [1; 32], at(60 * m)).unwrap();
        }
        // Five in the hour: the sixth waits for the first to leave the hour.
        assert_eq!(limited(r.issue(Role::Rider, [1; 32], at(300))), 3300);
        for h in 1..=5 {
            r.issue(Role::Rider, [1; 32], at(3600 * h + 300)).unwrap();
        }
        // Ten in the day.
        let wait = limited(r.issue(Role::Rider, [1; 32], at(6 * 3600)));
        assert_eq!(wait, 86_400 - 6 * 3600);
        r.issue(Role::Rider, [1; 32], at(86_400)).unwrap();
    }

    #[test]
    fn a_code_works_once_and_not_after_it_expires() {
        let mut r = OtpRecord::new(Role::Driver);
        r.issue(Role::Driver, [7; 32], at(0)).unwrap();
        assert_eq!(r.verify(&[7; 32], at(10)), Attempt::Good(Role::Driver));
        assert_eq!(r.verify(&[7; 32], at(11)), Attempt::Wrong);
        r.issue(Role::Driver, [8; 32], at(100)).unwrap();
        assert_eq!(r.verify(&[8; 32], at(100 + i64::from(CODE_TTL_S))), Attempt::Wrong);
    }

    #[test]
    fn five_wrong_codes_lock_the_phone_even_for_the_right_code() {
        let mut r = OtpRecord::new(Role::Rider);
        r.issue(Role::Rider, [7; 32], at(0)).unwrap();
        for _ in 0..4 {
            assert_eq!(r.verify(&[0; 32], at(1)), Attempt::Wrong);
        }
        assert_eq!(r.verify(&[0; 32], at(2)), Attempt::Wrong);
        assert!(matches!(r.verify(&[7; 32], at(3)), Attempt::Refused(Error::RateLimited { retry_after_s: 3599, .. })));
        assert!(matches!(r.issue(Role::Rider, [9; 32], at(120)), Err(Error::RateLimited { .. })));
        // An hour later: a new code works.
        r.issue(Role::Rider, [9; 32], at(3602)).unwrap();
        assert_eq!(r.verify(&[9; 32], at(3603)), Attempt::Good(Role::Rider));
    }

    /// Finding 10d of issue 24: checking a code for a phone with no code pending did less
    /// work (no comparison) than for a phone with one, a timing difference. Every path of
    /// an attempt that is not refused by a lockout compares the hash exactly once.
    #[test]
    fn finding_10d_verifying_a_code_does_the_same_work_with_or_without_a_pending_code() {
        use crate::command::{Actor, Command};
        let comparisons = || COMPARISONS.with(std::cell::Cell::get);
        let mut w = crate::testkit::World::new(crate::command::DispatchRules::default());
        let verify = |phone: &str, code: u8| Command::VerifyOtp {
            phone: phone.to_owned(),
            code_hash: [code; 32],
            new_user_id: None,
        };
        w.run(
            Actor::System,
            Command::IssueOtp { phone: "+201011110001".into(), role: Role::Rider, code_hash: [7; 32] },
        )
        .unwrap();
        let work = |w: &mut crate::testkit::World, phone: &str, code: u8| {
            let before = comparisons();
            let _ = w.run(Actor::System, verify(phone, code));
            comparisons() - before
        };
        let pending_wrong = work(&mut w, "+201011110001", 9);
        let pending_right = work(&mut w, "+201011110001", 7);
        let used = work(&mut w, "+201011110001", 7);
        let none = work(&mut w, "+201099990000", 7);
        assert_eq!(
            (pending_wrong, pending_right, used, none),
            (1, 1, 1, 1),
            "one comparison whether a code is pending, used or was never sent"
        );
        w.finish();
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(&[3; 32], &[3; 32]));
        let mut b = [3; 32];
        b[31] = 4;
        assert!(!constant_time_eq(&[3; 32], &b));
    }
}
