//! Hex: the small encoding helpers that configuration (generated `--dev` secrets), HTTP
//! plumbing (request ids, query escapes) and tokens share, kept apart so that none of
//! them has to depend on another for it.
//!
//! Guarantees: [`hex`] is lowercase and [`unhex`] its inverse (either case in); [`unhex`]
//! refuses odd lengths and non-hex digits rather than guessing; [`random_hex`] draws
//! from the operating system's generator.

/// The value of one hex digit (either case), if it is one.
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bytes of lowercase or uppercase hex, if it is hex of even length.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes().chunks(2).map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?)).collect()
}

/// `bytes` random bytes from the OS, in lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
        assert_eq!(unhex("AB01"), Some(vec![0xab, 0x01]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let r = random_hex(8);
        assert_eq!(r.len(), 16);
        assert!(unhex(&r).is_some());
    }
}
