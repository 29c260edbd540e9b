//! Batched matching and the ranking that learns (issue 22): the pure parts.
//!
//! Owns [`solve`], the assignment of a window's trips to drivers by minimum total cost,
//! and [`offer_cost`], the cost of offering a trip to a driver (pickup ETA at the speed the
//! driver's phone reports, [`pickup_eta_at_ds`], adjusted by
//! the driver's acceptance and idle time when [`LearningWeights`] are on). `apply`
//! (`state/batch.rs`, `state/dispatch.rs`) builds the inputs from the state and turns the
//! result into offers; nothing here reads the state, a clock or entropy.
//!
//! Guarantees:
//! - [`solve`] returns a matching over the given edges (no trip and no driver twice, only
//!   pairs that are edges) of **maximum cardinality**, and among those one of **minimum
//!   total cost** — exact over the candidate edges it is given (the engine gives each
//!   trip its [`BATCH_CANDIDATES`] best eligible drivers within `search_radius_m`, so the
//!   optimum is over those, not over every driver of the city). Deterministic: the same
//!   edges in the same order give the same matching.
//! - Its work is bounded: one shortest augmenting path per trip (Dijkstra with
//!   potentials over the candidate edges, stopping at the first free driver), each
//!   `O(E log E)` at worst and in a city a few dozen columns; the engine caps a window at
//!   [`MAX_BATCH_TRIPS`] trips, so at most `MAX_BATCH_TRIPS × BATCH_CANDIDATES` edges.
//! - [`offer_cost`] is integer arithmetic (no floats once the distance is rounded), never
//!   negative, and with [`LearningWeights::OFF`] it is the pickup ETA alone: ranking by
//!   it is ranking by time to the pickup (by distance among drivers of unknown speed).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::rules::LearningWeights;

/// The candidate drivers a trip of a batch window is given (its best eligible drivers
/// within `search_radius_m`): the edges of the solve.
pub const BATCH_CANDIDATES: usize = 12;

/// Most trips one window collects; a trip created while the window is full is offered at
/// once, as in greedy mode. Bounds the solve inside `apply` (see `benches/matching.rs`).
pub const MAX_BATCH_TRIPS: usize = 500;

/// With learning on, a greedy round ranks this many times `offers_per_round` nearest
/// eligible drivers by [`offer_cost`] (at most [`MAX_LEARNING_POOL`]) and offers the best.
pub const LEARNING_POOL_FACTOR: usize = 4;

/// The largest pool a learning round ranks.
pub const MAX_LEARNING_POOL: usize = 100;

/// Idle time beyond this earns no more credit: the full `idle_pct` is reached here.
pub const IDLE_CAP_S: u64 = 20 * 60;

/// The most per cent of the cost idle time may take off (keeps every cost positive).
pub const MAX_IDLE_PCT: u16 = LearningWeights::MAX_IDLE_PCT;

/// The most per cent of the cost a driver who accepts nothing may add.
pub const MAX_ACCEPTANCE_PCT: u16 = LearningWeights::MAX_ACCEPTANCE_PCT;

/// One candidate pair of a window: trip `trip` (an index into the window's trips) could be
/// offered to driver `driver` (an index into the window's drivers) at `cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The trip's index.
    pub trip: u32,
    /// The driver's index.
    pub driver: u32,
    /// What offering this trip to this driver costs (see [`offer_cost`]).
    pub cost: u64,
}

/// The pickup ETA, in tenths of a second, of a driver `distance_m` metres (great circle)
/// from the pickup: the straight-line route provider's estimate at its defaults
/// ([`crate::route::StraightLine`]: × 1.3 detour at 30 km/h), kept in tenths so that
/// nearby drivers rarely tie.
pub fn pickup_eta_ds(distance_m: u32) -> u64 {
    // Route metres ×10 rounded: d × 13 (detour 1.3 in tenths of a metre).
    let road_dm = u64::from(distance_m) * 13;
    // Tenths of a second = (road_dm / 10 m) × 3.6 / 30 km/h × 10 = road_dm × 12 / 100.
    (road_dm * 12 + 50) / 100
}

/// The slowest and fastest speeds, decimetres a second, [`pickup_eta_at_ds`] believes a
/// phone's report of: slower (a car at a light) or faster (a glitch) is clamped to these.
pub const REPORTED_SPEED_DMPS: std::ops::RangeInclusive<u32> = 40..=200;

/// A reported speed below this (m/s) says the car is standing, not how fast it drives:
/// [`pickup_eta_at_ds`] then uses the route provider's speed.
pub const STANDING_MPS: f32 = 1.0;

/// A driver's speed for [`pickup_eta_at_ds`], in decimetres a second, from the speed its
/// phone last reported (`Fix::speed_mps`): `None` when unknown or standing (below
/// [`STANDING_MPS`]), else clamped to [`REPORTED_SPEED_DMPS`]. Integer from here on.
pub fn reported_speed_dmps(speed_mps: Option<f32>) -> Option<u32> {
    let s = speed_mps.filter(|s| s.is_finite() && *s >= STANDING_MPS)?;
    let dmps = (f64::from(s) * 10.0).round().min(f64::from(u32::MAX)) as u32;
    Some(dmps.clamp(*REPORTED_SPEED_DMPS.start(), *REPORTED_SPEED_DMPS.end()))
}

/// The pickup ETA, in tenths of a second, of a driver `distance_m` metres (great circle)
/// from the pickup driving at `speed_dmps` (see [`reported_speed_dmps`]): the route
/// provider's straight-line road distance (× 1.3 detour) at that speed; at the provider's
/// 30 km/h ([`pickup_eta_ds`]) when the speed is unknown. What a window's solve minimises.
pub fn pickup_eta_at_ds(distance_m: u32, speed_dmps: Option<u32>) -> u64 {
    match speed_dmps {
        // Road decimetres d × 13, over dm/s, in tenths of a second: d × 130 / speed.
        Some(v) if v > 0 => (u64::from(distance_m) * 130 + u64::from(v) / 2) / u64::from(v),
        _ => pickup_eta_ds(distance_m),
    }
}

/// A driver's acceptance, in basis points, as the ranking learns it: accepted among its
/// last answers (`accepted` of `answered`, see [`crate::driver::DriverStats::recent`]),
/// with [`PRIOR_ACCEPTS`] imaginary accepted offers added, so that a new driver (no
/// answers) counts as accepting everything and one refusal does not condemn anybody.
pub fn learned_acceptance_bps(accepted: u32, answered: u32) -> u64 {
    let accepted = u64::from(accepted.min(answered));
    (accepted + PRIOR_ACCEPTS) * 10_000 / (u64::from(answered) + PRIOR_ACCEPTS)
}

/// The imaginary accepted offers of [`learned_acceptance_bps`].
pub const PRIOR_ACCEPTS: u64 = 2;

/// The cost of offering a trip to a driver whose pickup ETA is `eta_ds` (tenths of a
/// second: [`pickup_eta_at_ds`]), whose learned acceptance is `acceptance_bps` and who has
/// been available, without a trip, for `idle_s` seconds:
///
/// ```text
/// eta      = eta_ds                                                     (tenths of a second)
/// adjusted = eta × (10,000 + acceptance_pct × (10,000 − acceptance_bps) / 100) / 10,000
/// cost     = adjusted × (100 − idle_pct × min(idle_s, IDLE_CAP_S) / IDLE_CAP_S) / 100
/// ```
///
/// So a driver who accepts nothing costs up to `1 + acceptance_pct/100` times its ETA (not
/// offered first), and a driver idle [`IDLE_CAP_S`] or longer has `idle_pct` per cent of
/// its cost taken off (the fairness term: whoever waits long enough is offered first,
/// whatever its acceptance, among drivers similarly near). Both terms are bounded
/// ([`MAX_ACCEPTANCE_PCT`], [`MAX_IDLE_PCT`] < 100), so a cost is never negative and is 0
/// only for a driver at the pickup. With [`LearningWeights::OFF`], `cost = eta`.
pub fn offer_cost(eta_ds: u64, acceptance_bps: u64, idle_s: u64, weights: LearningWeights) -> u64 {
    let eta = eta_ds;
    if !weights.is_on() {
        return eta;
    }
    let acceptance_pct = u64::from(weights.acceptance_pct.min(MAX_ACCEPTANCE_PCT));
    let idle_pct = u64::from(weights.idle_pct.min(MAX_IDLE_PCT));
    let missing_bps = 10_000u64.saturating_sub(acceptance_bps);
    let adjusted = eta * (10_000 + acceptance_pct * missing_bps / 100) / 10_000;
    let idle_off = idle_pct * idle_s.min(IDLE_CAP_S) / IDLE_CAP_S;
    adjusted * (100 - idle_off) / 100
}

/// The matching of maximum cardinality, and of minimum total cost among those, of `trips`
/// trips and `drivers` drivers over `edges` (see the module's guarantees): the pairs
/// `(trip, driver)`, by trip. Edges naming a trip or driver out of range are ignored.
///
/// The method: every trip also gets an "unassigned" column of its own at a cost `M`
/// above any total of real costs, which makes the problem a rectangular assignment where
/// every trip is assigned, and whose optimum uses the fewest `M` columns (maximum
/// cardinality) and then the least real cost. It is solved trip by trip by shortest
/// augmenting paths (Dijkstra on reduced costs with row and column potentials, the
/// sparse Hungarian method), stopping at the first free column; each search touches only
/// the columns it reaches, which in a city are those near the trip.
pub fn solve(trips: usize, drivers: usize, edges: &[Edge]) -> Vec<(u32, u32)> {
    const NONE: usize = usize::MAX;
    // The trips' edges, grouped (counting sort: input order kept within a trip).
    let mut start = vec![0usize; trips + 1];
    for e in edges.iter().filter(|e| (e.trip as usize) < trips && (e.driver as usize) < drivers) {
        start[e.trip as usize + 1] += 1;
    }
    for i in 0..trips {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut adj: Vec<(usize, i64)> = vec![(0, 0); start[trips]];
    let cap = i64::MAX / 8 / (trips as i64 + 1);
    for e in edges.iter().filter(|e| (e.trip as usize) < trips && (e.driver as usize) < drivers) {
        let slot = &mut fill[e.trip as usize];
        adj[*slot] = (e.driver as usize, i64::try_from(e.cost).unwrap_or(cap).min(cap));
        *slot += 1;
    }
    // M: more than any matching's real cost (the sum of each trip's dearest edge).
    let unassigned: i64 = 1
        + (0..trips)
            .map(|i| adj[start[i]..start[i + 1]].iter().map(|&(_, c)| c).max().unwrap_or(0))
            .fold(0i64, |a, c| a.saturating_add(c));
    let columns = drivers + trips; // drivers, then each trip's own "unassigned"
    let (mut u, mut v) = (vec![0i64; trips], vec![0i64; columns]);
    let (mut row_col, mut col_row) = (vec![NONE; trips], vec![NONE; columns]);
    let mut dist = vec![i64::MAX; columns];
    let mut from = vec![NONE; columns];
    let mut settled = vec![false; columns];
    let (mut touched, mut done): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    for s in 0..trips {
        let relax = |i: usize,
                     d: i64,
                     u: &[i64],
                     v: &[i64],
                     dist: &mut [i64],
                     from: &mut [usize],
                     touched: &mut Vec<usize>,
                     heap: &mut BinaryHeap<Reverse<(i64, usize)>>| {
            let own = (drivers + i, unassigned);
            for &(j, c) in adj[start[i]..start[i + 1]].iter().chain(std::iter::once(&own)) {
                let nd = d + c - u[i] - v[j];
                if nd < dist[j] {
                    if dist[j] == i64::MAX {
                        touched.push(j);
                    }
                    dist[j] = nd;
                    from[j] = i;
                    heap.push(Reverse((nd, j)));
                }
            }
        };
        relax(s, 0, &u, &v, &mut dist, &mut from, &mut touched, &mut heap);
        let mut end = (NONE, 0i64);
        while let Some(Reverse((d, j))) = heap.pop() {
            if settled[j] || d > dist[j] {
                continue;
            }
            settled[j] = true;
            if col_row[j] == NONE {
                end = (j, d);
                break;
            }
            done.push(j);
            relax(col_row[j], d, &u, &v, &mut dist, &mut from, &mut touched, &mut heap);
        }
        let (last, total) = end;
        // Every trip has its own free column, so a path always exists.
        if last == NONE {
            continue;
        }
        // Potentials: every residual edge keeps a non-negative reduced cost, the matched
        // ones and the new path's a zero one.
        u[s] += total;
        for &j in &done {
            let lift = total - dist[j];
            v[j] -= lift;
            u[col_row[j]] += lift;
        }
        let mut j = last;
        loop {
            let i = from[j];
            let next = row_col[i];
            row_col[i] = j;
            col_row[j] = i;
            if i == s {
                break;
            }
            j = next;
        }
        for &j in &touched {
            dist[j] = i64::MAX;
            from[j] = NONE;
            settled[j] = false;
        }
        touched.clear();
        done.clear();
        heap.clear();
    }
    (0..trips)
        .filter(|&i| row_col[i] < drivers)
        .map(|i| (u32::try_from(i).unwrap_or(u32::MAX), u32::try_from(row_col[i]).unwrap_or(u32::MAX)))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The best (cardinality, then cost) over every matching, by enumeration.
    fn brute(trips: usize, edges: &[Edge]) -> (usize, u64) {
        fn go(t: usize, trips: usize, edges: &[Edge], used: &mut Vec<u32>, n: usize, c: u64, best: &mut (usize, u64)) {
            if t == trips {
                if n > best.0 || (n == best.0 && c < best.1) {
                    *best = (n, c);
                }
                return;
            }
            go(t + 1, trips, edges, used, n, c, best);
            for e in edges.iter().filter(|e| e.trip as usize == t) {
                if !used.contains(&e.driver) {
                    used.push(e.driver);
                    go(t + 1, trips, edges, used, n + 1, c + e.cost, best);
                    used.pop();
                }
            }
        }
        let mut best = (0, 0);
        go(0, trips, edges, &mut Vec::new(), 0, 0, &mut best);
        best
    }

    fn instance() -> impl Strategy<Value = (usize, usize, Vec<Edge>)> {
        (1usize..=6, 1usize..=6).prop_flat_map(|(t, d)| {
            let edge =
                (0..t as u32, 0..d as u32, 0u64..50).prop_map(|(trip, driver, cost)| Edge { trip, driver, cost });
            (Just(t), Just(d), proptest::collection::vec(edge, 0..=20))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A matching (no trip, no driver twice), of edges only, as large as any and, among
        /// those, as cheap as the cheapest found by enumerating them all.
        #[test]
        fn solve_is_an_optimal_matching((t, d, edges) in instance()) {
            let m = solve(t, d, &edges);
            let mut trips: Vec<u32> = m.iter().map(|p| p.0).collect();
            let mut drivers: Vec<u32> = m.iter().map(|p| p.1).collect();
            trips.sort_unstable();
            trips.dedup();
            drivers.sort_unstable();
            drivers.dedup();
            prop_assert_eq!(trips.len(), m.len(), "a trip twice");
            prop_assert_eq!(drivers.len(), m.len(), "a driver twice");
            let mut cost = 0;
            for &(trip, driver) in &m {
                // The cheapest parallel edge is the one that counts.
                let c = edges.iter().filter(|e| e.trip == trip && e.driver == driver).map(|e| e.cost).min();
                prop_assert!(c.is_some(), "({}, {}) is no edge", trip, driver);
                cost += c.unwrap_or(0);
            }
            prop_assert_eq!((m.len(), cost), brute(t, &edges));
            prop_assert_eq!(solve(t, d, &edges), m, "not deterministic");
        }

        /// Cost is never below the ETA's share left by the idle term, and learning off is the ETA.
        #[test]
        fn offer_cost_bounds(distance in 0u32..200_000, bps in 0u64..=10_000, idle in 0u64..100_000,
                             acc in 0u16..=2_000, idle_pct in 0u16..=200) {
            let eta = pickup_eta_ds(distance);
            prop_assert_eq!(offer_cost(eta, bps, idle, LearningWeights::OFF), eta);
            let w = LearningWeights { acceptance_pct: acc, idle_pct };
            let c = offer_cost(eta, bps, idle, w);
            prop_assert!(c <= eta * (100 + u64::from(MAX_ACCEPTANCE_PCT)) / 100 + 1);
            prop_assert!(c >= eta * u64::from(100 - MAX_IDLE_PCT) / 100);
        }
    }

    #[test]
    fn the_cheaper_trip_wins_the_only_driver() {
        // Trip 0 is served first by index, but trip 1 is nearer: the optimum picks trip 1.
        let edges = [Edge { trip: 0, driver: 0, cost: 10 }, Edge { trip: 1, driver: 0, cost: 1 }];
        assert_eq!(solve(2, 1, &edges), vec![(1, 0)]);
    }

    #[test]
    fn cardinality_before_cost() {
        // Giving trip 0 its cheapest driver would leave trip 1 without one.
        let edges = [
            Edge { trip: 0, driver: 0, cost: 1 },
            Edge { trip: 0, driver: 1, cost: 5 },
            Edge { trip: 1, driver: 0, cost: 9 },
        ];
        assert_eq!(solve(2, 2, &edges), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn eta_is_the_straight_line_estimate() {
        // 1,000 m × 1.3 = 1,300 m at 30 km/h = 156 s.
        assert_eq!(pickup_eta_ds(1_000), 1_560);
        let (a, b) = (crate::LatLng::new(52.0, 13.0).unwrap(), crate::LatLng::new(52.009, 13.0).unwrap());
        let r = crate::route::StraightLine::default().between(a, b);
        let d = u32::try_from(a.distance_m(&b).round() as i64).unwrap();
        assert!(pickup_eta_ds(d).abs_diff(r.duration_s * 10) <= 10);
    }

    #[test]
    fn a_faster_driver_is_nearer_in_time() {
        // Unknown or standing: the provider's 30 km/h.
        assert_eq!(pickup_eta_at_ds(1_000, reported_speed_dmps(None)), pickup_eta_ds(1_000));
        assert_eq!(pickup_eta_at_ds(1_000, reported_speed_dmps(Some(0.0))), pickup_eta_ds(1_000));
        assert_eq!(reported_speed_dmps(Some(f32::NAN)), None);
        // 1,300 road metres at 13 m/s: 100 s.
        assert_eq!(pickup_eta_at_ds(1_000, reported_speed_dmps(Some(13.0))), 1_000);
        // 1,200 m at 12 m/s beats 1,000 m at 6 m/s.
        assert!(
            pickup_eta_at_ds(1_200, reported_speed_dmps(Some(12.0)))
                < pickup_eta_at_ds(1_000, reported_speed_dmps(Some(6.0)))
        );
        // Clamped: a crawl counts as 4 m/s, a glitch as 20.
        assert_eq!(reported_speed_dmps(Some(2.0)), Some(40));
        assert_eq!(reported_speed_dmps(Some(900.0)), Some(200));
    }

    #[test]
    fn learning_ranks_the_decliner_behind_and_the_idle_ahead() {
        let w = LearningWeights { acceptance_pct: 100, idle_pct: 50 };
        let good = learned_acceptance_bps(10, 10);
        let bad = learned_acceptance_bps(0, 30);
        assert_eq!(learned_acceptance_bps(0, 0), 10_000, "a new driver is not penalised");
        let eta = pickup_eta_ds;
        assert!(offer_cost(eta(1_000), bad, 0, w) > offer_cost(eta(1_200), good, 0, w), "the decliner is behind");
        // The decliner idle for the cap is back ahead of a slightly further busy one.
        assert!(offer_cost(eta(1_000), bad, IDLE_CAP_S, w) < offer_cost(eta(1_200), good, 0, w));
    }
}
