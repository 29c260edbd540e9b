//! Time-based one-time passwords for staff sign-in (RFC 6238 over RFC 4226's HOTP):
//! HMAC-SHA1, 6 digits, 30-second steps, one step of drift either way; and the RFC 4648
//! base32 (no padding) a secret is shown in, inside an `otpauth://` URI.
//!
//! Guarantees: a code is compared without an early exit (both sides are 6 ASCII digits,
//! every byte folded into one difference); a code of any length but 6 or with a non-digit
//! never matches; [`check`] answers the step that matched, so the caller can refuse a
//! step used before (replay).

use ring::hmac;

/// Seconds in a step.
pub const STEP_S: i64 = 30;
/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Steps of drift accepted either way.
pub const DRIFT: i64 = 1;

/// The HOTP value of `secret` at `counter` (RFC 4226 §5.3), `digits` long.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(digits)
}

/// The step of Unix time `now_s`.
pub fn step_of(now_s: i64) -> u64 {
    u64::try_from(now_s.div_euclid(STEP_S)).unwrap_or(0)
}

/// The step whose 6-digit code `code` is, within [`DRIFT`] of `now_s`'s step, if any
/// (the latest matching one).
pub fn check(secret: &[u8], code: &str, now_s: i64) -> Option<u64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(now_s);
    let mut found = None;
    for d in -DRIFT..=DRIFT {
        let Some(step) = now.checked_add_signed(d) else { continue };
        let want = format!("{:06}", hotp(secret, step, DIGITS));
        // Every byte compared, whatever the first difference.
        let diff = want.bytes().zip(code.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 of `bytes`, upper case, without padding (what authenticator apps read).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI of a staff user's secret (issuer `dispatch`, the account its
/// e-mail, percent-encoded).
pub fn uri(email: &str, secret: &[u8]) -> String {
    let mut account = String::new();
    for b in email.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            account.push(char::from(b));
        } else {
            account.push_str(&format!("%{b:02X}"));
        }
    }
    format!(
        "otpauth://totp/dispatch:{account}?secret={}&issuer=dispatch&algorithm=SHA1&digits={DIGITS}&period={STEP_S}",
        base32(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 seed.
    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_sha1_vectors() {
        // Appendix B's SHA-1 column: 8-digit codes; checked at 8 digits and, truncated to
        // their last 6 digits, as the 6-digit codes dispatch uses (the same HOTP value mod 10^6).
        for (t, code8) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(format!("{:08}", hotp(SEED, step_of(t), 8)), code8, "t={t}");
            let code6 = &code8[2..];
            assert_eq!(check(SEED, code6, t), Some(step_of(t)), "t={t}");
        }
    }

    #[test]
    fn one_step_of_drift_and_nothing_malformed() {
        let t = 1_111_111_111;
        let code = format!("{:06}", hotp(SEED, step_of(t), 6));
        assert_eq!(check(SEED, &code, t + 30), Some(step_of(t)), "one step late");
        assert_eq!(check(SEED, &code, t - 30), Some(step_of(t)), "one step early");
        assert_eq!(check(SEED, &code, t + 61), None, "two steps late");
        assert_eq!(check(SEED, &code, t - 61), None);
        for bad in ["", "12345", "1234567", "12a456", " 12345", "１２３４５６"] {
            assert_eq!(check(SEED, bad, t), None, "{bad:?}");
        }
        assert_eq!(check(b"another secret", &code, t), None);
    }

    #[test]
    fn rfc_4648_base32_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "{input}");
        }
        assert_eq!(base32(SEED), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn the_uri_names_the_account_and_the_parameters() {
        assert_eq!(
            uri("amal+ops@example.com", b"foobar"),
            "otpauth://totp/dispatch:amal%2Bops@example.com?secret=MZXW6YTBOI&issuer=dispatch&algorithm=SHA1&digits=6&period=30"
        );
    }
}
