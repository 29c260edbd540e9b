//! Trip ETAs: how long the assigned driver still needs — to the pickup while the trip is
//! `accepted`, to the drop-off while it is `in_progress` — through the route provider,
//! from the driver's last published position.
//!
//! Owns a cache of one ETA per trip. Guarantees:
//! - the route provider is asked **at most once per trip per [`Etas::REFRESH_MS`]**
//!   (API.md: "refreshed at most every 10 s"), however many requests read the trip: a
//!   fresh entry is answered from the cache, and while one refresh is under way the
//!   others answer the entry they have;
//! - an ETA is only ever shown for the leg it was computed for: one computed to the
//!   pickup is never rendered once the ride is in progress;
//! - the provider never fails it: `Routes::route` falls back to the straight line when
//!   the router is down, and the ETA then says `"source": "straight_line"`;
//! - the cache is bounded ([`Etas::CAPACITY`]): entries of finished legs are dropped when
//!   read, and old ones are swept when it fills.
//!
//! ETAs are not state: they are derived from the log's positions and the router's
//! answers, so they live here, in the server, and never in a command.

use std::collections::HashMap;
use std::future::Future;

use dispatch_core::clock::Timestamp;
use dispatch_core::driver::Fix;
use dispatch_core::route::{Route, RouteSource};
use dispatch_core::{LatLng, Trip, TripId, TripStatus};
use parking_lot::Mutex;

/// Which leg an ETA measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The driver's position → the pickup (`accepted`).
    Pickup,
    /// The driver's position → the drop-off (`in_progress`).
    Dropoff,
}

impl Leg {
    /// The leg `t` is on now, and where it ends; `None` when the trip has no driver on
    /// the way to somewhere (searching, arrived, finished).
    pub fn of(t: &Trip) -> Option<(Leg, LatLng)> {
        match t.status {
            TripStatus::Accepted => Some((Leg::Pickup, t.pickup.point)),
            TripStatus::InProgress => Some((Leg::Dropoff, t.dropoff.point)),
            _ => None,
        }
    }
}

/// One ETA: seconds to the end of `leg`, who computed them, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eta {
    /// The leg measured.
    pub leg: Leg,
    /// Seconds the route provider expects.
    pub seconds: u64,
    /// The router, or the straight line.
    pub source: RouteSource,
    /// When it was computed (the server's clock).
    pub at: Timestamp,
}

/// A cache entry: the last ETA of a trip, and whether a refresh is under way.
#[derive(Debug, Clone, Copy)]
struct Entry {
    eta: Option<Eta>,
    /// When the refresh under way began (`None`: none is).
    refreshing_since: Option<Timestamp>,
}

/// The ETAs of the trips on the way, one per trip. One per process (in `App`).
#[derive(Debug, Default)]
pub struct Etas {
    entries: Mutex<HashMap<TripId, Entry>>,
}

impl Etas {
    /// An ETA younger than this is answered from the cache (API.md: 10 s).
    pub const REFRESH_MS: i64 = 10_000;
    /// A refresh that has not finished after this is presumed lost (its task was
    /// cancelled with the request): the next reader may start another.
    pub const REFRESH_TIMEOUT_MS: i64 = 30_000;
    /// Most trips cached; past it, entries older than a minute are swept.
    pub const CAPACITY: usize = 65_536;

    /// The cached ETA of `t` for the leg it is on now, however old (`None`: none yet, or
    /// the trip is on no leg). Never asks the router: for pushes and lists.
    pub fn cached(&self, t: &Trip) -> Option<Eta> {
        self.cached_leg(t.id, Leg::of(t).map(|(leg, _)| leg))
    }

    /// The cached ETA of trip `id` for `leg`.
    fn cached_leg(&self, id: TripId, leg: Option<Leg>) -> Option<Eta> {
        let leg = leg?;
        let entries = self.entries.lock();
        entries.get(&id).and_then(|e| e.eta).filter(|e| e.leg == leg)
    }

    /// The ETA of `t` for the leg it is on, from `fix` (the driver's last position),
    /// asking `route` only when the cached one is older than [`Etas::REFRESH_MS`] (or of
    /// another leg) and no other refresh is under way. `None` when the trip is on no leg
    /// or its driver has no position.
    pub async fn get<F, Fut>(&self, t: &Trip, fix: Option<Fix>, now: Timestamp, route: F) -> Option<Eta>
    where
        F: FnOnce(LatLng, LatLng) -> Fut,
        Fut: Future<Output = Route>,
    {
        self.get_leg(t.id, Leg::of(t), fix, now, route).await
    }

    /// [`Etas::get`] for trip `id` on `leg` (ending at its point).
    async fn get_leg<F, Fut>(
        &self,
        id: TripId,
        leg: Option<(Leg, LatLng)>,
        fix: Option<Fix>,
        now: Timestamp,
        route: F,
    ) -> Option<Eta>
    where
        F: FnOnce(LatLng, LatLng) -> Fut,
        Fut: Future<Output = Route>,
    {
        let Some((leg, to)) = leg else {
            // Nothing to measure any more: forget what was measured.
            self.entries.lock().remove(&id);
            return None;
        };
        let from = fix?.point;
        {
            let mut entries = self.entries.lock();
            if entries.len() >= Self::CAPACITY {
                Self::sweep(&mut entries, now);
            }
            let entry = entries.entry(id).or_insert(Entry { eta: None, refreshing_since: None });
            let current = entry.eta.filter(|e| e.leg == leg);
            if current.is_some_and(|e| now.millis_since(e.at) < Self::REFRESH_MS) {
                return current;
            }
            if entry.refreshing_since.is_some_and(|s| now.millis_since(s) < Self::REFRESH_TIMEOUT_MS) {
                // Someone is asking the router now: answer what there is.
                return current;
            }
            entry.refreshing_since = Some(now);
        }
        let r = route(from, to).await;
        let eta = Eta { leg, seconds: r.duration_s, source: r.source, at: now };
        let mut entries = self.entries.lock();
        let room = entries.len() < Self::CAPACITY;
        match entries.get_mut(&id) {
            Some(entry) => {
                // A newer ETA stored meanwhile (by a reader with a later clock) wins.
                if entry.eta.is_none_or(|e| e.leg != leg || e.at <= now) {
                    entry.eta = Some(eta);
                }
                entry.refreshing_since = None;
            }
            // Swept meanwhile: kept again if there is room.
            None if room => {
                entries.insert(id, Entry { eta: Some(eta), refreshing_since: None });
            }
            None => {}
        }
        drop(entries);
        Some(eta)
    }

    /// Drops the entries not refreshed for a minute and not being refreshed.
    fn sweep(entries: &mut HashMap<TripId, Entry>, now: Timestamp) {
        entries
            .retain(|_, e| e.refreshing_since.is_some() || e.eta.is_some_and(|eta| now.millis_since(eta.at) < 60_000));
    }

    /// Trips cached (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fix(lat: f64, lng: f64) -> Option<Fix> {
        Some(Fix {
            point: LatLng::new(lat, lng).unwrap(),
            at: Timestamp::from_millis(0),
            heading_deg: None,
            speed_mps: None,
        })
    }

    /// Trip 7 as the cache sees it in `status`: the leg it is on.
    fn trip(status: TripStatus) -> (TripId, Option<(Leg, LatLng)>) {
        let (pickup, dropoff) = (LatLng::new(30.01, 31.0).unwrap(), LatLng::new(30.05, 31.0).unwrap());
        let leg = match status {
            TripStatus::Accepted => Some((Leg::Pickup, pickup)),
            TripStatus::InProgress => Some((Leg::Dropoff, dropoff)),
            _ => None,
        };
        (TripId::from_raw(7).unwrap(), leg)
    }

    /// A route provider that counts its calls and answers `seconds`.
    struct Counting {
        calls: AtomicU32,
        seconds: u64,
    }

    impl Counting {
        fn new(seconds: u64) -> Self {
            Counting { calls: AtomicU32::new(0), seconds }
        }

        async fn route(&self, _: LatLng, _: LatLng) -> Route {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Route { distance_m: 1_000, duration_s: self.seconds, source: RouteSource::Router }
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[tokio::test]
    async fn the_router_is_asked_at_most_once_per_trip_per_ten_seconds() {
        let etas = Etas::default();
        let router = Counting::new(240);
        let t = trip(TripStatus::Accepted);
        let first = etas.get_leg(t.0, t.1, fix(30.0, 31.0), at(1_000), |a, b| router.route(a, b)).await.unwrap();
        assert_eq!(
            (first.leg, first.seconds, first.source, first.at),
            (Leg::Pickup, 240, RouteSource::Router, at(1_000))
        );
        for ms in [1_001, 5_000, 10_999] {
            assert_eq!(etas.get_leg(t.0, t.1, fix(30.0, 31.0), at(ms), |a, b| router.route(a, b)).await, Some(first));
        }
        assert_eq!(router.calls.load(Ordering::SeqCst), 1, "fresh for 10 s");
        let second = etas.get_leg(t.0, t.1, fix(30.0, 31.0), at(11_000), |a, b| router.route(a, b)).await.unwrap();
        assert_eq!(second.at, at(11_000));
        assert_eq!(router.calls.load(Ordering::SeqCst), 2, "refreshed after 10 s");
        assert_eq!(etas.cached_leg(t.0, t.1.map(|l| l.0)), Some(second));
    }

    #[tokio::test]
    async fn an_eta_is_shown_only_for_the_leg_it_measured() {
        let etas = Etas::default();
        let router = Counting::new(240);
        let accepted = trip(TripStatus::Accepted);
        etas.get_leg(accepted.0, accepted.1, fix(30.0, 31.0), at(0), |a, b| router.route(a, b)).await.unwrap();
        let riding = trip(TripStatus::InProgress);
        assert_eq!(etas.cached_leg(riding.0, riding.1.map(|l| l.0)), None, "the pickup ETA is not the drop-off's");
        let e = etas.get_leg(riding.0, riding.1, fix(30.0, 31.0), at(1_000), |a, b| router.route(a, b)).await.unwrap();
        assert_eq!(e.leg, Leg::Dropoff);
        assert_eq!(router.calls.load(Ordering::SeqCst), 2, "a new leg asks at once");
        let arrived = trip(TripStatus::Arrived);
        assert_eq!(
            etas.get_leg(arrived.0, arrived.1, fix(30.0, 31.0), at(2_000), |a, b| router.route(a, b)).await,
            None
        );
        assert!(etas.is_empty(), "a trip on no leg is forgotten");
    }

    #[tokio::test]
    async fn no_position_or_no_leg_means_no_eta_and_no_router_call() {
        let etas = Etas::default();
        let router = Counting::new(240);
        for status in [TripStatus::Searching, TripStatus::Arrived, TripStatus::Completed, TripStatus::Cancelled] {
            assert_eq!(
                etas.get_leg(trip(status).0, trip(status).1, fix(30.0, 31.0), at(0), |a, b| router.route(a, b)).await,
                None
            );
        }
        assert_eq!(
            etas.get_leg(trip(TripStatus::Accepted).0, trip(TripStatus::Accepted).1, None, at(0), |a, b| router
                .route(a, b))
                .await,
            None
        );
        assert_eq!(router.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn while_one_refresh_is_under_way_others_answer_the_cache() {
        let etas = Etas::default();
        let router = Counting::new(240);
        let t = trip(TripStatus::Accepted);
        let old = etas.get_leg(t.0, t.1, fix(30.0, 31.0), at(0), |a, b| router.route(a, b)).await.unwrap();
        // A reader at 20 s starts a refresh; while its router call is pending, another reader
        // gets the old ETA without a call of its own.
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let router = &router;
        let slow = etas.get_leg(t.0, t.1, fix(30.0, 31.0), at(20_000), |a, b| async move {
            let _ = wait.await;
            router.route(a, b).await
        });
        let other = async {
            tokio::task::yield_now().await;
            let got = etas.get_leg(t.0, t.1, fix(30.0, 31.0), at(20_001), |a, b| router.route(a, b)).await;
            let _ = release.send(());
            got
        };
        let (fresh, answered) = tokio::join!(slow, other);
        assert_eq!(answered, Some(old));
        assert_eq!(fresh.unwrap().at, at(20_000));
        assert_eq!(router.calls.load(Ordering::SeqCst), 2, "one call at 0 s, one at 20 s");
    }

    #[tokio::test]
    async fn a_straight_line_route_says_so() {
        let etas = Etas::default();
        let t = trip(TripStatus::InProgress);
        let e = etas
            .get_leg(t.0, t.1, fix(30.0, 31.0), at(0), |_, _| async {
                Route { distance_m: 500, duration_s: 60, source: RouteSource::StraightLine }
            })
            .await
            .unwrap();
        assert_eq!((e.leg, e.seconds, e.source), (Leg::Dropoff, 60, RouteSource::StraightLine));
    }
}
