//! Zones: where the service runs, what a ride costs there, and how demand moves the price.
//!
//! Owns [`ZoneSpec`] (what an admin uploads: API.md `POST /v1/admin/zones`), [`Zone`] (a
//! spec with its id and its current surge), the surge curve ([`surge_bps`]) and
//! [`price`], the one function that turns a zone, a category, a route and an optional
//! coupon into a [`FareQuote`]. The engine calls [`price`] when a trip is created (the
//! quote is locked into the trip) and readers call it for estimates, so the rider is
//! shown exactly what a booking made at the same instant would lock.
//!
//! Guarantees:
//! - a [`ZoneSpec`] that passed [`ZoneSpec::validate`] has a valid polygon and an ISO 4217
//!   currency in force (both checked when it was deserialized: an unknown code such as
//!   `XYZ` is refused naming it), a name, valid pricing for at most [`MAX_CATEGORIES`]
//!   categories, a non-negative extra fee and a surge cap in `10000..=100000` bps;
//! - [`surge_bps`] is a pure integer function of demand and supply: `10000` when surge is
//!   disabled or supply covers demand, never above the zone's `max_bps`, non-decreasing
//!   in demand and non-increasing in supply.
//!
//! # The surge curve (API.md is silent; decided here)
//!
//! `ratio_bps = demand × 10000 / max(supply, 1)`. Up to 1.0 (as many searching trips as
//! available drivers, or fewer) there is no surge. Above it, every extra 1.0 of ratio adds
//! ×0.5: `surge = 10000 + (ratio_bps − 10000) / 2`, rounded down to a step of 500 bps
//! (×0.05) so quotes do not flicker, and capped at `max_bps`. Demand is the zone's
//! searching trips; supply its available drivers with a fresh position.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::fare::{self, Coupon, CouponDiscount, FareQuote, Pricing};
use crate::geo::{LatLng, ZoneGeometry, ZoneIndex};
use crate::id::ZoneId;
use crate::money::{Currency, Money};
use crate::route::Route;
use crate::rules::MatchingMode;
use crate::user::Category;

/// Most categories one zone prices.
pub const MAX_CATEGORIES: usize = 32;

/// Longest zone name, characters.
pub const MAX_ZONE_NAME_LEN: usize = 100;

/// The highest surge cap a zone may set (×10).
pub const MAX_SURGE_BPS: u32 = 100_000;

/// No surge: ×1.0.
pub const NO_SURGE_BPS: u32 = 10_000;

/// Surge steps, bps (×0.05).
pub const SURGE_STEP_BPS: u32 = 500;

/// A zone's surge settings (API.md `surge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeSettings {
    /// Whether demand raises prices here at all.
    pub enabled: bool,
    /// The cap, bps (10000 = ×1.0).
    pub max_bps: u32,
}

impl Default for SurgeSettings {
    fn default() -> Self {
        SurgeSettings { enabled: false, max_bps: NO_SURGE_BPS }
    }
}

fn default_active() -> bool {
    true
}

/// A zone as an admin describes it (the body of `POST /v1/admin/zones`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// Display name.
    pub name: String,
    /// The currency every price of the zone is in.
    pub currency: Currency,
    /// Inactive zones exist but take no trips.
    #[serde(default = "default_active")]
    pub active: bool,
    /// The area: a GeoJSON `Polygon` or `MultiPolygon`, validated when deserialized.
    pub polygon: ZoneGeometry,
    /// Prices per vehicle category.
    pub pricing: BTreeMap<Category, Pricing>,
    /// Surge settings.
    #[serde(default)]
    pub surge: SurgeSettings,
    /// Added to every fare in the zone (airport, tolls), minor units.
    #[serde(default)]
    pub extra_fee_minor: i64,
    // ----- issue 20: A -----
    /// Whether riders may name their price (a bidding trip) here (default: yes).
    #[serde(default = "default_active")]
    pub bidding: bool,
}

impl ZoneSpec {
    /// Refuses a spec that could not price rides (the polygon was checked when built).
    pub fn validate(&self) -> Result<()> {
        let name_len = self.name.chars().count();
        if !(1..=MAX_ZONE_NAME_LEN).contains(&name_len) || self.name.chars().any(char::is_control) {
            return Err(Error::Invalid(format!(
                "zone name must be 1-{MAX_ZONE_NAME_LEN} characters without control characters"
            )));
        }
        if self.pricing.len() > MAX_CATEGORIES {
            return Err(Error::Invalid(format!("a zone prices at most {MAX_CATEGORIES} categories")));
        }
        for (category, pricing) in &self.pricing {
            pricing.validate().map_err(|e| Error::Invalid(format!("pricing.{category}: {e}")))?;
        }
        if self.extra_fee_minor < 0 {
            return Err(Error::Invalid("extra_fee_minor must not be negative".into()));
        }
        if !(NO_SURGE_BPS..=MAX_SURGE_BPS).contains(&self.surge.max_bps) {
            return Err(Error::Invalid(format!("surge.max_bps must be from {NO_SURGE_BPS} to {MAX_SURGE_BPS}")));
        }
        Ok(())
    }
}

/// A zone in the engine: its spec and its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    /// The zone's id.
    pub id: ZoneId,
    /// What the admin uploaded (replaced whole by `PUT`).
    pub spec: ZoneSpec,
    /// When the zone was created.
    pub created_at: Timestamp,
    /// When its spec last changed.
    pub updated_at: Timestamp,
    /// How its trips find their first drivers, when not the city's
    /// (`DispatchRules::matching`): set at runtime (`zones.<id>.mode`), kept when the spec
    /// is replaced.
    #[serde(default)]
    pub matching: Option<MatchingMode>,
}

/// A zone's surge as last recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurgeReading {
    /// The surge in force, bps ([`surge_bps`]).
    pub bps: u32,
    /// Searching trips counted.
    pub demand: u32,
    /// Available drivers with a fresh position counted.
    pub supply: u32,
    /// When.
    pub at: Timestamp,
}

/// Every zone and the R-tree that finds the one a point is in. Changed only by zone
/// commands (rare), so the engine shares it with readers as one `Arc`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    zones: BTreeMap<ZoneId, Arc<Zone>>,
    index: ZoneIndex,
}

impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        // The index is derived from the zones.
        self.zones == other.zones
    }
}

impl Catalog {
    /// A catalog of these zones.
    pub fn from_zones(zones: impl IntoIterator<Item = Arc<Zone>>) -> Self {
        let mut c = Catalog::default();
        for z in zones {
            c.upsert(z);
        }
        c
    }

    /// Adds or replaces a zone.
    pub fn upsert(&mut self, zone: Arc<Zone>) {
        self.index.upsert(zone.id, zone.spec.polygon.clone(), zone.spec.active);
        self.zones.insert(zone.id, zone);
    }

    /// A zone.
    pub fn get(&self, id: ZoneId) -> Option<&Arc<Zone>> {
        self.zones.get(&id)
    }

    /// Every zone, by id.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// The active zone `point` is in (`outside_service_area` when none).
    pub fn lookup(&self, point: LatLng) -> Result<&Arc<Zone>> {
        self.index.lookup(point).and_then(|id| self.zones.get(&id)).ok_or(Error::OutsideServiceArea)
    }

    /// Whether some zone prices `category` (a driver's category must be one of these).
    pub fn prices(&self, category: &Category) -> bool {
        self.zones.values().any(|z| z.spec.pricing.contains_key(category))
    }

    /// Whether any zone has surge enabled.
    pub fn any_surge(&self) -> bool {
        self.zones.values().any(|z| z.spec.surge.enabled)
    }

    /// The currency of a money read that names none (a wallet read without a currency):
    /// the currency of the zone with the lowest id, active or not. A single-city
    /// deployment has one zone, so this is its currency; a deployment across currencies
    /// must have its callers name one. `None` before any zone exists: there is no
    /// currency to fall back to, and the caller must name one.
    pub fn default_currency(&self) -> Option<Currency> {
        self.zones.values().next().map(|z| z.spec.currency)
    }
}

impl Serialize for Catalog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.zones.values())
    }
}

impl<'de> Deserialize<'de> for Catalog {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let zones = Vec::<Arc<Zone>>::deserialize(d)?;
        Ok(Catalog::from_zones(zones))
    }
}

/// The surge for `demand` searching trips and `supply` available drivers under
/// `settings` (see the module docs for the curve).
pub fn surge_bps(settings: &SurgeSettings, demand: u32, supply: u32) -> u32 {
    if !settings.enabled {
        return NO_SURGE_BPS;
    }
    let ratio_bps = u64::from(demand) * u64::from(NO_SURGE_BPS) / u64::from(supply.max(1));
    let Some(excess) = ratio_bps.checked_sub(u64::from(NO_SURGE_BPS)) else {
        return NO_SURGE_BPS;
    };
    let raw = u64::from(NO_SURGE_BPS) + excess / 2;
    let stepped = raw - raw % u64::from(SURGE_STEP_BPS);
    // The cap is at most MAX_SURGE_BPS, so the result fits u32.
    stepped.min(u64::from(settings.max_bps)) as u32
}

/// A coupon and how often it was redeemed (the engine's record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponRecord {
    /// The coupon.
    pub coupon: Coupon,
    /// Redemptions by trips that are open or completed.
    pub uses: u64,
    /// The same, per rider: a persistent map, since it grows with the riders who ever
    /// redeemed the coupon and the record is copied on write while readers share it (each
    /// redemption then copies a path, not every rider's count).
    pub uses_by_rider: imbl::OrdMap<crate::id::UserId, u64>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When an admin disabled it (`POST /v1/admin/coupons/{code}/disable`): from then on
    /// no estimate or booking takes it (`coupon_invalid`); trips booked before keep it.
    #[serde(default)]
    pub disabled_at: Option<Timestamp>,
}

impl CouponRecord {
    /// How often `rider` redeemed it.
    pub fn uses_by(&self, rider: crate::id::UserId) -> u64 {
        self.uses_by_rider.get(&rider).copied().unwrap_or(0)
    }
}

/// The price of a ride of `route` in `zone` for `category` at surge `surge_bps`,
/// with `coupon` checked for `rider` at `now`.
///
/// A parcel of `parcel_g` grams adds its weight's price (`fare::parcel_fare`).
///
/// Errors: the category is not priced here → `no_pricing`; the parcel is heavier than the
/// category carries → `parcel_too_heavy`; the coupon was disabled or does not apply →
/// `coupon_invalid`; the fare does not fit → `invalid_request`.
pub fn price(
    zone: &Zone,
    surge_bps: u32,
    category: &Category,
    route: &Route,
    parcel_g: Option<u32>,
    coupon: Option<(&CouponRecord, crate::id::UserId)>,
    now: Timestamp,
) -> Result<FareQuote> {
    let pricing = zone.spec.pricing.get(category).ok_or_else(|| Error::NoPricing(category.to_string()))?;
    let currency = zone.spec.currency;
    let extra = zone.spec.extra_fee_minor;
    let plain = quote(pricing, currency, extra, route, surge_bps, parcel_g, None)?;
    let Some((record, rider)) = coupon else {
        return Ok(plain);
    };
    if record.disabled_at.is_some() {
        return Err(Error::CouponInvalid("the coupon has been disabled".into()));
    }
    let before_discount = Money::new(plain.fare.amount_minor, currency);
    record
        .coupon
        .check(now, before_discount, record.uses, record.uses_by(rider))
        .map_err(|why| Error::CouponInvalid(why.to_string()))?;
    quote(pricing, currency, extra, route, surge_bps, parcel_g, Some(&record.coupon.discount))
}

/// Fare estimates for one pickup: its zone and a quote per category.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The pickup's zone.
    pub zone: Arc<Zone>,
    /// One quote per category asked for (every priced category when none was named),
    /// in category order.
    pub quotes: Vec<(Category, FareQuote)>,
}

/// What the engine knows that prices a ride: the zones, their surges and the coupons.
#[derive(Debug, Clone, Copy)]
pub struct PriceBook<'a> {
    /// Every zone.
    pub catalog: &'a Catalog,
    /// Surge per zone (none recorded: ×1.0).
    pub surge: &'a BTreeMap<ZoneId, SurgeReading>,
    /// Coupons by code.
    pub coupons: &'a BTreeMap<String, Arc<CouponRecord>>,
}

impl PriceBook<'_> {
    /// The surge in force in `zone`.
    pub fn surge_bps(&self, zone: ZoneId) -> u32 {
        self.surge.get(&zone).map_or(NO_SURGE_BPS, |r| r.bps)
    }

    /// The coupon with this code (`coupon_invalid` when there is none).
    pub fn coupon(&self, code: &str) -> Result<&Arc<CouponRecord>> {
        self.coupons.get(code).ok_or_else(|| Error::CouponInvalid(format!("no coupon {code:?}")))
    }

    /// Estimates for a ride (or a parcel of `parcel_g` grams) from `pickup` along
    /// `route`, for `category` or for every category the zone prices, with `coupon`
    /// checked for `rider` at `now`. Exactly what booking at the same instant would lock.
    /// Without a category, a parcel is quoted in the categories that carry its weight
    /// (`parcel_too_heavy` when none does).
    #[allow(clippy::too_many_arguments)]
    pub fn estimate(
        &self,
        pickup: LatLng,
        route: &Route,
        category: Option<&Category>,
        parcel_g: Option<u32>,
        coupon: Option<&str>,
        rider: crate::id::UserId,
        now: Timestamp,
    ) -> Result<Estimate> {
        let zone = self.catalog.lookup(pickup)?;
        let surge = self.surge_bps(zone.id);
        let coupon = coupon.map(|code| self.coupon(code)).transpose()?;
        let categories: Vec<&Category> = match category {
            Some(c) => vec![c],
            None => zone.spec.pricing.keys().collect(),
        };
        let mut too_heavy = None;
        let mut quotes = Vec::with_capacity(categories.len());
        for c in categories {
            match price(zone, surge, c, route, parcel_g, coupon.map(|r| (&**r, rider)), now) {
                Ok(q) => quotes.push((c.clone(), q)),
                Err(e @ Error::ParcelTooHeavy { .. }) if category.is_none() => too_heavy = too_heavy.or(Some(e)),
                Err(e) => return Err(e),
            }
        }
        if let (true, Some(e)) = (quotes.is_empty(), too_heavy) {
            return Err(e);
        }
        Ok(Estimate { zone: Arc::clone(zone), quotes })
    }
}

fn quote(
    pricing: &Pricing,
    currency: Currency,
    extra_fee_minor: i64,
    route: &Route,
    surge: u32,
    parcel_g: Option<u32>,
    discount: Option<&CouponDiscount>,
) -> Result<FareQuote> {
    match parcel_g {
        None => fare::estimate(pricing, currency, extra_fee_minor, route, surge, discount),
        Some(g) => fare::parcel_fare(pricing, currency, extra_fee_minor, route, surge, 0, g, discount),
    }
    .map_err(fare_error)
}

/// A fare error as the engine's: the weight limit is `parcel_too_heavy`, anything else a
/// ride that cannot be priced (`invalid_request`).
pub(crate) fn fare_error(e: fare::FareError) -> Error {
    match e {
        fare::FareError::ParcelTooHeavy { max_weight_kg, .. } => Error::ParcelTooHeavy { max_weight_kg },
        e => Error::Invalid(format!("cannot price this ride: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(max_bps: u32) -> SurgeSettings {
        SurgeSettings { enabled: true, max_bps }
    }

    #[test]
    fn no_surge_while_supply_covers_demand_or_when_disabled() {
        assert_eq!(surge_bps(&on(30_000), 0, 0), 10_000);
        assert_eq!(surge_bps(&on(30_000), 5, 5), 10_000);
        assert_eq!(surge_bps(&on(30_000), 3, 10), 10_000);
        assert_eq!(surge_bps(&SurgeSettings::default(), 100, 1), 10_000);
    }

    #[test]
    fn the_curve_by_hand() {
        // ratio 2.0 → 10000 + 10000/2 = 15000.
        assert_eq!(surge_bps(&on(30_000), 20, 10), 15_000);
        // ratio 1.3 → 10000 + 1500 = 11500, already a multiple of 500.
        assert_eq!(surge_bps(&on(30_000), 13, 10), 11_500);
        // ratio 1.33… → 13333 bps → 11666 → stepped down to 11500.
        assert_eq!(surge_bps(&on(30_000), 4, 3), 11_500);
        // No supply at all: ratio = demand → 3 trips: 10000 + 10000 = 20000.
        assert_eq!(surge_bps(&on(30_000), 3, 0), 20_000);
        // Capped.
        assert_eq!(surge_bps(&on(12_000), 100, 1), 12_000);
        assert_eq!(surge_bps(&on(MAX_SURGE_BPS), u32::MAX, 0), MAX_SURGE_BPS);
    }

    /// Bytes shaped like a zone upload: a valid body with random edits, and noise.
    fn upload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let valid = serde_json::to_vec(&crate::demo::cairo().unwrap()).unwrap();
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (0..valid.len(), any::<u8>(), 0usize..4).prop_map(move |(at, byte, cut)| {
                let mut v = valid.clone();
                v[at] = byte;
                v.truncate(v.len() - cut.min(v.len()));
                v
            }),
        ]
    }

    #[test]
    fn the_default_currency_is_the_first_zones_and_none_without_zones() {
        assert_eq!(Catalog::default().default_currency(), None, "no zone, no currency to fall back to");
        let zone = |id: u64, code: &str, active: bool| {
            let mut spec = crate::demo::cairo().unwrap();
            spec.currency = code.parse().unwrap();
            spec.active = active;
            let at = Timestamp::from_millis(0);
            Arc::new(Zone { id: ZoneId::from_raw(id).unwrap(), spec, created_at: at, updated_at: at, matching: None })
        };
        let one = Catalog::from_zones([zone(7, "EGP", true)]);
        assert_eq!(one.default_currency(), Some("EGP".parse().unwrap()), "a single city's currency");
        // Several: the zone with the lowest id, whatever the order of upload or whether it is active.
        let many = Catalog::from_zones([zone(9, "JPY", true), zone(3, "KWD", false), zone(5, "EGP", true)]);
        assert_eq!(many.default_currency(), Some("KWD".parse().unwrap()));
    }

    proptest::proptest! {
        /// What `fuzz/fuzz_targets/zone_json.rs` runs, on stable, in every test run.
        #[test]
        fn zone_uploads_never_panic_and_round_trip(data in upload()) {
            if let Ok(spec) = serde_json::from_slice::<ZoneSpec>(&data)
                && spec.validate().is_ok()
            {
                let again: ZoneSpec = serde_json::from_slice(&serde_json::to_vec(&spec).unwrap()).unwrap();
                proptest::prop_assert_eq!(&again, &spec);
                let (sw, ne) = spec.polygon.bounding_box();
                let mid = LatLng::new((sw.lat() + ne.lat()) / 2.0, (sw.lng() + ne.lng()) / 2.0).unwrap();
                let _ = spec.polygon.contains(mid);
            }
        }

        #[test]
        fn monotonic_and_capped(demand in 0u32..10_000, supply in 0u32..10_000, more in 0u32..100, cap in 10_000u32..=100_000) {
            let s = on(cap);
            let at = surge_bps(&s, demand, supply);
            proptest::prop_assert!((10_000..=cap).contains(&at));
            proptest::prop_assert!(surge_bps(&s, demand + more, supply) >= at);
            proptest::prop_assert!(surge_bps(&s, demand, supply + more) <= at);
        }
    }
}
