//! Google's encoded polyline format at precision 5: the line a client draws for a route.
//!
//! Owns [`encode`] and [`decode`]. A point is `(lat, lng)` in that order, each scaled by
//! 10⁵ and rounded (`f64::round`, ties away from zero), written as the difference from the
//! previous point, zig-zag signed and cut into 5-bit chunks, each chunk plus 63 as one ASCII
//! character, `0x20` marking "more chunks follow" (Google's "Encoded Polyline Algorithm
//! Format"). OSRM answers `geometries=polyline` in this very format.
//!
//! Guarantees:
//! - [`encode`] never fails and never panics: a [`LatLng`] is in range, so every scaled
//!   value and every difference fits easily in an `i64`;
//! - [`decode`] reads text from outside (a router's answer) and never panics: a character
//!   outside `?`..=`~`, a value longer than [`MAX_CHUNKS`] chunks, a latitude without its
//!   longitude, or a point out of range is a [`PolylineError`]; sums are checked;
//! - `decode(encode(points))` gives the points rounded to 10⁻⁵ degrees.
//!
//! Why not the `polyline` crate: its decoder adds deltas with unchecked `i64` arithmetic,
//! which a hostile string can overflow (a panic in debug builds), and the format is forty
//! lines of well-known code.

use super::LatLng;

/// Degrees × this = the integers the format writes (precision 5).
const FACTOR: f64 = 1e5;

/// The most 5-bit chunks one value may take. A difference of coordinates at precision 5 is
/// at most 3.6·10⁷ in size, 27 bits once zig-zagged: 6 chunks. 7 leaves a margin and still
/// keeps every value far below `i64`'s range.
pub const MAX_CHUNKS: u32 = 7;

/// Why a polyline does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolylineError {
    /// A byte that is not one of the format's characters (`?` to `~`).
    #[error("polyline: byte {byte:#04x} at offset {at} is not a polyline character")]
    BadCharacter {
        /// The byte.
        byte: u8,
        /// Its offset in the text.
        at: usize,
    },
    /// A value that does not end (its last chunk still says "more"), or is too long.
    #[error("polyline: the value at offset {at} is unterminated or longer than {MAX_CHUNKS} chunks")]
    BadValue {
        /// Where the value starts.
        at: usize,
    },
    /// A latitude with no longitude after it.
    #[error("polyline: the latitude at offset {at} has no longitude")]
    MissingLongitude {
        /// Where the latitude starts.
        at: usize,
    },
    /// A point that is not a valid position.
    #[error("polyline: point {index} is out of range")]
    OutOfRange {
        /// Which point, from 0.
        index: usize,
    },
}

/// The polyline of `points`, at precision 5.
pub fn encode(points: &[LatLng]) -> String {
    let mut out = String::with_capacity(points.len() * 8);
    let (mut last_lat, mut last_lng) = (0i64, 0i64);
    for p in points {
        // |degrees| ≤ 180: scaled values are at most 1.8·10⁷, exact in both types.
        let (lat, lng) = (scale(p.lat()), scale(p.lng()));
        push_value(&mut out, lat - last_lat);
        push_value(&mut out, lng - last_lng);
        (last_lat, last_lng) = (lat, lng);
    }
    out
}

/// The points of a polyline at precision 5 (see the module docs for what is refused).
pub fn decode(text: &str) -> Result<Vec<LatLng>, PolylineError> {
    let bytes = text.as_bytes();
    let mut points = Vec::new();
    let (mut lat, mut lng) = (0i64, 0i64);
    let mut at = 0;
    while at < bytes.len() {
        let lat_at = at;
        let d_lat = next_value(bytes, &mut at)?;
        if at >= bytes.len() {
            return Err(PolylineError::MissingLongitude { at: lat_at });
        }
        let d_lng = next_value(bytes, &mut at)?;
        let index = points.len();
        let out_of_range = || PolylineError::OutOfRange { index };
        lat = lat.checked_add(d_lat).ok_or_else(out_of_range)?;
        lng = lng.checked_add(d_lng).ok_or_else(out_of_range)?;
        let point = LatLng::new(lat as f64 / FACTOR, lng as f64 / FACTOR).map_err(|_| out_of_range())?;
        points.push(point);
    }
    Ok(points)
}

fn scale(degrees: f64) -> i64 {
    (degrees * FACTOR).round() as i64
}

/// Appends one signed value: zig-zag, then 5-bit chunks, low first, each + 63.
fn push_value(out: &mut String, value: i64) {
    let mut v = if value < 0 { !(value << 1) } else { value << 1 } as u64;
    while v >= 0x20 {
        out.push(char::from(((0x20 | (v & 0x1f)) + 63) as u8));
        v >>= 5;
    }
    out.push(char::from((v + 63) as u8));
}

/// Reads one signed value starting at `*at`, leaving `*at` after it.
fn next_value(bytes: &[u8], at: &mut usize) -> Result<i64, PolylineError> {
    let start = *at;
    let mut v: u64 = 0;
    for chunk in 0..MAX_CHUNKS {
        let Some(&byte) = bytes.get(*at) else {
            return Err(PolylineError::BadValue { at: start });
        };
        if !(63..=126).contains(&byte) {
            return Err(PolylineError::BadCharacter { byte, at: *at });
        }
        *at += 1;
        let bits = u64::from(byte - 63);
        v |= (bits & 0x1f) << (5 * chunk);
        if bits < 0x20 {
            // At most 35 bits: the shift and the sign flip stay far inside i64.
            let half = (v >> 1) as i64;
            return Ok(if v & 1 == 1 { !half } else { half });
        }
    }
    Err(PolylineError::BadValue { at: start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).unwrap()
    }

    /// Google's documented example.
    const GOOGLE: &str = "_p~iF~ps|U_ulLnnqC_mqNvxq`@";

    #[test]
    fn googles_example_encodes_and_decodes() {
        let points = [p(38.5, -120.2), p(40.7, -120.95), p(43.252, -126.453)];
        assert_eq!(encode(&points), GOOGLE);
        assert_eq!(decode(GOOGLE).unwrap(), points);
    }

    #[test]
    fn nothing_is_the_empty_string() {
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<LatLng>::new());
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        // A space is below '?'; the last value of "_p~iF~ps|" is unterminated ('|' ≥ 0x20+63);
        // "_p~iF" is a latitude alone; a run of continuation chunks is too long.
        assert!(matches!(decode("_p~iF ps|U"), Err(PolylineError::BadCharacter { byte: b' ', at: 5 })));
        assert!(matches!(decode("_p~iF~ps|"), Err(PolylineError::BadValue { at: 5 })));
        assert!(matches!(decode("_p~iF"), Err(PolylineError::MissingLongitude { at: 0 })));
        assert!(matches!(decode("~~~~~~~~~~~~~~~~~~"), Err(PolylineError::BadValue { at: 0 })));
        assert!(matches!(decode("é"), Err(PolylineError::BadCharacter { .. })));
        // 91°: in the format's reach, out of the Earth's.
        assert!(matches!(decode(&encode_raw(&[(9_100_000, 0)])), Err(PolylineError::OutOfRange { index: 0 })));
        // Deltas that would walk far out of range one step at a time are refused at once.
        let far = encode_raw(&[(8_000_000, 0), (16_000_000, 0)]);
        assert!(matches!(decode(&far), Err(PolylineError::OutOfRange { index: 1 })));
    }

    /// Encodes raw scaled integers, out-of-range ones included (to build bad input).
    fn encode_raw(points: &[(i64, i64)]) -> String {
        let mut out = String::new();
        let (mut la, mut ln) = (0, 0);
        for &(lat, lng) in points {
            push_value(&mut out, lat - la);
            push_value(&mut out, lng - ln);
            (la, ln) = (lat, lng);
        }
        out
    }

    proptest! {
        #[test]
        fn decode_inverts_encode_to_the_precision(
            raw in proptest::collection::vec((-90.0..=90.0f64, -180.0..=180.0f64), 0..20)
        ) {
            let points: Vec<LatLng> = raw.iter().map(|&(lat, lng)| p(lat, lng)).collect();
            let back = decode(&encode(&points)).unwrap();
            prop_assert_eq!(back.len(), points.len());
            for (a, b) in points.iter().zip(&back) {
                prop_assert!((a.lat() - b.lat()).abs() <= 0.5e-5 + 1e-12, "{a:?} {b:?}");
                prop_assert!((a.lng() - b.lng()).abs() <= 0.5e-5 + 1e-12, "{a:?} {b:?}");
            }
            // And what decoded encodes to the same text.
            prop_assert_eq!(encode(&back), encode(&points));
        }

        #[test]
        fn any_text_decodes_or_errs_without_panicking(text in "[\\x20-\\x7f]{0,40}") {
            let _ = decode(&text);
        }
    }
}
