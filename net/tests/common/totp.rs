//! Staff sign-in's second factor as a client computes it: RFC 4648 base32 (the
//! `otpauth://` URI's secret) and RFC 6238 codes, written from the RFCs rather than with
//! the server's code, so the suites check the server against the standard.

/// RFC 4648 base32 (no padding) decoded.
pub fn unbase32(s: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// RFC 4648 base32 (no padding) of `bytes`.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits: Vec<u8> = bytes.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    bits.chunks(5)
        .map(|c| {
            let v = c.iter().chain(std::iter::repeat(&0)).take(5).fold(0usize, |acc, b| acc << 1 | usize::from(*b));
            char::from(ALPHABET[v])
        })
        .collect()
}

/// RFC 6238: HMAC-SHA1 of the 30-second step, dynamically truncated, 6 digits.
pub fn totp_at(secret: &[u8], step: u64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let h = ring::hmac::sign(&key, &step.to_be_bytes());
    let h = h.as_ref();
    let o = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]);
    format!("{:06}", bin % 1_000_000)
}
