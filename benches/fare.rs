//! Fare estimate with the straight-line route: DESIGN.md budgets it at ≤ 2 µs.
//!
//! `estimate_straight_line` is what `POST /v1/fares/estimate` does per category when no
//! router is configured: a haversine route (×1.3 at 30 km/h) across central Cairo, then the
//! fare formula with a ×1.35 surge and a capped percent coupon. `formula_only` isolates the
//! integer fare formula. Run: `cargo bench --bench fare`.

use std::hint::black_box;

use criterion::{Criterion, criterion_main};
use dispatch_core::fare::{CouponDiscount, estimate};
use dispatch_core::geo::LatLng;
use dispatch_core::money::Currency;
use dispatch_core::route::StraightLine;

fn fare(c: &mut Criterion) {
    // API.md's economy prices.
    let pricing = dispatch_core::demo::ECONOMY;
    let currency = Currency::new("EGP").expect("EGP is a currency code");
    let coupon = CouponDiscount::Percent { percent_bps: 2000, max_discount_minor: Some(1000) };
    // Tahrir Square to Heliopolis.
    let from = LatLng::new(30.0444, 31.2357).expect("valid coordinates");
    let to = LatLng::new(30.0911, 31.3220).expect("valid coordinates");
    let straight_line = StraightLine::default();

    c.bench_function("fare/estimate_straight_line", |b| {
        b.iter(|| {
            let route = straight_line.between(black_box(from), black_box(to));
            estimate(black_box(&pricing), currency, black_box(0), &route, black_box(13_500), Some(black_box(&coupon)))
        })
    });

    let route = straight_line.between(from, to);
    c.bench_function("fare/formula_only", |b| {
        b.iter(|| {
            estimate(
                black_box(&pricing),
                currency,
                black_box(0),
                black_box(&route),
                black_box(13_500),
                Some(black_box(&coupon)),
            )
        })
    });
}

// In a private module: the generated `pub fn benches` then needs no doc.
mod group {
    criterion::criterion_group!(benches, super::fare);
}
criterion_main!(group::benches);
