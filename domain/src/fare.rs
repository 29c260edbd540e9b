//! The fare engine: what a ride costs, to the minor unit, and how it is split.
//!
//! Owns the fare formula of API.md ("Fares"), the waiting fee, the cancellation fee,
//! coupons (their definition, their eligibility rules and the discount they give) and the
//! platform's commission. Everything here is a pure function on integers: amounts are
//! `i64` minor units, intermediate products `i128`; no floats, no clock, no I/O. The C ABI
//! exports these same functions, so apps get the same fare to the minor unit.
//!
//! Guarantees:
//! - every input is validated before use: negative amounts, a commission above 100 %, a
//!   surge below ×1.0, absurd routes and malformed coupons are refused with a
//!   [`FareError`] naming the field;
//! - no input, however large, panics or wraps: products are taken in `i128` with checked
//!   arithmetic, and any amount that does not fit in `i64` is [`FareError::Overflow`];
//! - the breakdown adds up exactly:
//!   `base + distance + time + surge + minimum_fill + booking_fee + extra_fee + parcel
//!   + waiting − discount = fare`;
//! - every amount, in and out, is in minor units of the zone's currency whatever its ISO
//!   4217 exponent (a JPY zone's `per_km_minor` is yen, a KWD zone's fils): the formula
//!   never scales by the exponent, so one rounding rule holds for every currency, and the
//!   exponent only matters when an amount is shown (`Money`'s `Display`).
//!
//! Why this file is long: it is one formula. Every line of a fare (the ride, the parcel's
//! weight, the waiting fee, the coupon's discount), the validation of each input and the one
//! rounding rule stay together, so the formula below can be read against the code; a split
//! would make the parts share the private arithmetic both ways (a module cycle).
//!
//! # The formula
//!
//! ```text
//! distance_minor  = round(per_km_minor  × distance_m / 1000)
//! time_minor      = round(per_min_minor × duration_s / 60)
//! surged          = round((base_minor + distance_minor + time_minor) × surge_bps / 10000)
//! before_discount = max(minimum_minor, surged) + booking_fee_minor + extra_fee_minor
//! discount_minor  = min(before_discount, round(before_discount × percent_bps / 10000)
//!                                        capped by max_discount_minor, or amount_minor)
//! fare            = before_discount − discount_minor + waiting_minor
//! surge_minor     = surged − (base + distance + time)
//! minimum_fill    = max(0, minimum − surged)
//! ```
//!
//! A parcel ([`parcel_fare`]) adds `parcel_minor = round(per_kg_minor × weight_g / 1000)`
//! of its category's [`ParcelPricing`] to `before_discount`, beside the booking and extra
//! fees: it is not surged, it does not count towards the minimum, and a coupon discounts
//! it like the rest. Weights are whole grams (the API's `weight_kg` × 1000, rounded half
//! up by the server), so the arithmetic stays on integers.
//!
//! **Rounding** — `round(n / d)` is half up on exact integers: the quotient, plus one when
//! the remainder is at least half the divisor (`3703.5 → 3704`, `3703.49… → 3703`). It is
//! applied to each part on its own and implemented once, in `div_round_half_up`. All
//! numerators are non-negative: inputs that could make one negative are refused instead.
//!
//! # Where API.md is silent (decisions)
//!
//! - **Waiting fee** (final fares only): `wait_per_min_minor` × every *started* minute
//!   waited beyond `free_wait_s` (181 s with 180 s free is one minute). It is added after
//!   the discount, so a coupon never discounts waiting and `min_fare_minor` compares with
//!   the ride alone; the breakdown shows it as `waiting_minor`, always 0 in estimates.
//! - **Cancellation window**: [`Pricing::free_cancel_s`], default 120 s after acceptance,
//!   inclusive; a rider who cancels later pays `cancel_fee_minor`.
//! - **Surge** must be at least 10000 bps (×1.0): a surge of 0 is an unset value, not a
//!   free ride, and a negative surge line on a receipt would confuse riders.
//! - **Routes** longer than [`MAX_DISTANCE_M`] or [`MAX_DURATION_S`] are refused as
//!   [`FareError::InvalidRoute`]: no ride comes near them, so such a number is a bug or an
//!   attack, and it is better named than priced.
//! - **Coupons** are checked once, at booking, against the estimate ([`Coupon::check`]);
//!   at completion the discount is applied to the final amount without checking again (the
//!   rider was promised it). A coupon is valid from `valid_from` (inclusive) until
//!   `valid_until` (exclusive). A coupon without a currency applies its minor-unit amounts in
//!   the fare's currency; one with a currency is refused for fares in another.
//! - **Billed distance** at completion ([`billed_distance_m`]): the driver's report, at
//!   most the larger of ×1.25 the distance the engine saw driven and ×2 the planned route;
//!   without a report, the distance driven (or the planned route if the engine saw none).
//! - **Commission** rounds half up on the platform's side; the driver gets the rest, so the
//!   two parts always sum to the fare.
//! - **Parcel weight** has one limit, here ([`Pricing::max_parcel_g`]): the category's
//!   `parcel.max_weight_kg`, or [`DEFAULT_MAX_PARCEL_KG`] for a category without parcel
//!   prices (which then carries parcels at its ride price). Heavier is
//!   [`FareError::ParcelTooHeavy`] (`422 parcel_too_heavy`), at estimate and at booking.
//!
//! # Booking with a coupon
//!
//! ```text
//! let quote = estimate(&pricing, currency, extra, &route, surge_bps, None)?;
//! coupon.check(now, quote.fare, uses_total, uses_by_rider)?;      // → 422 coupon_invalid
//! let quote = estimate(&pricing, currency, extra, &route, surge_bps, Some(&coupon.discount))?;
//! ```

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::CouponId;
use crate::money::{Currency, Money};
use crate::route::{Route, RouteSource};

/// Basis points in one whole: 10000 bps = ×1.0 = 100 %.
pub const BPS_PER_UNIT: u32 = 10_000;
/// The longest route priced: 100,000 km, two and a half times round the Earth.
pub const MAX_DISTANCE_M: u64 = 100_000_000;
/// The longest ride priced: 31 days.
pub const MAX_DURATION_S: u64 = 31 * 24 * 60 * 60;
/// [`Pricing::free_cancel_s`] when a zone's pricing does not say.
pub const DEFAULT_FREE_CANCEL_S: u32 = 120;
/// The heaviest parcel a category without [`ParcelPricing`] carries, kilograms.
pub const DEFAULT_MAX_PARCEL_KG: u32 = 50;
/// The most a category's [`ParcelPricing::max_weight_kg`] may say: a tonne (a van's load).
pub const MAX_PARCEL_WEIGHT_KG: u32 = 1_000;
const GRAMS_PER_KG: i128 = 1_000;

const METRES_PER_KM: i128 = 1_000;
const SECONDS_PER_MINUTE: i128 = 60;
const BPS: i128 = BPS_PER_UNIT as i128;

/// Why a fare could not be computed.
///
/// HTTP: [`FareError::Coupon`] is `422 coupon_invalid` with the rejection as the message;
/// the `Invalid*` variants are refused definitions (`400 invalid_request` where they come
/// from a request, an internal error where they come from stored state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FareError {
    /// An amount does not fit in 64 bits.
    #[error("fare arithmetic overflow: an amount does not fit in 64 bits")]
    Overflow,
    /// A pricing field, the zone's extra fee, the surge or a commission rate was refused.
    #[error("invalid pricing: {0}")]
    InvalidPricing(&'static str),
    /// A route's distance or duration is beyond what a ride can be.
    #[error("invalid route: {0}")]
    InvalidRoute(&'static str),
    /// A coupon's definition was refused.
    #[error("invalid coupon: {0}")]
    InvalidCoupon(&'static str),
    /// An amount handed in (a fare to split) was refused.
    #[error("invalid amount: {0}")]
    InvalidAmount(&'static str),
    /// A valid coupon that does not apply to this fare, now, for this rider.
    #[error("coupon not applicable: {0}")]
    Coupon(#[from] CouponRejection),
    /// A parcel heavier than its category carries (`422 parcel_too_heavy`).
    #[error("the parcel weighs {weight_g} g; this category carries at most {max_weight_kg} kg")]
    ParcelTooHeavy {
        /// The parcel's weight.
        weight_g: u32,
        /// The category's limit ([`Pricing::max_parcel_g`] in kilograms).
        max_weight_kg: u32,
    },
}

/// What a category charges for parcels (API.md "Parcels": pricing's `parcel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParcelPricing {
    /// Price of one kilogram, added to the fare (`round(per_kg_minor × weight_g / 1000)`).
    pub per_kg_minor: i64,
    /// The heaviest parcel the category carries, whole kilograms (1 to
    /// [`MAX_PARCEL_WEIGHT_KG`]).
    pub max_weight_kg: u32,
}

/// One category's prices in a zone, in the zone's currency (API.md, zone `pricing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Flat amount every ride starts with.
    pub base_minor: i64,
    /// Price of one kilometre.
    pub per_km_minor: i64,
    /// Price of one minute.
    pub per_min_minor: i64,
    /// The least a ride costs, before booking and extra fees.
    pub minimum_minor: i64,
    /// Added to every ride, after the minimum.
    pub booking_fee_minor: i64,
    /// Charged to a rider who cancels after the free window.
    pub cancel_fee_minor: i64,
    /// Price of each started minute waited at pickup beyond `free_wait_s`.
    pub wait_per_min_minor: i64,
    /// Seconds a driver waits at pickup for free.
    pub free_wait_s: u32,
    /// The platform's share of a fare, in basis points (at most 10000).
    pub commission_bps: u32,
    /// Seconds after acceptance during which a rider cancels for free. Not in API.md's
    /// example; defaults to [`DEFAULT_FREE_CANCEL_S`].
    #[serde(default = "default_free_cancel_s")]
    pub free_cancel_s: u32,
    /// Parcel prices and the weight limit; `None`: parcels cost a ride's price and weigh
    /// at most [`DEFAULT_MAX_PARCEL_KG`].
    #[serde(default)]
    pub parcel: Option<ParcelPricing>,
}

fn default_free_cancel_s() -> u32 {
    DEFAULT_FREE_CANCEL_S
}

impl Pricing {
    /// Refuses negative amounts and a commission above 10000 bps.
    pub fn validate(&self) -> Result<(), FareError> {
        let amounts = [
            (self.base_minor, "base_minor is negative"),
            (self.per_km_minor, "per_km_minor is negative"),
            (self.per_min_minor, "per_min_minor is negative"),
            (self.minimum_minor, "minimum_minor is negative"),
            (self.booking_fee_minor, "booking_fee_minor is negative"),
            (self.cancel_fee_minor, "cancel_fee_minor is negative"),
            (self.wait_per_min_minor, "wait_per_min_minor is negative"),
        ];
        if let Some(&(_, why)) = amounts.iter().find(|(amount, _)| *amount < 0) {
            return Err(FareError::InvalidPricing(why));
        }
        if let Some(p) = self.parcel {
            if p.per_kg_minor < 0 {
                return Err(FareError::InvalidPricing("parcel.per_kg_minor is negative"));
            }
            if !(1..=MAX_PARCEL_WEIGHT_KG).contains(&p.max_weight_kg) {
                return Err(FareError::InvalidPricing("parcel.max_weight_kg must be from 1 to 1000"));
            }
        }
        validate_commission_bps(self.commission_bps)
    }

    /// The heaviest parcel this category carries, grams: the one weight limit of the
    /// engine (see the module docs).
    pub fn max_parcel_g(&self) -> u32 {
        self.parcel.map_or(DEFAULT_MAX_PARCEL_KG, |p| p.max_weight_kg).saturating_mul(1_000)
    }

    /// What a parcel of `weight_g` adds to the fare: `round(per_kg_minor × weight_g /
    /// 1000)` (0 without parcel prices); [`FareError::ParcelTooHeavy`] above
    /// [`Pricing::max_parcel_g`].
    pub fn parcel_minor(&self, weight_g: u32) -> Result<i64, FareError> {
        self.validate()?;
        to_minor(self.parcel_part(weight_g)?)
    }

    fn parcel_part(&self, weight_g: u32) -> Result<i128, FareError> {
        let max = self.max_parcel_g();
        if weight_g > max {
            return Err(FareError::ParcelTooHeavy { weight_g, max_weight_kg: max / 1_000 });
        }
        match self.parcel {
            Some(p) => scale(i128::from(p.per_kg_minor), i128::from(weight_g), GRAMS_PER_KG),
            None => Ok(0),
        }
    }
}

/// Every line of a fare; they add up to it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Breakdown {
    /// [`Pricing::base_minor`].
    pub base_minor: i64,
    /// The distance part, `round(per_km_minor × distance_m / 1000)`.
    pub distance_minor: i64,
    /// The time part, `round(per_min_minor × duration_s / 60)`.
    pub time_minor: i64,
    /// What the surge adds to base + distance + time.
    pub surge_minor: i64,
    /// What lifts the surged amount to the minimum fare, or 0.
    pub minimum_fill_minor: i64,
    /// [`Pricing::booking_fee_minor`].
    pub booking_fee_minor: i64,
    /// The zone's extra fee.
    pub extra_fee_minor: i64,
    /// The waiting fee; always 0 in an estimate.
    #[serde(default)]
    pub waiting_minor: i64,
    /// The coupon's discount, subtracted.
    pub discount_minor: i64,
    /// What the parcel's weight adds (`round(per_kg_minor × weight_g / 1000)`); 0 for a
    /// ride.
    #[serde(default)]
    pub parcel_minor: i64,
}

/// A priced ride: an estimate, or the final fare at completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FareQuote {
    /// What the rider pays.
    pub fare: Money,
    /// The distance priced, whole metres.
    pub distance_m: u64,
    /// The duration priced, whole seconds.
    pub duration_s: u64,
    /// The surge applied, basis points (10000 = ×1.0).
    pub surge_bps: u32,
    /// The coupon's discount (also in the breakdown, as the API shows both).
    pub discount_minor: i64,
    /// Where the distance and duration came from.
    pub route_source: RouteSource,
    /// The lines that add up to `fare`.
    pub breakdown: Breakdown,
}

/// The price of a ride of `route` before it happens: the formula of the module docs, with
/// no waiting fee.
///
/// `extra_fee_minor` is the zone's extra fee; `surge_bps` the zone's current surge (at least
/// 10000). Eligibility of a coupon is [`Coupon::check`]'s business; this only applies its
/// discount.
pub fn estimate(
    pricing: &Pricing,
    currency: Currency,
    extra_fee_minor: i64,
    route: &Route,
    surge_bps: u32,
    coupon: Option<&CouponDiscount>,
) -> Result<FareQuote, FareError> {
    // Nobody has waited yet: the waiting fee of 0 s is 0 whatever `free_wait_s` is.
    final_fare(pricing, currency, extra_fee_minor, route, surge_bps, 0, coupon)
}

/// The fare at completion: the formula on the `actual` distance and duration with the surge
/// locked at booking, plus the waiting fee for `waited_s` seconds at pickup. Every input is
/// validated here ([`estimate`] is this with no waiting).
///
/// `actual.source` records where the actual distance and duration came from. The coupon's
/// discount applies to the ride, not to the waiting fee (see the module docs).
pub fn final_fare(
    pricing: &Pricing,
    currency: Currency,
    extra_fee_minor: i64,
    actual: &Route,
    locked_surge_bps: u32,
    waited_s: u64,
    coupon: Option<&CouponDiscount>,
) -> Result<FareQuote, FareError> {
    priced(pricing, currency, extra_fee_minor, actual, locked_surge_bps, waited_s, None, coupon)
}

/// The fare of a parcel of `weight_g` grams: [`final_fare`] (or, with `waited_s` 0, the
/// estimate) plus `parcel_minor` before the discount (see the module docs); a parcel above
/// [`Pricing::max_parcel_g`] is [`FareError::ParcelTooHeavy`].
#[allow(clippy::too_many_arguments)]
pub fn parcel_fare(
    pricing: &Pricing,
    currency: Currency,
    extra_fee_minor: i64,
    route: &Route,
    surge_bps: u32,
    waited_s: u64,
    weight_g: u32,
    coupon: Option<&CouponDiscount>,
) -> Result<FareQuote, FareError> {
    priced(pricing, currency, extra_fee_minor, route, surge_bps, waited_s, Some(weight_g), coupon)
}

#[allow(clippy::too_many_arguments)]
fn priced(
    pricing: &Pricing,
    currency: Currency,
    extra_fee_minor: i64,
    actual: &Route,
    locked_surge_bps: u32,
    waited_s: u64,
    parcel_g: Option<u32>,
    coupon: Option<&CouponDiscount>,
) -> Result<FareQuote, FareError> {
    pricing.validate()?;
    if extra_fee_minor < 0 {
        return Err(FareError::InvalidPricing("extra_fee_minor is negative"));
    }
    if locked_surge_bps < BPS_PER_UNIT {
        return Err(FareError::InvalidPricing("surge_bps is below 10000 (×1.0)"));
    }
    if actual.distance_m > MAX_DISTANCE_M {
        return Err(FareError::InvalidRoute("distance_m is above 100,000 km"));
    }
    if actual.duration_s > MAX_DURATION_S {
        return Err(FareError::InvalidRoute("duration_s is above 31 days"));
    }
    if let Some(discount) = coupon {
        discount.validate()?;
    }

    // Every numerator below is non-negative (validated inputs, surge ≥ ×1.0), as
    // `div_round_half_up` requires. Sums and products are checked i128; every amount shown
    // is narrowed to i64 at the end, where one too large is an Overflow.
    let base = i128::from(pricing.base_minor);
    let distance = scale(i128::from(pricing.per_km_minor), i128::from(actual.distance_m), METRES_PER_KM)?;
    let time = scale(i128::from(pricing.per_min_minor), i128::from(actual.duration_s), SECONDS_PER_MINUTE)?;
    let unsurged = add(add(base, distance)?, time)?;
    let surged = scale(unsurged, i128::from(locked_surge_bps), BPS)?;
    let minimum = i128::from(pricing.minimum_minor);
    let minimum_fill = sub(minimum, surged)?.max(0);
    let parcel = match parcel_g {
        Some(weight_g) => pricing.parcel_part(weight_g)?,
        None => 0,
    };
    let before_discount = add(
        add(add(surged.max(minimum), i128::from(pricing.booking_fee_minor))?, i128::from(extra_fee_minor))?,
        parcel,
    )?;
    let discount = match coupon {
        Some(discount) => discount.discount(before_discount)?,
        None => 0,
    };
    let waiting = waiting_fee(pricing, waited_s)?;
    let fare = add(sub(before_discount, discount)?, waiting)?;

    let discount_minor = to_minor(discount)?;
    let breakdown = Breakdown {
        base_minor: pricing.base_minor,
        distance_minor: to_minor(distance)?,
        time_minor: to_minor(time)?,
        surge_minor: to_minor(sub(surged, unsurged)?)?,
        minimum_fill_minor: to_minor(minimum_fill)?,
        booking_fee_minor: pricing.booking_fee_minor,
        extra_fee_minor,
        waiting_minor: to_minor(waiting)?,
        discount_minor,
        parcel_minor: to_minor(parcel)?,
    };
    Ok(FareQuote {
        fare: Money::new(to_minor(fare)?, currency),
        distance_m: actual.distance_m,
        duration_s: actual.duration_s,
        surge_bps: locked_surge_bps,
        discount_minor,
        route_source: actual.source,
        breakdown,
    })
}

/// The waiting fee for `waited_s` seconds at pickup: `wait_per_min_minor` × every started
/// minute beyond `free_wait_s`.
pub fn waiting_fee_minor(pricing: &Pricing, waited_s: u64) -> Result<i64, FareError> {
    pricing.validate()?;
    to_minor(waiting_fee(pricing, waited_s)?)
}

/// What a rider who cancels at `cancelled_at` pays for a trip accepted at `accepted_at`:
/// `cancel_fee_minor` once more than `free_cancel_s` have passed, else 0.
///
/// The window is inclusive: cancelling exactly `free_cancel_s` after acceptance is free. A
/// rider who cancels before any driver accepted pays nothing; callers do not call this then.
pub fn cancellation_fee(pricing: &Pricing, accepted_at: Timestamp, cancelled_at: Timestamp) -> Result<i64, FareError> {
    pricing.validate()?;
    if cancelled_at > accepted_at.plus_secs(pricing.free_cancel_s) { Ok(pricing.cancel_fee_minor) } else { Ok(0) }
}

/// A driver's reported distance is billed up to this share (basis points) of the
/// distance the engine saw driven: ×1.25 leaves room for positions the engine never saw
/// (coalesced reports, curves cut between two fixes, a phone that lost GPS for a while).
pub const BILLED_OVER_DRIVEN_BPS: u64 = 12_500;
/// ... or up to this share of the planned route, whichever is larger: ×2 covers a detour
/// or a ride whose positions did not reach the engine, never a made-up 90 km.
pub const BILLED_OVER_PLANNED_BPS: u64 = 20_000;

/// The distance a completed ride is billed for, in metres.
///
/// - reported by the driver: that, but at most
///   `max(driven_m × BILLED_OVER_DRIVEN_BPS, planned_m × BILLED_OVER_PLANNED_BPS) / 10000`
///   (rounded down);
/// - not reported: `driven_m` when the engine saw the car move, else `planned_m`.
///
/// `driven_m` is the sum of the great-circle steps between the positions the engine
/// published while the ride was in progress; `planned_m` the route locked at booking.
/// The driver's app measures the road better than straight steps between fixes do, so a
/// report is trusted within the bound, never beyond it.
pub fn billed_distance_m(reported_m: Option<u64>, driven_m: u64, planned_m: u64) -> u64 {
    let share = |m: u64, bps: u64| {
        u64::try_from(u128::from(m) * u128::from(bps) / u128::from(BPS_PER_UNIT)).unwrap_or(u64::MAX)
    };
    match reported_m {
        Some(r) => r.min(share(driven_m, BILLED_OVER_DRIVEN_BPS).max(share(planned_m, BILLED_OVER_PLANNED_BPS))),
        None if driven_m > 0 => driven_m,
        None => planned_m,
    }
}

/// Splits `fare_minor` into `(platform_minor, driver_minor)`: the platform's
/// `commission_bps` share rounded half up, the driver the rest. The parts sum to the fare.
pub fn commission(fare_minor: i64, commission_bps: u32) -> Result<(i64, i64), FareError> {
    validate_commission_bps(commission_bps)?;
    if fare_minor < 0 {
        return Err(FareError::InvalidAmount("fare_minor is negative"));
    }
    let fare = i128::from(fare_minor);
    let platform = scale(fare, i128::from(commission_bps), BPS)?;
    // platform ≤ fare because commission_bps ≤ 10000, so the driver's part is ≥ 0.
    Ok((to_minor(platform)?, to_minor(sub(fare, platform)?)?))
}

/// How a coupon discounts: a percentage (optionally capped) or a fixed amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CouponDiscount {
    /// `percent_bps` of the fare (1..=10000), at most `max_discount_minor` when set.
    Percent {
        /// The share taken off, basis points.
        percent_bps: u32,
        /// The most it takes off, minor units.
        max_discount_minor: Option<i64>,
    },
    /// A fixed amount off (more than zero), never more than the fare.
    Amount {
        /// The amount taken off, minor units.
        amount_minor: i64,
    },
}

impl CouponDiscount {
    /// Refuses a percentage outside 1..=10000 bps, a cap or an amount not above zero.
    pub fn validate(&self) -> Result<(), FareError> {
        match *self {
            Self::Percent { percent_bps, max_discount_minor } => {
                if !(1..=BPS_PER_UNIT).contains(&percent_bps) {
                    return Err(FareError::InvalidCoupon("percent_bps must be from 1 to 10000"));
                }
                if max_discount_minor.is_some_and(|cap| cap <= 0) {
                    return Err(FareError::InvalidCoupon("max_discount_minor must be above zero"));
                }
                Ok(())
            }
            Self::Amount { amount_minor } if amount_minor <= 0 => {
                Err(FareError::InvalidCoupon("amount_minor must be above zero"))
            }
            Self::Amount { .. } => Ok(()),
        }
    }

    /// The discount on `before_discount` (≥ 0), for a validated discount.
    fn discount(&self, before_discount: i128) -> Result<i128, FareError> {
        let wanted = match *self {
            Self::Percent { percent_bps, max_discount_minor } => {
                let share = scale(before_discount, i128::from(percent_bps), BPS)?;
                max_discount_minor.map_or(share, |cap| share.min(i128::from(cap)))
            }
            Self::Amount { amount_minor } => i128::from(amount_minor),
        };
        Ok(wanted.min(before_discount))
    }
}

/// A promotion code and its rules (API.md, `POST /v1/admin/coupons`).
///
/// Serialized flat, as the API shows it: `percent_bps` (+ `max_discount_minor`) or
/// `amount_minor`. Deserializing validates (see [`Coupon::validate`]). Timestamps are
/// [`Timestamp`]s (ms since the epoch); the HTTP layer renders them as RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CouponFields", into = "CouponFields")]
pub struct Coupon {
    /// The coupon's id.
    pub id: CouponId,
    /// What riders type: 1 to 64 ASCII letters, digits, `-` or `_`.
    pub code: String,
    /// What it takes off.
    pub discount: CouponDiscount,
    /// The least fare (before discount) it applies to.
    pub min_fare_minor: Option<i64>,
    /// First instant it applies (inclusive).
    pub valid_from: Option<Timestamp>,
    /// First instant it no longer applies (exclusive).
    pub valid_until: Option<Timestamp>,
    /// How many times it can be redeemed in all.
    pub max_uses: Option<u64>,
    /// How many times one rider can redeem it.
    pub max_uses_per_rider: Option<u64>,
    /// The only currency it applies in; any when `None` (its amounts are then taken in the
    /// fare's currency).
    pub currency: Option<Currency>,
}

/// The longest coupon code accepted, bytes.
pub const MAX_COUPON_CODE_LEN: usize = 64;

impl Coupon {
    /// Refuses a malformed code, discount, minimum fare, validity window or use limit.
    pub fn validate(&self) -> Result<(), FareError> {
        let code_ok = (1..=MAX_COUPON_CODE_LEN).contains(&self.code.len())
            && self.code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !code_ok {
            return Err(FareError::InvalidCoupon("code must be 1 to 64 ASCII letters, digits, `-` or `_`"));
        }
        self.discount.validate()?;
        if self.min_fare_minor.is_some_and(|m| m < 0) {
            return Err(FareError::InvalidCoupon("min_fare_minor is negative"));
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until)
            && until <= from
        {
            return Err(FareError::InvalidCoupon("valid_until must be after valid_from"));
        }
        if self.max_uses == Some(0) || self.max_uses_per_rider == Some(0) {
            return Err(FareError::InvalidCoupon("max_uses and max_uses_per_rider must be at least 1"));
        }
        Ok(())
    }

    /// Whether this coupon applies at `now` to a fare of `fare_before_discount`, given how
    /// many times it was redeemed before (`uses_total`, `uses_by_rider`). The first rule
    /// broken, in this order: not yet valid, expired, used up, used up by this rider, wrong
    /// currency, fare below the minimum.
    pub fn check(
        &self,
        now: Timestamp,
        fare_before_discount: Money,
        uses_total: u64,
        uses_by_rider: u64,
    ) -> Result<(), CouponRejection> {
        if let Some(valid_from) = self.valid_from.filter(|&from| now < from) {
            return Err(CouponRejection::NotYetValid { valid_from });
        }
        if let Some(valid_until) = self.valid_until.filter(|&until| now >= until) {
            return Err(CouponRejection::Expired { valid_until });
        }
        if let Some(max_uses) = self.max_uses.filter(|&max| uses_total >= max) {
            return Err(CouponRejection::UsedUp { max_uses });
        }
        if let Some(max_uses_per_rider) = self.max_uses_per_rider.filter(|&m| uses_by_rider >= m) {
            return Err(CouponRejection::UsedUpByRider { max_uses_per_rider });
        }
        let fare_currency = fare_before_discount.currency;
        if let Some(coupon) = self.currency.filter(|&c| c != fare_currency) {
            return Err(CouponRejection::WrongCurrency { coupon, fare: fare_currency });
        }
        if let Some(min) = self.min_fare_minor.filter(|&min| fare_before_discount.amount_minor < min) {
            return Err(CouponRejection::FareBelowMinimum {
                minimum: Money::new(min, fare_currency),
                fare: fare_before_discount,
            });
        }
        Ok(())
    }
}

/// Why a valid coupon does not apply (HTTP `422 coupon_invalid`; this is the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CouponRejection {
    /// Before `valid_from`.
    #[error("the coupon is not valid yet")]
    NotYetValid {
        /// When it starts to apply.
        valid_from: Timestamp,
    },
    /// At or after `valid_until`.
    #[error("the coupon has expired")]
    Expired {
        /// When it stopped applying.
        valid_until: Timestamp,
    },
    /// Redeemed `max_uses` times already.
    #[error("the coupon has been used up")]
    UsedUp {
        /// Its limit.
        max_uses: u64,
    },
    /// Redeemed `max_uses_per_rider` times by this rider already.
    #[error("you have already used this coupon {max_uses_per_rider} time(s), its limit")]
    UsedUpByRider {
        /// Its limit per rider.
        max_uses_per_rider: u64,
    },
    /// The coupon is for another currency.
    #[error("the coupon applies to fares in {coupon}, not {fare}")]
    WrongCurrency {
        /// The coupon's currency.
        coupon: Currency,
        /// The fare's currency.
        fare: Currency,
    },
    /// The fare before discount is below the coupon's minimum.
    #[error("the coupon needs a fare of at least {minimum}; this fare is {fare}")]
    FareBelowMinimum {
        /// The coupon's minimum fare.
        minimum: Money,
        /// The fare it was tried on.
        fare: Money,
    },
}

/// `Coupon` as the API spells it: the discount's fields flat beside the others.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CouponFields {
    id: CouponId,
    code: String,
    #[serde(default)]
    percent_bps: Option<u32>,
    #[serde(default)]
    max_discount_minor: Option<i64>,
    #[serde(default)]
    amount_minor: Option<i64>,
    #[serde(default)]
    min_fare_minor: Option<i64>,
    #[serde(default)]
    valid_from: Option<Timestamp>,
    #[serde(default)]
    valid_until: Option<Timestamp>,
    #[serde(default)]
    max_uses: Option<u64>,
    #[serde(default)]
    max_uses_per_rider: Option<u64>,
    #[serde(default)]
    currency: Option<Currency>,
}

impl TryFrom<CouponFields> for Coupon {
    type Error = FareError;

    fn try_from(f: CouponFields) -> Result<Self, FareError> {
        let discount = match (f.percent_bps, f.amount_minor, f.max_discount_minor) {
            (Some(percent_bps), None, max_discount_minor) => {
                CouponDiscount::Percent { percent_bps, max_discount_minor }
            }
            (None, Some(amount_minor), None) => CouponDiscount::Amount { amount_minor },
            (None, Some(_), Some(_)) => {
                return Err(FareError::InvalidCoupon("max_discount_minor applies to percent_bps coupons only"));
            }
            _ => {
                return Err(FareError::InvalidCoupon("exactly one of percent_bps and amount_minor is required"));
            }
        };
        let coupon = Coupon {
            id: f.id,
            code: f.code,
            discount,
            min_fare_minor: f.min_fare_minor,
            valid_from: f.valid_from,
            valid_until: f.valid_until,
            max_uses: f.max_uses,
            max_uses_per_rider: f.max_uses_per_rider,
            currency: f.currency,
        };
        coupon.validate()?;
        Ok(coupon)
    }
}

impl From<Coupon> for CouponFields {
    fn from(c: Coupon) -> Self {
        let (percent_bps, max_discount_minor, amount_minor) = match c.discount {
            CouponDiscount::Percent { percent_bps, max_discount_minor } => {
                (Some(percent_bps), max_discount_minor, None)
            }
            CouponDiscount::Amount { amount_minor } => (None, None, Some(amount_minor)),
        };
        CouponFields {
            id: c.id,
            code: c.code,
            percent_bps,
            max_discount_minor,
            amount_minor,
            min_fare_minor: c.min_fare_minor,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            max_uses: c.max_uses,
            max_uses_per_rider: c.max_uses_per_rider,
            currency: c.currency,
        }
    }
}

/// `wait_per_min_minor × ceil((waited_s − free_wait_s) / 60)`, 0 within the free wait.
fn waiting_fee(pricing: &Pricing, waited_s: u64) -> Result<i128, FareError> {
    let beyond_s = waited_s.saturating_sub(u64::from(pricing.free_wait_s));
    let started_minutes = beyond_s.div_ceil(60);
    mul(i128::from(pricing.wait_per_min_minor), i128::from(started_minutes))
}

fn validate_commission_bps(commission_bps: u32) -> Result<(), FareError> {
    if commission_bps > BPS_PER_UNIT {
        return Err(FareError::InvalidPricing("commission_bps is above 10000 (100 %)"));
    }
    Ok(())
}

/// `round(amount × numerator / denominator)`, half up, for non-negative `amount` and
/// `numerator` and a positive constant `denominator`.
fn scale(amount: i128, numerator: i128, denominator: i128) -> Result<i128, FareError> {
    Ok(div_round_half_up(mul(amount, numerator)?, denominator))
}

/// `n / d` rounded half up: the quotient, plus one when the remainder is at least half of
/// `d` (`7 / 2 = 3.5 → 4`, `3_703_500 / 1000 → 3704`, `3_703_499 / 1000 → 3703`).
///
/// The one rounding rule of the fare engine. Defined for `n ≥ 0` and `d > 0` only; every
/// caller passes a validated, non-negative numerator and one of the positive constants
/// 1000, 60 or 10000, so division cannot fail. `r ≥ d − r` is `2r ≥ d` without the
/// doubling, and the `+ 1` cannot overflow because it only happens for `d ≥ 2`, when
/// `q ≤ i128::MAX / 2`.
fn div_round_half_up(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r >= d - r { q + 1 } else { q }
}

fn mul(a: i128, b: i128) -> Result<i128, FareError> {
    a.checked_mul(b).ok_or(FareError::Overflow)
}

fn add(a: i128, b: i128) -> Result<i128, FareError> {
    a.checked_add(b).ok_or(FareError::Overflow)
}

fn sub(a: i128, b: i128) -> Result<i128, FareError> {
    a.checked_sub(b).ok_or(FareError::Overflow)
}

/// Narrows an amount to the `i64` minor units that money is kept in.
fn to_minor(amount: i128) -> Result<i64, FareError> {
    i64::try_from(amount).map_err(|_| FareError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn egp() -> Currency {
        Currency::new("EGP").unwrap()
    }

    /// The `economy` pricing of API.md's zone example.
    fn economy() -> Pricing {
        crate::demo::ECONOMY
    }

    /// Prices chosen so that every part of a ride of 1500 m, 30 s lands on a tie.
    fn ties() -> Pricing {
        Pricing {
            base_minor: 0,
            per_km_minor: 333,
            per_min_minor: 45,
            minimum_minor: 0,
            booking_fee_minor: 0,
            ..economy()
        }
    }

    /// Yen prices: the formula knows no exponent, minor units are whole yen.
    fn yen() -> Pricing {
        Pricing {
            base_minor: 500,
            per_km_minor: 300,
            per_min_minor: 50,
            minimum_minor: 700,
            booking_fee_minor: 0,
            cancel_fee_minor: 500,
            wait_per_min_minor: 20,
            free_wait_s: 120,
            commission_bps: 2000,
            free_cancel_s: DEFAULT_FREE_CANCEL_S,
            parcel: None,
        }
    }

    fn route(distance_m: u64, duration_s: u64) -> Route {
        Route { distance_m, duration_s, source: RouteSource::Router }
    }

    fn percent(percent_bps: u32, max_discount_minor: Option<i64>) -> CouponDiscount {
        CouponDiscount::Percent { percent_bps, max_discount_minor }
    }

    /// base + distance + time + surge + minimum_fill + booking + extra + waiting − discount,
    /// in i128 so that lines near i64::MAX add up without overflowing the test itself.
    fn sum_of_lines(b: &Breakdown) -> i128 {
        [
            b.base_minor,
            b.distance_minor,
            b.time_minor,
            b.surge_minor,
            b.minimum_fill_minor,
            b.booking_fee_minor,
            b.extra_fee_minor,
            b.parcel_minor,
            b.waiting_minor,
        ]
        .into_iter()
        .map(i128::from)
        .sum::<i128>()
            - i128::from(b.discount_minor)
    }

    struct Case {
        name: &'static str,
        pricing: Pricing,
        currency: &'static str,
        extra_fee_minor: i64,
        route: Route,
        surge_bps: u32,
        coupon: Option<CouponDiscount>,
        /// `None`: an estimate; `Some(s)`: a final fare after waiting `s` seconds.
        waited_s: Option<u64>,
        /// base, distance, time, surge, minimum_fill, booking, extra, waiting, discount.
        lines: [i64; 9],
        fare_minor: i64,
    }

    #[test]
    fn hand_computed_fares() {
        let cases = [
            Case {
                name: "API.md's example",
                // distance = 450 × 8230 / 1000 = 3703.5 → 3704 (a tie goes up)
                // time     =  75 ×  960 / 60   = 1200
                // surged   = (1500 + 3704 + 1200) × 10000 / 10000 = 6404, surge 0
                // fill     = max(0, 2500 − 6404) = 0
                // fare     = 6404 + 300 + 0 = 6704
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(8230, 960),
                surge_bps: 10_000,
                coupon: None,
                waited_s: None,
                lines: [1500, 3704, 1200, 0, 0, 300, 0, 0, 0],
                fare_minor: 6704,
            },
            Case {
                name: "below the half rounds down",
                // distance = 450 × 8229 / 1000 = 3703.05 → 3703
                // time     =  75 ×  959 / 60   = 1198.75 → 1199
                // surged   = 1500 + 3703 + 1199 = 6402; fare = 6402 + 300 = 6702
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(8229, 959),
                surge_bps: 10_000,
                coupon: None,
                waited_s: None,
                lines: [1500, 3703, 1199, 0, 0, 300, 0, 0, 0],
                fare_minor: 6702,
            },
            Case {
                name: "a short ride is lifted to the minimum",
                // distance = 450 × 500 / 1000 = 225; time = 75 × 60 / 60 = 75
                // surged   = 1500 + 225 + 75 = 1800
                // fill     = 2500 − 1800 = 700; fare = 2500 + 300 = 2800
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(500, 60),
                surge_bps: 10_000,
                coupon: None,
                waited_s: None,
                lines: [1500, 225, 75, 0, 700, 300, 0, 0, 0],
                fare_minor: 2800,
            },
            Case {
                name: "surge ×1.35",
                // surged = 6404 × 13500 / 10000 = 8645.4 → 8645; surge = 8645 − 6404 = 2241
                // fare   = 8645 + 300 = 8945
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(8230, 960),
                surge_bps: 13_500,
                coupon: None,
                waited_s: None,
                lines: [1500, 3704, 1200, 2241, 0, 300, 0, 0, 0],
                fare_minor: 8945,
            },
            Case {
                name: "the minimum applies after the surge",
                // surged = 1800 × 12000 / 10000 = 2160; surge = 360
                // fill   = 2500 − 2160 = 340; fare = 2500 + 300 = 2800
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(500, 60),
                surge_bps: 12_000,
                coupon: None,
                waited_s: None,
                lines: [1500, 225, 75, 360, 340, 300, 0, 0, 0],
                fare_minor: 2800,
            },
            Case {
                name: "a percent coupon hits its cap",
                // before = 6704; 20 %: 6704 × 2000 / 10000 = 1340.8 → 1341, capped at 1000
                // fare   = 6704 − 1000 = 5704
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(8230, 960),
                surge_bps: 10_000,
                coupon: Some(percent(2000, Some(1000))),
                waited_s: None,
                lines: [1500, 3704, 1200, 0, 0, 300, 0, 0, 1000],
                fare_minor: 5704,
            },
            Case {
                name: "ties everywhere, and a percent coupon under its cap",
                // distance = 333 × 1500 / 1000 = 499.5 → 500
                // time     =  45 ×   30 / 60   = 22.5 → 23
                // surged   = (0 + 500 + 23) × 15000 / 10000 = 784.5 → 785; surge = 262
                // before   = max(0, 785) + 0 + 0 = 785
                // discount = 785 × 5000 / 10000 = 392.5 → 393 (cap 1000 not reached)
                // fare     = 785 − 393 = 392
                pricing: ties(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(1500, 30),
                surge_bps: 15_000,
                coupon: Some(percent(5000, Some(1000))),
                waited_s: None,
                lines: [0, 500, 23, 262, 0, 0, 0, 0, 393],
                fare_minor: 392,
            },
            Case {
                name: "an amount coupon bigger than the fare",
                // before = 2800 (the minimum case); discount = min(5000, 2800) = 2800; fare 0
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(500, 60),
                surge_bps: 10_000,
                coupon: Some(CouponDiscount::Amount { amount_minor: 5000 }),
                waited_s: None,
                lines: [1500, 225, 75, 0, 700, 300, 0, 0, 2800],
                fare_minor: 0,
            },
            Case {
                name: "yen, a 0-exponent currency, with the zone's extra fee",
                // distance = 300 × 3333 / 1000 = 999.9 → 1000
                // time     =  50 ×  450 / 60   = 375
                // surged   = (500 + 1000 + 375) × 12500 / 10000 = 2343.75 → 2344; surge 469
                // fare     = max(700, 2344) + 0 + 100 = 2444 yen
                pricing: yen(),
                currency: "JPY",
                extra_fee_minor: 100,
                route: route(3333, 450),
                surge_bps: 12_500,
                coupon: None,
                waited_s: None,
                lines: [500, 1000, 375, 469, 0, 0, 100, 0, 0],
                fare_minor: 2444,
            },
            Case {
                name: "final fare: locked surge, and 61 s beyond the free wait is 2 minutes",
                // distance = 450 × 9100 / 1000 = 4095; time = 75 × 1140 / 60 = 1425
                // surged   = (1500 + 4095 + 1425) × 13500 / 10000 = 9477; surge = 2457
                // before   = 9477 + 300 = 9777
                // waiting  = 241 − 180 = 61 s → 2 started minutes × 50 = 100
                // fare     = 9777 + 100 = 9877
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(9100, 1140),
                surge_bps: 13_500,
                coupon: None,
                waited_s: Some(241),
                lines: [1500, 4095, 1425, 2457, 0, 300, 0, 100, 0],
                fare_minor: 9877,
            },
            Case {
                name: "final fare: the coupon does not discount waiting",
                // before   = 6704 (API.md's example); 10 %: 670.4 → 670
                // waiting  = 181 − 180 = 1 s → 1 started minute × 50 = 50
                // fare     = 6704 − 670 + 50 = 6084
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(8230, 960),
                surge_bps: 10_000,
                coupon: Some(percent(1000, None)),
                waited_s: Some(181),
                lines: [1500, 3704, 1200, 0, 0, 300, 0, 50, 670],
                fare_minor: 6084,
            },
            Case {
                name: "a zero route costs the minimum plus fees",
                // surged = 1500 + 0 + 0 = 1500; fill = 1000; fare = 2500 + 300 = 2800
                pricing: economy(),
                currency: "EGP",
                extra_fee_minor: 0,
                route: route(0, 0),
                surge_bps: 10_000,
                coupon: None,
                waited_s: Some(180),
                lines: [1500, 0, 0, 0, 1000, 300, 0, 0, 0],
                fare_minor: 2800,
            },
        ];
        for case in &cases {
            let currency = Currency::new(case.currency).unwrap();
            let quote = match case.waited_s {
                None => estimate(
                    &case.pricing,
                    currency,
                    case.extra_fee_minor,
                    &case.route,
                    case.surge_bps,
                    case.coupon.as_ref(),
                ),
                Some(waited_s) => final_fare(
                    &case.pricing,
                    currency,
                    case.extra_fee_minor,
                    &case.route,
                    case.surge_bps,
                    waited_s,
                    case.coupon.as_ref(),
                ),
            }
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let [base, distance, time, surge, fill, booking, extra, waiting, discount] = case.lines;
            let expected = Breakdown {
                base_minor: base,
                distance_minor: distance,
                time_minor: time,
                surge_minor: surge,
                minimum_fill_minor: fill,
                booking_fee_minor: booking,
                extra_fee_minor: extra,
                waiting_minor: waiting,
                discount_minor: discount,
                parcel_minor: 0,
            };
            assert_eq!(quote.breakdown, expected, "{}", case.name);
            assert_eq!(quote.fare, Money::new(case.fare_minor, currency), "{}", case.name);
            assert_eq!(quote.discount_minor, discount, "{}", case.name);
            assert_eq!(sum_of_lines(&quote.breakdown), i128::from(case.fare_minor), "{}", case.name);
            assert_eq!(
                (quote.distance_m, quote.duration_s, quote.surge_bps),
                (case.route.distance_m, case.route.duration_s, case.surge_bps),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn rounding_is_half_up() {
        for (n, d, q) in [
            (0, 1000, 0),
            (499, 1000, 0),
            (500, 1000, 1),
            (3_703_500, 1000, 3704),
            (3_703_499, 1000, 3703),
            (29, 60, 0),
            (30, 60, 1),
            (89, 60, 1),
            (90, 60, 2),
            (4999, 10_000, 0),
            (5000, 10_000, 1),
            (i128::MAX, 10_000, i128::MAX / 10_000 + 1),
        ] {
            assert_eq!(div_round_half_up(n, d), q, "{n} / {d}");
        }
    }

    #[test]
    fn api_example_serializes_as_the_api_shows_it() {
        let quote = estimate(&economy(), egp(), 0, &route(8230, 960), 10_000, None).unwrap();
        assert_eq!(
            serde_json::to_value(quote).unwrap(),
            serde_json::json!({
                "fare": {"amount_minor": 6704, "currency": "EGP"},
                "distance_m": 8230, "duration_s": 960, "surge_bps": 10000, "discount_minor": 0,
                "route_source": "router",
                "breakdown": {"base_minor": 1500, "distance_minor": 3704, "time_minor": 1200,
                              "surge_minor": 0, "minimum_fill_minor": 0, "booking_fee_minor": 300,
                              "extra_fee_minor": 0, "waiting_minor": 0, "discount_minor": 0,
                              "parcel_minor": 0}
            })
        );
        let binary = postcard::to_stdvec(&quote).unwrap();
        assert_eq!(postcard::from_bytes::<FareQuote>(&binary).unwrap(), quote);
    }

    #[test]
    fn pricing_parses_the_api_example_and_refuses_what_is_wrong() {
        let json = r#"{"base_minor": 1500, "per_km_minor": 450, "per_min_minor": 75,
                       "minimum_minor": 2500, "booking_fee_minor": 300,
                       "cancel_fee_minor": 1000, "wait_per_min_minor": 50, "free_wait_s": 180,
                       "commission_bps": 1500}"#;
        let pricing: Pricing = serde_json::from_str(json).unwrap();
        assert_eq!(pricing, economy());
        assert_eq!(pricing.free_cancel_s, 120);
        assert!(serde_json::from_str::<Pricing>(&json.replace("\"base_minor\"", "\"base_minr\"")).is_err());
        assert!(serde_json::from_str::<Pricing>(&json.replace("}", r#", "surcharge": 1}"#)).is_err());
        // API.md "Parcels": `parcel` with its two fields, and nothing else in it.
        let with_parcel = json.replace("}", r#", "parcel": {"per_kg_minor": 250, "max_weight_kg": 20}}"#);
        let parsed: Pricing = serde_json::from_str(&with_parcel).unwrap();
        assert_eq!(parsed.parcel, Some(ParcelPricing { per_kg_minor: 250, max_weight_kg: 20 }));
        let extra = json.replace("}", r#", "parcel": {"per_kg_minor": 250, "max_weight_kg": 20, "x": 1}}"#);
        assert!(serde_json::from_str::<Pricing>(&extra).is_err());

        assert_eq!(economy().validate(), Ok(()));
        let negative = Pricing { per_km_minor: -1, ..economy() };
        assert_eq!(negative.validate(), Err(FareError::InvalidPricing("per_km_minor is negative")));
        let greedy = Pricing { commission_bps: 10_001, ..economy() };
        assert!(matches!(greedy.validate(), Err(FareError::InvalidPricing(_))));
        assert!(matches!(estimate(&negative, egp(), 0, &route(1, 1), 10_000, None), Err(FareError::InvalidPricing(_))));
    }

    #[test]
    fn other_inputs_are_validated() {
        let p = economy();
        let r = route(8230, 960);
        assert_eq!(
            estimate(&p, egp(), -1, &r, 10_000, None),
            Err(FareError::InvalidPricing("extra_fee_minor is negative"))
        );
        for surge_bps in [0, 9_999] {
            assert!(matches!(estimate(&p, egp(), 0, &r, surge_bps, None), Err(FareError::InvalidPricing(_))));
        }
        assert!(estimate(&p, egp(), 0, &route(MAX_DISTANCE_M, MAX_DURATION_S), 10_000, None).is_ok());
        assert!(matches!(
            estimate(&p, egp(), 0, &route(MAX_DISTANCE_M + 1, 0), 10_000, None),
            Err(FareError::InvalidRoute(_))
        ));
        assert!(matches!(
            estimate(&p, egp(), 0, &route(0, MAX_DURATION_S + 1), 10_000, None),
            Err(FareError::InvalidRoute(_))
        ));
        for bad in [
            percent(0, None),
            percent(10_001, None),
            percent(1000, Some(0)),
            CouponDiscount::Amount { amount_minor: 0 },
            CouponDiscount::Amount { amount_minor: -5 },
        ] {
            assert!(
                matches!(estimate(&p, egp(), 0, &r, 10_000, Some(&bad)), Err(FareError::InvalidCoupon(_))),
                "{bad:?}"
            );
        }
        // 100 % off is a free ride, not an error.
        let free = estimate(&p, egp(), 0, &r, 10_000, Some(&percent(10_000, None))).unwrap();
        assert_eq!(free.fare.amount_minor, 0);
    }

    #[test]
    fn overflow_is_an_error() {
        let huge = Pricing { per_km_minor: i64::MAX, ..economy() };
        assert_eq!(estimate(&huge, egp(), 0, &route(MAX_DISTANCE_M, 0), 10_000, None), Err(FareError::Overflow));
        let at_the_edge = Pricing { base_minor: i64::MAX - 300, minimum_minor: 0, ..economy() };
        // i64::MAX − 300 + 300 booking fits exactly; one more minor unit does not.
        let quote = estimate(&at_the_edge, egp(), 0, &route(0, 0), 10_000, None).unwrap();
        assert_eq!(quote.fare.amount_minor, i64::MAX);
        assert_eq!(estimate(&at_the_edge, egp(), 1, &route(0, 0), 10_000, None), Err(FareError::Overflow));
        assert_eq!(estimate(&at_the_edge, egp(), 0, &route(0, 0), u32::MAX, None), Err(FareError::Overflow));
        let waiting_forever = Pricing { wait_per_min_minor: i64::MAX, ..economy() };
        assert_eq!(waiting_fee_minor(&waiting_forever, u64::MAX), Err(FareError::Overflow));
    }

    #[test]
    fn waiting_counts_every_started_minute_beyond_the_free_wait() {
        // free_wait_s = 180, 50 per started minute.
        for (waited_s, fee) in
            [(0, 0), (180, 0), (181, 50), (240, 50), (241, 100), (300, 100), (301, 150), (3_600, 57 * 50)]
        {
            assert_eq!(waiting_fee_minor(&economy(), waited_s), Ok(fee), "{waited_s}");
        }
        // (2⁶⁴ − 1 − 180) / 60 started minutes × 50 does not fit in an i64.
        assert_eq!(waiting_fee_minor(&economy(), u64::MAX), Err(FareError::Overflow));
    }

    #[test]
    fn cancelling_is_free_within_the_window_after_acceptance() {
        let accepted = Timestamp::from_millis(1_700_000_000_000);
        let fee = |after_ms: i64| cancellation_fee(&economy(), accepted, accepted.plus_millis(after_ms));
        assert_eq!(fee(-5_000), Ok(0), "clock skew: before acceptance");
        assert_eq!(fee(0), Ok(0));
        assert_eq!(fee(120_000), Ok(0), "the window's last instant is free");
        assert_eq!(fee(120_001), Ok(1000));
        assert_eq!(fee(3_600_000), Ok(1000));
        let no_window = Pricing { free_cancel_s: 0, ..economy() };
        assert_eq!(cancellation_fee(&no_window, accepted, accepted.plus_millis(1)), Ok(1000));
    }

    #[test]
    fn commission_rounds_half_up_for_the_platform() {
        // 6704 × 1500 / 10000 = 1005.6 → 1006; the driver gets 6704 − 1006 = 5698.
        assert_eq!(commission(6704, 1500), Ok((1006, 5698)));
        // 10 × 1500 / 10000 = 1.5 → 2 (a tie goes to the platform); the driver gets 8.
        assert_eq!(commission(10, 1500), Ok((2, 8)));
        // 13 × 1500 / 10000 = 1.95 → 2; 3 × 1500 / 10000 = 0.45 → 0.
        assert_eq!(commission(13, 1500), Ok((2, 11)));
        assert_eq!(commission(3, 1500), Ok((0, 3)));
        assert_eq!(commission(0, 1500), Ok((0, 0)));
        assert_eq!(commission(i64::MAX, 10_000), Ok((i64::MAX, 0)));
        assert_eq!(commission(i64::MAX, 0), Ok((0, i64::MAX)));
        assert!(matches!(commission(100, 10_001), Err(FareError::InvalidPricing(_))));
        assert!(matches!(commission(-1, 1500), Err(FareError::InvalidAmount(_))));
    }

    fn coupon() -> Coupon {
        Coupon {
            id: CouponId::from_raw(0xc0ffee).unwrap(),
            code: "WELCOME-20".to_owned(),
            discount: percent(2000, Some(1000)),
            min_fare_minor: Some(3000),
            valid_from: Some(Timestamp::from_millis(1_000_000)),
            valid_until: Some(Timestamp::from_millis(2_000_000)),
            max_uses: Some(100),
            max_uses_per_rider: Some(1),
            currency: Some(egp()),
        }
    }

    #[test]
    fn coupon_rules_each_have_a_reason() {
        let c = coupon();
        let fare = Money::new(6704, egp());
        let at = Timestamp::from_millis;
        assert_eq!(c.check(at(1_000_000), fare, 0, 0), Ok(()));
        assert_eq!(c.check(at(1_999_999), fare, 99, 0), Ok(()));
        assert_eq!(c.check(at(999_999), fare, 0, 0), Err(CouponRejection::NotYetValid { valid_from: at(1_000_000) }));
        assert_eq!(c.check(at(2_000_000), fare, 0, 0), Err(CouponRejection::Expired { valid_until: at(2_000_000) }));
        assert_eq!(c.check(at(1_500_000), fare, 100, 0), Err(CouponRejection::UsedUp { max_uses: 100 }));
        assert_eq!(c.check(at(1_500_000), fare, 5, 1), Err(CouponRejection::UsedUpByRider { max_uses_per_rider: 1 }));
        let usd = Currency::new("USD").unwrap();
        assert_eq!(
            c.check(at(1_500_000), Money::new(6704, usd), 0, 0),
            Err(CouponRejection::WrongCurrency { coupon: egp(), fare: usd })
        );
        let low = Money::new(2999, egp());
        let rejection = c.check(at(1_500_000), low, 0, 0).unwrap_err();
        assert_eq!(rejection, CouponRejection::FareBelowMinimum { minimum: Money::new(3000, egp()), fare: low });
        assert_eq!(
            FareError::from(rejection).to_string(),
            "coupon not applicable: the coupon needs a fare of at least 30.00 EGP; this fare is 29.99 EGP"
        );
        // Without limits, a coupon applies anywhere, any time, in any currency.
        let open = Coupon {
            min_fare_minor: None,
            valid_from: None,
            valid_until: None,
            max_uses: None,
            max_uses_per_rider: None,
            currency: None,
            ..coupon()
        };
        assert_eq!(open.check(at(i64::MIN), Money::new(0, usd), u64::MAX, u64::MAX), Ok(()));
    }

    #[test]
    fn coupons_serialize_flat_as_the_api_does_and_validate_on_the_way_in() {
        let json = serde_json::to_value(coupon()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "cpn_0000000000c0ffee", "code": "WELCOME-20",
                "percent_bps": 2000, "max_discount_minor": 1000, "amount_minor": null,
                "min_fare_minor": 3000,
                "valid_from": 1_000_000, "valid_until": 2_000_000,
                "max_uses": 100, "max_uses_per_rider": 1, "currency": "EGP"
            })
        );
        assert_eq!(serde_json::from_value::<Coupon>(json).unwrap(), coupon());
        let binary = postcard::to_stdvec(&coupon()).unwrap();
        assert_eq!(postcard::from_bytes::<Coupon>(&binary).unwrap(), coupon());

        let amount: Coupon =
            serde_json::from_str(r#"{"id":"cpn_0000000000000001","code":"TEN","amount_minor":1000}"#).unwrap();
        assert_eq!(amount.discount, CouponDiscount::Amount { amount_minor: 1000 });
        for bad in [
            r#"{"id":"cpn_0000000000000001","code":"X"}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","percent_bps":10,"amount_minor":10}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":10,"max_discount_minor":5}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","percent_bps":0}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","percent_bps":10001}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":-1}"#,
            r#"{"id":"cpn_0000000000000001","code":"","amount_minor":1}"#,
            r#"{"id":"cpn_0000000000000001","code":"NO SPACES","amount_minor":1}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":1,"min_fare_minor":-1}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":1,"max_uses":0}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":1,"max_uses_per_rider":0}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":1,"valid_from":5,"valid_until":5}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":1,"currency":"egp"}"#,
            r#"{"id":"cpn_0000000000000001","code":"X","amount_minor":1,"percent":1}"#,
        ] {
            assert!(serde_json::from_str::<Coupon>(bad).is_err(), "{bad}");
        }
        // Standing alone (a discount locked into a trip), the discount is tagged by kind.
        let locked = CouponDiscount::Amount { amount_minor: 1000 };
        let json = serde_json::to_string(&locked).unwrap();
        assert_eq!(json, r#"{"amount":{"amount_minor":1000}}"#);
        assert_eq!(serde_json::from_str::<CouponDiscount>(&json).unwrap(), locked);
        assert!(serde_json::from_str::<CouponDiscount>(r#"{"amount":{"amount_minor":1,"x":1}}"#).is_err());
        let long_code = Coupon { code: "A".repeat(MAX_COUPON_CODE_LEN + 1), ..coupon() };
        assert!(matches!(long_code.validate(), Err(FareError::InvalidCoupon(_))));
    }

    // ---- properties -------------------------------------------------------------------

    fn pricing() -> impl Strategy<Value = Pricing> {
        (
            (0..=100_000i64, 0..=100_000i64, 0..=10_000i64, 0..=1_000_000i64),
            (0..=100_000i64, 0..=100_000i64, 0..=10_000i64),
            (0..=3_600u32, 0..=10_000u32, 0..=3_600u32),
        )
            .prop_map(
                |(
                    (base_minor, per_km_minor, per_min_minor, minimum_minor),
                    (booking_fee_minor, cancel_fee_minor, wait_per_min_minor),
                    (free_wait_s, commission_bps, free_cancel_s),
                )| Pricing {
                    base_minor,
                    per_km_minor,
                    per_min_minor,
                    minimum_minor,
                    booking_fee_minor,
                    cancel_fee_minor,
                    wait_per_min_minor,
                    free_wait_s,
                    commission_bps,
                    free_cancel_s,
                    parcel: None,
                },
            )
    }

    fn discount() -> impl Strategy<Value = Option<CouponDiscount>> {
        prop_oneof![
            Just(None),
            (1..=10_000u32, proptest::option::of(1..=1_000_000i64)).prop_map(|(bps, cap)| Some(percent(bps, cap))),
            (1..=1_000_000i64).prop_map(|amount_minor| Some(CouponDiscount::Amount { amount_minor })),
        ]
    }

    /// City-sized and country-sized rides alike.
    fn distance_m() -> impl Strategy<Value = u64> {
        prop_oneof![0..=50_000u64, 0..MAX_DISTANCE_M]
    }

    fn duration_s() -> impl Strategy<Value = u64> {
        prop_oneof![0..=7_200u64, 0..MAX_DURATION_S]
    }

    fn surge_bps() -> impl Strategy<Value = u32> {
        10_000..=100_000u32
    }

    /// Any i64, weighted towards the valid (non-negative) and the huge, so that the
    /// overflow paths are reached, not only the validation.
    fn wild_i64() -> impl Strategy<Value = i64> {
        prop_oneof![any::<i64>(), 0..=i64::MAX, i64::MAX - 1_000..=i64::MAX, 0..=1_000_000i64]
    }

    /// Any u64, weighted towards the accepted range up to `max` and its edge.
    fn wild_u64(max: u64) -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), 0..=max, max - 1_000..=max]
    }

    fn fare_of(
        p: &Pricing,
        extra: i64,
        distance_m: u64,
        duration_s: u64,
        surge_bps: u32,
        waited_s: u64,
        coupon: Option<&CouponDiscount>,
    ) -> i64 {
        final_fare(p, egp(), extra, &route(distance_m, duration_s), surge_bps, waited_s, coupon)
            .unwrap()
            .fare
            .amount_minor
    }

    /// Economy with parcel prices: 250 per kg, up to 20 kg.
    fn parcels() -> Pricing {
        Pricing { parcel: Some(ParcelPricing { per_kg_minor: 250, max_weight_kg: 20 }), ..economy() }
    }

    #[test]
    fn a_parcel_adds_its_weight_rounded_half_up_before_the_discount() {
        let r = route(8230, 960);
        let ride = estimate(&parcels(), egp(), 0, &r, 10_000, None).unwrap();
        assert_eq!(ride.fare.amount_minor, 6704, "API.md's example, as a ride");
        // 2.5 kg × 250 = 625 exactly.
        let q = parcel_fare(&parcels(), egp(), 0, &r, 10_000, 0, 2_500, None).unwrap();
        assert_eq!((q.breakdown.parcel_minor, q.fare.amount_minor), (625, 6704 + 625));
        assert_eq!(sum_of_lines(&q.breakdown), i128::from(q.fare.amount_minor));
        // 1.002 kg × 250 = 250.5 → 251 (half up); 1.001 kg → 250.25 → 250.
        let half = parcel_fare(&parcels(), egp(), 0, &r, 10_000, 0, 1_002, None).unwrap();
        assert_eq!(half.breakdown.parcel_minor, 251);
        let below = parcel_fare(&parcels(), egp(), 0, &r, 10_000, 0, 1_001, None).unwrap();
        assert_eq!(below.breakdown.parcel_minor, 250);
        // Not surged: ×2 surges the ride's part only.
        let surged = parcel_fare(&parcels(), egp(), 0, &r, 20_000, 0, 2_500, None).unwrap();
        let surged_ride = estimate(&parcels(), egp(), 0, &r, 20_000, None).unwrap();
        assert_eq!(surged.fare.amount_minor, surged_ride.fare.amount_minor + 625);
        // A coupon discounts it with the rest: 10 % of 7329 = 732.9 → 733.
        let c = percent(1000, None);
        let off = parcel_fare(&parcels(), egp(), 0, &r, 10_000, 0, 2_500, Some(&c)).unwrap();
        assert_eq!((off.discount_minor, off.fare.amount_minor), (733, 7329 - 733));
        assert_eq!(sum_of_lines(&off.breakdown), i128::from(off.fare.amount_minor));
        // A category without parcel prices carries a parcel at the ride's price.
        let plain = parcel_fare(&economy(), egp(), 0, &r, 10_000, 0, 2_500, None).unwrap();
        assert_eq!((plain.breakdown.parcel_minor, plain.fare), (0, ride.fare));
        assert_eq!(parcels().parcel_minor(1_002), Ok(251));
    }

    #[test]
    fn the_weight_limit_is_the_categorys_or_fifty_kilograms() {
        let r = route(8230, 960);
        assert_eq!(parcels().max_parcel_g(), 20_000);
        assert!(parcel_fare(&parcels(), egp(), 0, &r, 10_000, 0, 20_000, None).is_ok(), "the limit itself is carried");
        assert_eq!(
            parcel_fare(&parcels(), egp(), 0, &r, 10_000, 0, 20_001, None),
            Err(FareError::ParcelTooHeavy { weight_g: 20_001, max_weight_kg: 20 })
        );
        assert_eq!(economy().max_parcel_g(), DEFAULT_MAX_PARCEL_KG * 1_000);
        assert!(parcel_fare(&economy(), egp(), 0, &r, 10_000, 0, 50_000, None).is_ok());
        assert!(matches!(
            parcel_fare(&economy(), egp(), 0, &r, 10_000, 0, u32::MAX, None),
            Err(FareError::ParcelTooHeavy { max_weight_kg: 50, .. })
        ));
        // A definition outside the bounds is refused, naming the field.
        let heavy = Pricing { parcel: Some(ParcelPricing { per_kg_minor: 1, max_weight_kg: 1_001 }), ..economy() };
        assert!(matches!(heavy.validate(), Err(FareError::InvalidPricing(why)) if why.contains("max_weight_kg")));
        let none = Pricing { parcel: Some(ParcelPricing { per_kg_minor: 1, max_weight_kg: 0 }), ..economy() };
        assert!(none.validate().is_err());
        let negative = Pricing { parcel: Some(ParcelPricing { per_kg_minor: -1, max_weight_kg: 5 }), ..economy() };
        assert!(matches!(negative.validate(), Err(FareError::InvalidPricing(why)) if why.contains("per_kg_minor")));
        // The largest price per kilogram on the heaviest load does not overflow.
        let dear = Pricing {
            parcel: Some(ParcelPricing { per_kg_minor: i64::MAX, max_weight_kg: MAX_PARCEL_WEIGHT_KG }),
            ..economy()
        };
        assert_eq!(dear.parcel_minor(1_000_000), Err(FareError::Overflow));
    }

    proptest! {
        #[test]
        fn the_breakdown_adds_up_to_the_fare(
            p in pricing(),
            extra in 0..=10_000i64,
            d in distance_m(),
            t in duration_s(),
            s in surge_bps(),
            waited_s in 0..=7_200u64,
            c in discount(),
        ) {
            let estimated = estimate(&p, egp(), extra, &route(d, t), s, c.as_ref()).unwrap();
            let fare = i128::from(estimated.fare.amount_minor);
            prop_assert_eq!(sum_of_lines(&estimated.breakdown), fare);
            prop_assert_eq!(estimated.breakdown.waiting_minor, 0);
            prop_assert!(estimated.fare.amount_minor >= 0);
            let completed =
                final_fare(&p, egp(), extra, &route(d, t), s, waited_s, c.as_ref()).unwrap();
            let fare = i128::from(completed.fare.amount_minor);
            prop_assert_eq!(sum_of_lines(&completed.breakdown), fare);
            prop_assert_eq!(
                completed.fare.amount_minor,
                estimated.fare.amount_minor + waiting_fee_minor(&p, waited_s).unwrap()
            );
            let b = estimated.breakdown;
            prop_assert!(b.surge_minor >= 0 && b.minimum_fill_minor >= 0);
            prop_assert!(b.discount_minor <= b.base_minor + b.distance_minor + b.time_minor
                + b.surge_minor + b.minimum_fill_minor + b.booking_fee_minor + b.extra_fee_minor);
        }

        #[test]
        fn the_fare_never_falls_as_the_ride_grows(
            p in pricing(),
            extra in 0..=10_000i64,
            (d1, d2) in (distance_m(), distance_m()),
            (t1, t2) in (duration_s(), duration_s()),
            (s1, s2) in (surge_bps(), surge_bps()),
            (w1, w2) in (0..=7_200u64, 0..=7_200u64),
            c in discount(),
        ) {
            let (d1, d2) = (d1.min(d2), d1.max(d2));
            let (t1, t2) = (t1.min(t2), t1.max(t2));
            let (s1, s2) = (s1.min(s2), s1.max(s2));
            let (w1, w2) = (w1.min(w2), w1.max(w2));
            let c = c.as_ref();
            let f = |d, t, s, w| fare_of(&p, extra, d, t, s, w, c);
            let base = f(d1, t1, s1, w1);
            prop_assert!(base <= f(d2, t1, s1, w1), "distance");
            prop_assert!(base <= f(d1, t2, s1, w1), "duration");
            prop_assert!(base <= f(d1, t1, s2, w1), "surge");
            prop_assert!(base <= f(d1, t1, s1, w2), "waiting");
            // One metre, one second, one basis point more: never less either.
            prop_assert!(base <= f(d1 + 1, t1, s1, w1));
            prop_assert!(base <= f(d1, t1 + 1, s1, w1));
            prop_assert!(base <= f(d1, t1, s1 + 1, w1));
        }

        #[test]
        fn any_input_is_ok_or_an_error_never_a_panic(
            amounts in proptest::array::uniform7(wild_i64()),
            (free_wait_s, commission_bps, free_cancel_s) in
                (any::<u32>(), prop_oneof![0..=10_000u32, any::<u32>()], any::<u32>()),
            extra in wild_i64(),
            (d, t, waited_s) in (wild_u64(MAX_DISTANCE_M), wild_u64(MAX_DURATION_S), any::<u64>()),
            s in any::<u32>(),
            (percent_bps, cap, amount) in
                (
                    prop_oneof![0..=10_000u32, any::<u32>()],
                    proptest::option::of(wild_i64()),
                    wild_i64(),
                ),
            use_amount in any::<bool>(),
            (at_1, at_2) in (any::<i64>(), any::<i64>()),
        ) {
            let [base_minor, per_km_minor, per_min_minor, minimum_minor, booking_fee_minor,
                 cancel_fee_minor, wait_per_min_minor] = amounts;
            let p = Pricing {
                base_minor, per_km_minor, per_min_minor, minimum_minor, booking_fee_minor,
                cancel_fee_minor, wait_per_min_minor, free_wait_s, commission_bps, free_cancel_s,
                parcel: None,
            };
            let c = if use_amount {
                CouponDiscount::Amount { amount_minor: amount }
            } else {
                percent(percent_bps, cap)
            };
            let r = route(d, t);
            for quote in [
                estimate(&p, egp(), extra, &r, s, None),
                estimate(&p, egp(), extra, &r, s, Some(&c)),
                final_fare(&p, egp(), extra, &r, s, waited_s, Some(&c)),
            ]
            .into_iter()
            .flatten()
            {
                let fare = i128::from(quote.fare.amount_minor);
                prop_assert_eq!(sum_of_lines(&quote.breakdown), fare);
                prop_assert!(quote.fare.amount_minor >= 0);
            }
            let _ = waiting_fee_minor(&p, waited_s);
            let (at_1, at_2) = (Timestamp::from_millis(at_1), Timestamp::from_millis(at_2));
            let _ = cancellation_fee(&p, at_1, at_2);
            let _ = commission(amount, commission_bps);
        }

        #[test]
        fn commission_parts_sum_to_the_fare(fare in 0..=i64::MAX, bps in 0..=10_000u32) {
            let (platform, driver) = commission(fare, bps).unwrap();
            prop_assert!(platform >= 0 && driver >= 0);
            prop_assert_eq!(i128::from(platform) + i128::from(driver), i128::from(fare));
            // The platform's part is the exact share rounded half up.
            let exact_times_2 = i128::from(fare) * i128::from(bps) * 2;
            prop_assert!((i128::from(platform) * 20_000 - exact_times_2).abs() <= 10_000);
        }
    }
    #[test]
    fn a_reported_distance_is_billed_within_the_driven_and_planned_bounds() {
        // 90 km claimed for a 3 km ride driven as 3.1 km: the cap is max(3100 × 1.25, 3000 × 2) = 6000.
        assert_eq!(billed_distance_m(Some(90_000), 3_100, 3_000), 6_000);
        // Driven far more than planned (a detour): the cap follows the driving, 12000 × 1.25.
        assert_eq!(billed_distance_m(Some(90_000), 12_000, 3_000), 15_000);
        // An honest report inside the bound is billed as reported, below or above the driving.
        assert_eq!(billed_distance_m(Some(3_050), 3_100, 3_000), 3_050);
        assert_eq!(billed_distance_m(Some(3_600), 3_100, 3_000), 3_600);
        assert_eq!(billed_distance_m(Some(0), 3_100, 3_000), 0);
        // No report: what was driven, else the plan.
        assert_eq!(billed_distance_m(None, 3_100, 3_000), 3_100);
        assert_eq!(billed_distance_m(None, 0, 3_000), 3_000);
        // No overflow at the extremes.
        assert_eq!(billed_distance_m(Some(u64::MAX), u64::MAX, u64::MAX), u64::MAX);
    }
}
