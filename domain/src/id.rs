//! Typed, unguessable identifiers, and the source they are drawn from.
//!
//! Every id is 64 random bits (never a counter) behind a type of its own, so a
//! `TripId` can never be passed where a `UserId` is expected. Rendered for people
//! and JSON as a type prefix plus 16 lowercase hex digits (`trp_9f3a1c2b4d5e6f70`);
//! stored in binary formats (the WAL) as the bare `u64`.
//!
//! Ids are drawn by the writer thread from an [`IdSource`] *before* a command is
//! applied and are recorded in the command itself, so replaying a log never draws
//! an id again and reproduces the state exactly.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a rendered id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} id (expected `{prefix}` followed by 16 lowercase hex digits)")]
pub struct ParseIdError {
    kind: &'static str,
    prefix: &'static str,
    input: String,
}

/// A hasher for maps keyed by the engine's ids. An id is 64 random bits the engine drew
/// itself, so nobody outside can choose one to make keys collide — the attack SipHash
/// (std's default) defends against — and one multiplication spreads it over all 64 bits
/// (sequential ids in tests too). Used where a map is on the location-update path: there
/// SipHash was a twentieth of the writer's time. Input other than one `u64` is mixed in
/// with FNV-1a, so the hasher stays correct for any key, only not tuned for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, x: u64) {
        // Fibonacci hashing: 2^64 / φ.
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// `BuildHasher` of [`IdHasher`], for `HashMap::with_hasher` and friends.
pub type IdHashing = std::hash::BuildHasherDefault<IdHasher>;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(NonZeroU64);

        impl $name {
            /// The prefix of the rendered form.
            pub const PREFIX: &'static str = $prefix;

            /// The id with this raw value; `None` for zero, which is never an id.
            pub const fn from_raw(raw: u64) -> Option<Self> {
                match NonZeroU64::new(raw) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The id with this non-zero raw value.
            pub const fn from_nonzero(raw: NonZeroU64) -> Self {
                Self(raw)
            }

            /// The raw 64-bit value (what the WAL stores).
            pub const fn raw(self) -> u64 {
                self.0.get()
            }

            /// A fresh id from `ids`.
            pub fn generate(ids: &mut dyn IdSource) -> Self {
                loop {
                    if let Some(id) = Self::from_raw(ids.next_u64()) {
                        return id;
                    }
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:016x}", $prefix, self.0.get())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_prefixed(s, $prefix)
                    .and_then(Self::from_raw)
                    .ok_or_else(|| ParseIdError { kind: $kind, prefix: $prefix, input: truncate(s) })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    serializer.serialize_u64(self.0.get())
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} id", $kind)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        $name::from_raw(v).ok_or_else(|| E::custom("an id is never zero"))
                    }
                }
                if deserializer.is_human_readable() {
                    deserializer.deserialize_str(V)
                } else {
                    deserializer.deserialize_u64(V)
                }
            }
        }
    };
}

typed_id!(
    /// A user: rider, driver or staff (`usr_…`).
    UserId, "usr_", "user"
);
typed_id!(
    /// A trip (`trp_…`).
    TripId, "trp_", "trip"
);
typed_id!(
    /// A zone (`zon_…`).
    ZoneId, "zon_", "zone"
);
typed_id!(
    /// A driver's bid on a bidding trip (`bid_…`).
    BidId, "bid_", "bid"
);
typed_id!(
    /// A coupon (`cpn_…`).
    CouponId, "cpn_", "coupon"
);
typed_id!(
    /// A ledger transfer (`txf_…`).
    TransferId, "txf_", "transfer"
);
typed_id!(
    /// A safety (SOS) alert (`alr_…`).
    AlertId, "alr_", "alert"
);
typed_id!(
    /// A trip's share link (`shr_…`); the link's token is derived from it by the server.
    ShareId, "shr_", "share"
);
typed_id!(
    /// A chat message of a trip (`msg_…`).
    MessageId, "msg_", "message"
);
typed_id!(
    /// A user's registered push device (`dev_…`).
    DeviceId, "dev_", "device"
);
typed_id!(
    /// An item of the notification outbox (`ntf_…`). Not drawn at random: `apply` makes
    /// outbox items itself and draws nothing, so it derives each id from the state's
    /// outbox counter through a bijective mix (`crate::outbox::notification_id`).
    NotificationId, "ntf_", "notification"
);

typed_id!(
    /// An outbound webhook endpoint (`whe_…`).
    EndpointId, "whe_", "webhook endpoint"
);
typed_id!(
    /// An outbound webhook event (`evt_…`). Not drawn at random: `apply` makes events
    /// itself, so each id is the webhooks' event counter through a bijective mix
    /// (`crate::hooks::event_id`), which `crate::hooks::event_seq` undoes.
    EventId, "evt_", "event"
);
typed_id!(
    /// A driver's payout (`pyo_…`).
    PayoutId, "pyo_", "payout"
);
typed_id!(
    /// A wallet top-up through a payment gateway (`top_…`).
    TopUpId, "top_", "top-up"
);

/// splitmix64's finaliser: a bijection on `u64` that makes a counter's values look alike
/// (the ids `apply` derives from counters: notifications, webhook events).
pub const fn mix64(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`mix64`] undone.
pub const fn unmix64(x: u64) -> u64 {
    let mut z = unshift(x, 31);
    z = unshift(z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB)), 27);
    z = unshift(z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9)), 30);
    z.wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

/// Undoes `x ^ (x >> k)`.
const fn unshift(y: u64, k: u32) -> u64 {
    let mut x = y;
    let mut s = k;
    while s < 64 {
        x = y ^ (x >> k);
        s += k;
    }
    x
}

/// The inverse of odd `a` modulo 2^64 (Newton's iteration doubles the correct bits).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

fn parse_prefixed(s: &str, prefix: &str) -> Option<u64> {
    let hex = s.strip_prefix(prefix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Bad input is echoed in errors, but never more than a line of it.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Where fresh ids and other random values (pickup codes) come from.
///
/// The engine owns one and draws from it on the writer thread only, so a seeded
/// source plus the same commands in the same order gives the same ids.
pub trait IdSource: Send + 'static {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// The production and test id source: a ChaCha-based CSPRNG ([`StdRng`]), seeded from
/// 256 bits the caller drew from the operating system (unguessable ids: the engine does,
/// see `dispatch_core::EngineConfig`) or from a number (reproducible tests). The domain
/// never draws entropy itself.
pub struct RandomIds(StdRng);

impl RandomIds {
    /// Seeded from 256 bits of the caller's entropy (the operating system's, in
    /// production): ids cannot be guessed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(StdRng::from_seed(seed))
    }

    /// Seeded from `seed`: the same sequence every run. For tests and simulations only.
    pub fn seeded(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }
}

impl IdSource for RandomIds {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_with_prefix() {
        let id = TripId::from_raw(0x9f3a_1c2b_4d5e_6f70).unwrap();
        assert_eq!(id.to_string(), "trp_9f3a1c2b4d5e6f70");
        assert_eq!("trp_9f3a1c2b4d5e6f70".parse::<TripId>(), Ok(id));
    }

    #[test]
    fn rejects_wrong_prefix_case_length_and_zero() {
        for bad in [
            "usr_9f3a1c2b4d5e6f70",
            "trp_9F3A1C2B4D5E6F70",
            "trp_9f3a",
            "trp_0000000000000000",
            "trp_9f3a1c2b4d5e6f7g",
            "",
            "trp_+f3a1c2b4d5e6f70",
        ] {
            assert!(bad.parse::<TripId>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn json_is_the_string_and_binary_is_the_number() {
        let id = UserId::from_raw(42).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"usr_000000000000002a\"");
        let bytes = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bytes, vec![42]);
        assert_eq!(postcard::from_bytes::<UserId>(&bytes).unwrap(), id);
        assert!(serde_json::from_str::<UserId>("\"trp_000000000000002a\"").is_err());
    }

    #[test]
    fn seeded_sources_repeat_and_different_seeds_differ() {
        let a: Vec<u64> = (0..4).map(|_| 0).scan(RandomIds::seeded(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..4).map(|_| 0).scan(RandomIds::seeded(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(RandomIds::from_seed([1; 32]).next_u64(), RandomIds::from_seed([2; 32]).next_u64());
    }
}
