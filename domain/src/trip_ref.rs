//! A trip's short reference (`7KQ-2M4`): what support reads over the phone.
//!
//! Six characters of Crockford's base32 (digits and capitals without `I`, `L`, `O`, `U`,
//! so nothing looks like anything else), written `XXX-XXX`: 30 random bits, drawn by the
//! writer (`State::stamp`) and recorded in the booking. A reference is unique among the
//! trips of the last [`REF_KEPT_S`] (the state keeps an index of them; the stamp draws
//! again on a clash and `apply` refuses a live one twice); after that it may name
//! another trip.
//!
//! Guarantees: [`TripRef::parse`] reads back what [`TripRef`]'s `Display` writes, in any
//! case, with or without the dash, and reads the look-alikes a caller may type (`O` as
//! `0`, `I` and `L` as `1`); anything else is `None`, never a panic.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How long a reference stays reserved for its trip: 30 days.
pub const REF_KEPT_S: u32 = 30 * 24 * 60 * 60;

/// Crockford's base32 alphabet: no `I`, `L`, `O` or `U`.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters of a reference (without the dash).
const LEN: usize = 6;

/// The bits a reference holds.
const BITS: u32 = 5 * LEN as u32;

/// A trip's short reference: 30 bits, shown as `XXX-XXX`.
///
/// Serialized as its text (`"7KQ-2M4"`) in human-readable formats (JSON: the C ABI's
/// answers) and as the bare number in binary ones (the log, checkpoints), like the ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TripRef(u32);

impl TripRef {
    /// The reference made of the low 30 of `bits` (random bits from the writer).
    pub fn from_random(bits: u64) -> Self {
        Self((bits & ((1u64 << BITS) - 1)) as u32)
    }

    /// The reference `s` names: six characters of the alphabet in any case, with the dash
    /// after the third or without it; `O` reads as `0`, `I` and `L` as `1`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let bytes = s.as_bytes();
        let body: Vec<u8> = match bytes.len() {
            7 if bytes[3] == b'-' => bytes[..3].iter().chain(&bytes[4..]).copied().collect(),
            6 => bytes.to_vec(),
            _ => return None,
        };
        let mut value = 0u32;
        for b in body {
            let b = match b.to_ascii_uppercase() {
                b'O' => b'0',
                b'I' | b'L' => b'1',
                other => other,
            };
            let digit = ALPHABET.iter().position(|a| *a == b)?;
            value = (value << 5) | digit as u32;
        }
        Some(Self(value))
    }

    /// The raw 30 bits.
    pub fn raw(self) -> u32 {
        self.0
    }
}

impl TripRef {
    /// The reference as it is written, `ABC-123`: ASCII bytes of the alphabet and a dash.
    fn bytes(self) -> [u8; LEN + 1] {
        let mut out = [0u8; LEN + 1];
        let mut v = self.0;
        for i in (0..LEN).rev() {
            let at = if i >= 3 { i + 1 } else { i };
            out[at] = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        out[3] = b'-';
        out
    }

    /// The reference as it is written, in a `String` of its exact length: what
    /// `to_string` gives, without the formatting machinery (a notification's inputs
    /// take one on the writer's thread).
    pub fn text(self) -> String {
        self.bytes().iter().map(|&b| char::from(b)).collect()
    }
}

impl fmt::Display for TripRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let out = self.bytes();
        // Every byte is ASCII from the alphabet or the dash.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for TripRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() { serializer.collect_str(self) } else { serializer.serialize_u32(self.0) }
    }
}

impl<'de> Deserialize<'de> for TripRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TripRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trip reference (`7KQ-2M4`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TripRef, E> {
                TripRef::parse(v).ok_or_else(|| E::custom(format!("`{v}` is not a trip reference")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TripRef, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|v| *v < 1 << BITS)
                    .map(TripRef)
                    .ok_or_else(|| E::custom("a trip reference has 30 bits"))
            }
        }
        if deserializer.is_human_readable() { deserializer.deserialize_str(V) } else { deserializer.deserialize_u32(V) }
    }
}

impl fmt::Debug for TripRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TripRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn references_read_as_written_in_any_case_with_or_without_the_dash() {
        let r = TripRef::parse("7KQ-2M4").unwrap();
        assert_eq!(r.to_string(), "7KQ-2M4");
        for s in ["7kq-2m4", "7KQ2M4", "7kq2m4", " 7KQ-2M4 "] {
            assert_eq!(TripRef::parse(s), Some(r), "{s}");
        }
        assert_eq!(TripRef::parse("OIL-000"), TripRef::parse("011-000"), "look-alikes read as digits");
        for bad in ["", "7KQ-2M", "7KQ-2M45", "7KQ_2M4", "7KQ--2M4", "7KU-2M4", "7K-Q2M4", "ÄKQ-2M4"] {
            assert_eq!(TripRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn references_serialize_as_text_in_json_and_as_a_number_in_postcard() {
        let r = TripRef::parse("7KQ-2M4").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"7KQ-2M4\"");
        assert_eq!(serde_json::from_str::<TripRef>("\"7kq2m4\"").unwrap(), r);
        assert!(serde_json::from_str::<TripRef>("\"7KQ-2MU\"").is_err());
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<TripRef>(&bytes).unwrap(), r);
        assert!(postcard::from_bytes::<TripRef>(&postcard::to_allocvec(&(1u32 << 30)).unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn every_reference_round_trips_and_uses_no_look_alike(bits in any::<u64>()) {
            let r = TripRef::from_random(bits);
            let s = r.to_string();
            prop_assert_eq!(&r.text(), &s);
            prop_assert_eq!(s.len(), 7);
            prop_assert!(!s.contains(['I', 'L', 'O', 'U']));
            prop_assert_eq!(TripRef::parse(&s), Some(r));
            prop_assert_eq!(TripRef::parse(&s.replace('-', "").to_lowercase()), Some(r));
        }
    }
}
