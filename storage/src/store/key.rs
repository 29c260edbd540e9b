//! Building blocks for composite keys.
//!
//! Owns the byte encodings the engine uses to make keys that sort the way queries
//! read them. Tables compare keys as byte strings, so:
//! - [`u64_be`] encodes a number so that byte order is numeric order;
//! - [`rev_u64_be`] encodes it bitwise-inverted, so byte order is *reverse* numeric
//!   order: `rider ‖ rev_u64_be(time) ‖ trip` makes an ascending scan of the prefix
//!   `rider` return the newest trip first;
//! - [`concat()`] joins parts; [`take_u64_be`] and [`take_rev_u64_be`] read them back.
//!
//! Guarantee: for all `a < b`, `u64_be(a) < u64_be(b)` and `rev_u64_be(a) > rev_u64_be(b)`
//! as byte strings, and every encoding decodes to the number it came from. Parts of
//! variable length are the caller's business: a composite key stays unambiguous only
//! if every part but the last has a fixed width (ids and times here are 8 bytes).

/// `value` big-endian: byte order equals numeric order.
pub const fn u64_be(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// `!value` big-endian: byte order is the reverse of numeric order (newest first
/// when `value` is a time).
pub const fn rev_u64_be(value: u64) -> [u8; 8] {
    (!value).to_be_bytes()
}

/// The parts one after the other, in one allocation.
pub fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// Reads a [`u64_be`] from the front of `bytes`; returns it and the rest, or `None`
/// when fewer than 8 bytes are left.
pub fn take_u64_be(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

/// Reads a [`rev_u64_be`] from the front of `bytes`; returns it and the rest, or
/// `None` when fewer than 8 bytes are left.
pub fn take_rev_u64_be(bytes: &[u8]) -> Option<(u64, &[u8])> {
    take_u64_be(bytes).map(|(value, rest)| (!value, rest))
}

/// The smallest byte string greater than every string that starts with `prefix`, or
/// `None` when there is none (the prefix is empty or all `0xff`): the exclusive end
/// of a prefix range.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&byte| byte != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_newest_first_key_round_trips() {
        let key = concat(&[&u64_be(42), &rev_u64_be(1_700_000_000), b"trp_1"]);
        let (rider, rest) = take_u64_be(&key).unwrap();
        let (time, rest) = take_rev_u64_be(rest).unwrap();
        assert_eq!((rider, time, rest), (42, 1_700_000_000, &b"trp_1"[..]));
        assert_eq!(take_u64_be(&[1, 2, 3]), None);
    }

    #[test]
    fn prefix_end_carries_over_trailing_ff() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0, 0xff, 0xff]), Some(vec![1]));
    }

    proptest! {
        #[test]
        fn encodings_keep_order_and_round_trip(a: u64, b: u64) {
            prop_assert_eq!(a.cmp(&b), u64_be(a).cmp(&u64_be(b)));
            prop_assert_eq!(a.cmp(&b), rev_u64_be(b).cmp(&rev_u64_be(a)));
            let (plain, reversed) = (u64_be(a), rev_u64_be(a));
            prop_assert_eq!(take_u64_be(&plain), Some((a, &[][..])));
            prop_assert_eq!(take_rev_u64_be(&reversed), Some((a, &[][..])));
        }

        #[test]
        fn prefix_end_bounds_exactly_the_keys_with_the_prefix(
            prefix in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..4),
            key in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..6),
        ) {
            let below_end = prefix_end(&prefix).is_none_or(|end| key < end);
            let in_range = key >= prefix && below_end;
            prop_assert_eq!(in_range, key.starts_with(&prefix));
        }
    }
}
