//! Batched matching and the ranking that learns (issue 22): the pure parts.
//!
//! Owns [`solve`], the assignment of a window's trips to drivers by minimum total cost,
//! and [`offer_cost`], the cost of offering a trip to a driver (pickup ETA, adjusted by
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
//! - Its work is bounded: the bipartite graph is split into connected components and
//!   each is solved by successive shortest augmenting paths (Dijkstra with potentials,
//!   stopping at the first free driver): at most `min(trips, drivers)` augmentations of
//!   `O(E log V)` each within a component. The engine caps a window at
//!   [`MAX_BATCH_TRIPS`] trips, so at most `MAX_BATCH_TRIPS × BATCH_CANDIDATES` edges.
//! - [`offer_cost`] is integer arithmetic (no floats once the distance is rounded), never
//!   negative, and with [`LearningWeights::OFF`] it is the pickup ETA alone, so ranking by
//!   it is ranking by distance.

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
pub const MAX_IDLE_PCT: u16 = 90;

/// The most per cent of the cost a driver who accepts nothing may add.
pub const MAX_ACCEPTANCE_PCT: u16 = 1_000;

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

/// The cost of offering a trip to a driver `distance_m` from its pickup, whose learned
/// acceptance is `acceptance_bps` and who has been available, without a trip, for
/// `idle_s` seconds:
///
/// ```text
/// eta      = pickup_eta_ds(distance_m)                                  (tenths of a second)
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
pub fn offer_cost(distance_m: u32, acceptance_bps: u64, idle_s: u64, weights: LearningWeights) -> u64 {
    let eta = pickup_eta_ds(distance_m);
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
pub fn solve(trips: usize, drivers: usize, edges: &[Edge]) -> Vec<(u32, u32)> {
    let edges: Vec<Edge> =
        edges.iter().copied().filter(|e| (e.trip as usize) < trips && (e.driver as usize) < drivers).collect();
    // Components: union-find over trips (0..trips) and drivers (trips..).
    let mut parent: Vec<usize> = (0..trips + drivers).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for e in &edges {
        let (a, b) = (find(&mut parent, e.trip as usize), find(&mut parent, trips + e.driver as usize));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    // The edges of each component, in input order; components by their root (its lowest node).
    let mut by_root: std::collections::BTreeMap<usize, Vec<Edge>> = std::collections::BTreeMap::new();
    for e in &edges {
        let root = find(&mut parent, e.trip as usize);
        by_root.entry(root).or_default().push(*e);
    }
    let mut matched = Vec::new();
    for component in by_root.values() {
        matched.extend(solve_component(component));
    }
    matched.sort_unstable();
    matched
}

/// A residual arc of the flow network.
struct Arc {
    to: usize,
    cap: u8,
    cost: i64,
}

/// Min-cost max-flow on source → trips → drivers → sink, unit capacities, by successive
/// shortest paths (Dijkstra on reduced costs; costs are non-negative, so the potentials
/// start at 0). Each augmentation is a shortest path, so the flow after `k` of them is a
/// cheapest of value `k`; it stops when no path is left (maximum cardinality).
fn solve_component(edges: &[Edge]) -> Vec<(u32, u32)> {
    // Local node numbers: 0 source, 1 sink, then trips and drivers as first seen.
    let mut node_of: std::collections::HashMap<(bool, u32), usize> = std::collections::HashMap::new();
    let mut label: Vec<u32> = vec![0, 0];
    let mut is_trip: Vec<bool> = vec![false, false];
    let mut local = |key: (bool, u32), label: &mut Vec<u32>, is_trip: &mut Vec<bool>| -> usize {
        *node_of.entry(key).or_insert_with(|| {
            label.push(key.1);
            is_trip.push(key.0);
            label.len() - 1
        })
    };
    let mut pairs = Vec::with_capacity(edges.len());
    for e in edges {
        let t = local((true, e.trip), &mut label, &mut is_trip);
        let d = local((false, e.driver), &mut label, &mut is_trip);
        pairs.push((t, d, i64::try_from(e.cost).unwrap_or(i64::MAX / 4).min(i64::MAX / 4)));
    }
    let n = label.len();
    let mut arcs: Vec<Arc> = Vec::with_capacity(2 * (pairs.len() + n));
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    let add = |arcs: &mut Vec<Arc>, adj: &mut Vec<Vec<usize>>, from: usize, to: usize, cost: i64| {
        adj[from].push(arcs.len());
        arcs.push(Arc { to, cap: 1, cost });
        adj[to].push(arcs.len());
        arcs.push(Arc { to: from, cap: 0, cost: -cost });
    };
    for (v, &trip) in is_trip.iter().enumerate().skip(2) {
        if trip {
            add(&mut arcs, &mut adj, 0, v, 0);
        } else {
            add(&mut arcs, &mut adj, v, 1, 0);
        }
    }
    let first_pair_arc = arcs.len();
    for &(t, d, cost) in &pairs {
        add(&mut arcs, &mut adj, t, d, cost);
    }
    const INF: i64 = i64::MAX;
    let mut pot = vec![0i64; n];
    let mut dist = vec![INF; n];
    let mut prev = vec![usize::MAX; n];
    let mut heap = BinaryHeap::new();
    loop {
        dist.iter_mut().for_each(|d| *d = INF);
        prev.iter_mut().for_each(|p| *p = usize::MAX);
        heap.clear();
        dist[0] = 0;
        heap.push(Reverse((0i64, 0usize)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if d > dist[u] {
                continue;
            }
            if u == 1 {
                break;
            }
            for &a in &adj[u] {
                let arc = &arcs[a];
                if arc.cap == 0 {
                    continue;
                }
                let nd = d + arc.cost + pot[u] - pot[arc.to];
                if nd < dist[arc.to] {
                    dist[arc.to] = nd;
                    prev[arc.to] = a;
                    heap.push(Reverse((nd, arc.to)));
                }
            }
        }
        let to_sink = dist[1];
        if to_sink == INF {
            break;
        }
        // Johnson's potentials, truncated at the sink's distance (nodes not settled were
        // at least that far): every residual arc keeps a non-negative reduced cost.
        for (p, d) in pot.iter_mut().zip(&dist) {
            *p += (*d).min(to_sink);
        }
        let mut v = 1;
        while v != 0 {
            let a = prev[v];
            arcs[a].cap -= 1;
            arcs[a ^ 1].cap += 1;
            v = arcs[a ^ 1].to;
        }
    }
    let mut matched = Vec::new();
    for (i, &(t, d, _)) in pairs.iter().enumerate() {
        if arcs[first_pair_arc + 2 * i].cap == 0 {
            matched.push((label[t], label[d]));
        }
    }
    matched
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
            prop_assert_eq!(offer_cost(distance, bps, idle, LearningWeights::OFF), eta);
            let w = LearningWeights { acceptance_pct: acc, idle_pct };
            let c = offer_cost(distance, bps, idle, w);
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
    fn learning_ranks_the_decliner_behind_and_the_idle_ahead() {
        let w = LearningWeights { acceptance_pct: 100, idle_pct: 50 };
        let good = learned_acceptance_bps(10, 10);
        let bad = learned_acceptance_bps(0, 30);
        assert_eq!(learned_acceptance_bps(0, 0), 10_000, "a new driver is not penalised");
        assert!(offer_cost(1_000, bad, 0, w) > offer_cost(1_200, good, 0, w), "the decliner is behind");
        // The decliner idle for the cap is back ahead of a slightly further busy one.
        assert!(offer_cost(1_000, bad, IDLE_CAP_S, w) < offer_cost(1_200, good, 0, w));
    }
}
