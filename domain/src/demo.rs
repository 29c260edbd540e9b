//! The demo city: one zone over Greater Cairo with the prices of API.md's example (the
//! simulated drivers and riders who live in it are the `dispatch-sim` crate's).
//!
//! This module owns nothing of the engine's; it only builds values. Used by `dispatchd
//! --dev --demo`, the examples, the benches and the tests, so they all price rides the
//! same way and a reader can check a fare by hand against API.md.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::fare::Pricing;
use crate::geo::ZoneGeometry;
use crate::user::Category;
use crate::zone::{SurgeSettings, ZoneSpec};

/// The economy prices of API.md's zone example.
pub const ECONOMY: Pricing = Pricing {
    base_minor: 1500,
    per_km_minor: 450,
    per_min_minor: 75,
    minimum_minor: 2500,
    booking_fee_minor: 300,
    cancel_fee_minor: 1000,
    wait_per_min_minor: 50,
    free_wait_s: 180,
    commission_bps: 1500,
    free_cancel_s: crate::fare::DEFAULT_FREE_CANCEL_S,
    parcel: None,
};

/// Comfort: economy's structure at higher prices.
pub const COMFORT: Pricing = Pricing {
    base_minor: 2500,
    per_km_minor: 650,
    per_min_minor: 100,
    minimum_minor: 4000,
    booking_fee_minor: 300,
    cancel_fee_minor: 1500,
    wait_per_min_minor: 75,
    free_wait_s: 180,
    commission_bps: 1500,
    free_cancel_s: crate::fare::DEFAULT_FREE_CANCEL_S,
    parcel: None,
};

/// `[lng, lat]` corners of the demo zone: a box from 28.5°N 30.5°E to 31.0°N 32.0°E,
/// which holds Cairo, Giza and the scenarios' test grids.
pub const BOX: [[f64; 2]; 2] = [[30.5, 28.5], [32.0, 31.0]];

/// A zone spec for a box `[[min_lng, min_lat], [max_lng, max_lat]]` with economy and
/// comfort prices in EGP, surge enabled up to ×3.
pub fn zone_spec(name: &str, corners: [[f64; 2]; 2]) -> Result<ZoneSpec> {
    let [[w, s], [e, n]] = corners;
    let ring = vec![vec![w, s], vec![e, s], vec![e, n], vec![w, n], vec![w, s]];
    let polygon = ZoneGeometry::polygon(vec![ring]).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut pricing = BTreeMap::new();
    pricing.insert(Category::new("economy")?, ECONOMY);
    pricing.insert(Category::new("comfort")?, COMFORT);
    Ok(ZoneSpec {
        name: name.to_owned(),
        currency: "EGP".parse()?,
        active: true,
        polygon,
        pricing,
        surge: SurgeSettings { enabled: true, max_bps: 30_000 },
        extra_fee_minor: 0,
        bidding: true,
    })
}

/// The demo city's zone.
pub fn cairo() -> Result<ZoneSpec> {
    zone_spec("Greater Cairo", BOX)
}
