//! An admin's zone upload (API.md `POST /v1/admin/zones`: GeoJSON polygon, pricing,
//! surge) parsed from bytes must never panic; what parses and validates must survive a
//! JSON round trip unchanged, and a point lookup on it must answer without panicking.
//!
//! `cargo +nightly fuzz run zone_json` (from `fuzz/`). A stable proptest of the same
//! property runs in every test run (`domain/src/zone.rs`).
#![no_main]

use dispatch_core::ZoneSpec;
use dispatch_core::geo::LatLng;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<ZoneSpec>(data) else { return };
    if spec.validate().is_err() {
        return;
    }
    let json = serde_json::to_vec(&spec).expect("a valid zone serializes");
    let again: ZoneSpec = serde_json::from_slice(&json).expect("and parses back");
    assert_eq!(again, spec);
    let (sw, ne) = spec.polygon.bounding_box();
    let mid = LatLng::new((sw.lat() + ne.lat()) / 2.0, (sw.lng() + ne.lng()) / 2.0).expect("inside the box");
    let _ = spec.polygon.contains(mid);
});
