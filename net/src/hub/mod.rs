//! Every open WebSocket, and the routing of engine events to them: which socket hears
//! which event, put in its outbox ([`outbox`]). The sockets themselves (upgrade, read and
//! write loops) are `crate::ws`'s; the registry is here so that the shared state
//! (`crate::server::App`) can hold it without knowing the socket protocol.
//!
//! Guarantees:
//! - no lock is held while writing to a socket: the sockets an event goes to are chosen
//!   under the registry's lock, and each socket's writer pops and writes its outbox
//!   without it;
//! - a frame is rendered only if a socket will get it, at most once per audience and
//!   outside the registry's lock (a trip update nobody watches costs a lookup, not three
//!   JSON renderings);
//! - a trip's frames (`trip_updated`, `driver_location`) reach only staff sockets and the
//!   sockets of the trip's *current* rider and driver, checked at fan-out, not only at
//!   subscription (`Trip::visible_to`): a driver who gave a trip back stops hearing about
//!   it, and the subscriptions of a trip that ended, or of a socket no longer party to it,
//!   are dropped; the driver's position reaches the rider and staff only; each of them
//!   hears the trip as its viewer (`render::Viewer`: the rider's frame alone has the
//!   pickup code, the driver's has the rider's card, staff's both cards);
//! - every staff socket hears every SOS alert, whatever its map box;
//! - a trip's `chat_message` reaches the sockets of its rider and *current* driver, staff
//!   sockets following the trip, and the sockets of the staff member who posted it;
//!   nobody else (a driver who gave the trip back included);
//! - a user's first open socket and last close are reported in the order they happened
//!   (the presence hooks run under the registry's lock; the reports: [`presence`]);
//! - how many sockets may be open, in all and per user, is [`caps`]'s.

pub mod caps;
pub mod ops;
pub mod outbox;
pub mod presence;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dispatch_core::{Event, TripId, UserId};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::metrics::Metrics;
use crate::render::{self, Viewer};
use ops::{BBox, OPS_SNAPSHOT_SLOT, ops_snapshot};
use outbox::{OutFrame, Outbox, Utf8Bytes};
use presence::PendingPresence;

/// One open socket: whose it is (which decides what it may hear) and its outbox.
struct Socket {
    user: Option<UserId>,
    /// Sees every trip and the city (`trips.read`: `Principal::reads_trips`).
    staff: bool,
    outbox: Arc<Outbox>,
}

/// The open sockets, indexed the ways events find them.
#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Arc<Socket>>,
    /// A user's open sockets (a driver may have two devices).
    by_user: HashMap<UserId, Vec<u64>>,
    /// Sockets following a trip they subscribed to.
    by_trip: HashMap<TripId, HashSet<u64>>,
    /// Staff sockets on the ops channel, with their box (`None`: everywhere).
    ops: HashMap<u64, Option<BBox>>,
}

impl Registry {
    /// Whether any socket may be sent an update of `trip`: one of its people's, one
    /// following it, or a staff map's (checked in full by [`Registry::trip_update_targets`]).
    fn may_see(&self, trip: &dispatch_core::Trip) -> bool {
        let has = |u: Option<UserId>| u.and_then(|u| self.by_user.get(&u)).is_some_and(|s| !s.is_empty());
        has(Some(trip.rider_id)) || has(trip.driver_id) || self.by_trip.contains_key(&trip.id) || !self.ops.is_empty()
    }

    /// The sockets an update of `trip` goes to, each once, with the view it is rendered
    /// for: the rider's, the driver's, those following the trip while still party to it,
    /// and staff maps whose box holds the pickup. Drops the subscriptions that will never
    /// be served again: all of a trip that ended (this is its last update), and those of
    /// sockets no longer party to it (a driver who gave the trip back).
    fn trip_update_targets(&mut self, trip: &dispatch_core::Trip) -> Vec<(Viewer, Arc<Outbox>)> {
        let Registry { sockets, by_user, by_trip, ops } = self;
        let party = |id: &u64| sockets.get(id).is_some_and(|s| trip.visible_to(s.user, s.staff));
        let mut targets = Vec::new();
        let mut sent = HashSet::new();
        for id in by_user.get(&trip.rider_id).into_iter().flatten() {
            if let Some(s) = sockets.get(id) {
                sent.insert(*id);
                targets.push((Viewer::Rider, Arc::clone(&s.outbox)));
            }
        }
        let driver_ids = trip.driver_id.and_then(|d| by_user.get(&d)).into_iter().flatten();
        let subscribed = by_trip.get(&trip.id).into_iter().flatten().filter(|id| party(id));
        let in_box = ops.iter().filter(|(_, b)| b.is_none_or(|b| b.contains(trip.pickup.point))).map(|(id, _)| id);
        for id in driver_ids.chain(subscribed).chain(in_box) {
            if sent.insert(*id)
                && let Some(s) = sockets.get(id)
            {
                let viewer = Viewer::of(trip, s.user, s.staff);
                // Only the trip's people and staff are chosen above; a driver's view
                // needs a driver on the trip.
                let fits = match viewer {
                    Viewer::Rider | Viewer::Staff => true,
                    Viewer::Driver => trip.driver_id.is_some(),
                    Viewer::Other => false,
                };
                if fits {
                    targets.push((viewer, Arc::clone(&s.outbox)));
                }
            }
        }
        if trip.status.is_terminal() {
            by_trip.remove(&trip.id);
        } else if let Some(set) = by_trip.get_mut(&trip.id) {
            set.retain(|id| party(id));
            if set.is_empty() {
                by_trip.remove(&trip.id);
            }
        }
        targets
    }
}

/// Every open socket, by user and by subscribed trip.
pub struct Hub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Presence reports the engine has not taken yet.
    pub presence: Arc<PendingPresence>,
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            metrics,
            presence: Arc::new(PendingPresence::default()),
        }
    }

    /// Adds a socket; `true` when it is its user's first open socket (`on_first` then runs
    /// under the registry lock, so presence reports keep the order of opens and closes).
    pub(crate) fn register(&self, who: Principal, on_first: impl FnOnce()) -> (u64, Arc<Outbox>, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new());
        let socket = Arc::new(Socket { user: who.user_id(), staff: who.reads_trips(), outbox: Arc::clone(&outbox) });
        let mut r = self.registry.lock();
        let mut first = false;
        if let Some(u) = socket.user {
            let v = r.by_user.entry(u).or_default();
            first = v.is_empty();
            v.push(id);
        }
        r.sockets.insert(id, socket);
        if first {
            on_first();
        }
        (id, outbox, first)
    }

    /// Removes a socket; `true` when it was its user's last open socket (`on_last` then
    /// runs under the registry lock).
    pub(crate) fn unregister(&self, id: u64, on_last: impl FnOnce()) -> bool {
        let mut r = self.registry.lock();
        let Some(s) = r.sockets.remove(&id) else { return false };
        let mut last = false;
        if let Some(u) = s.user
            && let Some(v) = r.by_user.get_mut(&u)
        {
            v.retain(|x| *x != id);
            if v.is_empty() {
                r.by_user.remove(&u);
                last = true;
            }
        }
        r.by_trip.retain(|_, set| {
            set.remove(&id);
            !set.is_empty()
        });
        r.ops.remove(&id);
        if last {
            on_last();
        }
        last
    }

    /// Whether `user` has an open socket now (which hears the chat of the user's trips).
    pub fn is_connected(&self, user: UserId) -> bool {
        self.registry.lock().by_user.contains_key(&user)
    }

    /// Adds socket `id` to the followers of `trip`.
    pub(crate) fn subscribe_trip(&self, id: u64, trip: TripId) {
        self.registry.lock().by_trip.entry(trip).or_default().insert(id);
    }

    /// Whether socket `id` follows `trip` (it hears the trip's chat through the subscription).
    pub(crate) fn follows(&self, id: u64, trip: TripId) -> bool {
        self.registry.lock().by_trip.get(&trip).is_some_and(|set| set.contains(&id))
    }

    /// Puts socket `id` on the ops channel, with its box (`None`: everywhere).
    pub(crate) fn subscribe_ops(&self, id: u64, bbox: Option<BBox>) {
        self.registry.lock().ops.insert(id, bbox);
    }

    /// Sends each ops socket the snapshot of its box (at most once a second: the caller ticks).
    pub fn send_ops_snapshots(&self, engine: &dispatch_core::Engine) {
        let targets: Vec<(Arc<Outbox>, Option<BBox>)> = {
            let r = self.registry.lock();
            r.ops.iter().filter_map(|(id, b)| r.sockets.get(id).map(|s| (Arc::clone(&s.outbox), *b))).collect()
        };
        if targets.is_empty() {
            return;
        }
        let now = dispatch_core::clock::Clock::now(&dispatch_core::clock::SystemClock);
        // One snapshot of the view for every socket, and one frame per distinct box: staff
        // watching the same map cost one walk of the city, not one each. The snapshot is
        // held without a lock: however long the walk, the writer never waits for it.
        let view = engine.snapshot();
        let mut frames: Vec<(Option<BBox>, Utf8Bytes)> = Vec::new();
        for (outbox, bbox) in targets {
            let frame = match frames.iter().find(|(b, _)| *b == bbox) {
                Some((_, frame)) => frame.clone(),
                None => {
                    let frame = Utf8Bytes::from(ops_snapshot(&view, bbox, now));
                    frames.push((bbox, frame.clone()));
                    frame
                }
            };
            // A snapshot is superseded by the next one: it may be dropped like a position.
            outbox.push(OutFrame::Location(OPS_SNAPSHOT_SLOT, frame), &self.metrics);
        }
    }

    /// The outboxes of `user`'s sockets.
    fn of_user(&self, r: &Registry, user: UserId) -> Vec<Arc<Outbox>> {
        r.by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| r.sockets.get(id).map(|s| Arc::clone(&s.outbox)))
            .collect()
    }

    /// Turns one batch of engine events into frames in the right outboxes.
    pub(crate) fn fan_out(&self, engine: &dispatch_core::Engine, etas: &crate::eta::Etas, events: &[Event]) {
        // The people of every trip the batch updated, in one read of the view.
        let updated =
            || events.iter().filter_map(|e| if let Event::TripUpdated { trip } = e { Some(trip) } else { None });
        // Only trips someone may see: a frame nobody receives is neither carded nor rendered.
        let watched: Vec<&dispatch_core::Trip> = if updated().next().is_some() {
            let r = self.registry.lock();
            updated().map(|t| &**t).filter(|t| r.may_see(t)).collect()
        } else {
            Vec::new()
        };
        let cards: HashMap<TripId, render::Cards> = if !watched.is_empty() {
            let mut cards: HashMap<TripId, render::Cards> =
                engine.read(|v| watched.iter().map(|t| (t.id, render::Cards::of(v, t))).collect());
            for t in &watched {
                if let Some(c) = cards.get_mut(&t.id) {
                    c.eta = etas.cached(t);
                }
            }
            cards
        } else {
            HashMap::new()
        };
        for e in events {
            match e {
                Event::TripOffered { trip, driver_id, expires_at, distance_to_pickup_m } => {
                    let n = self.send_user(*driver_id, || {
                        let offer = render::offer(trip, *expires_at, *distance_to_pickup_m);
                        render::typed::to_text(&render::typed::TripOfferFrame::new(offer)).into()
                    });
                    self.metrics.offers_sent.fetch_add(n, Ordering::Relaxed);
                }
                Event::OfferWithdrawn { trip_id, driver_id, reason } => {
                    self.send_user(*driver_id, || {
                        json!({"type": "offer_withdrawn", "trip_id": trip_id.to_string(), "reason": reason_str(*reason)})
                            .to_string()
                            .into()
                    });
                }
                Event::TripUpdated { trip } => {
                    // Who gets it, chosen under the lock; the frames rendered after it, one
                    // per audience someone is in: the rider's has the pickup code, the
                    // driver's the rider's card, staff's both cards.
                    let targets = self.registry.lock().trip_update_targets(trip);
                    if targets.is_empty() {
                        continue;
                    }
                    // A socket that came between the two locks: its trip's cards now.
                    let late;
                    let cards = match cards.get(&trip.id) {
                        Some(cards) => cards,
                        None => {
                            late =
                                render::Cards { eta: etas.cached(trip), ..engine.read(|v| render::Cards::of(v, trip)) };
                            &late
                        }
                    };
                    // Typed, straight to text: no `Value` tree per audience.
                    let mut frames: [Option<Utf8Bytes>; 3] = [None, None, None];
                    for (viewer, outbox) in targets {
                        let slot = match viewer {
                            Viewer::Rider => 0,
                            Viewer::Driver => 1,
                            Viewer::Staff => 2,
                            Viewer::Other => continue,
                        };
                        let frame = frames[slot].get_or_insert_with(|| {
                            let frame = render::typed::TripUpdatedFrame::new(render::trip(trip, viewer, cards));
                            render::typed::to_text(&frame).into()
                        });
                        outbox.push(OutFrame::Event(frame.clone()), &self.metrics);
                    }
                }
                Event::DriverMoved { driver_id, trip_id: Some(trip_id), point, heading_deg, at } => {
                    let Some(trip) = engine.read(|v| v.trip(*trip_id).cloned()) else { continue };
                    if trip.driver_id != Some(*driver_id) || !trip.status.has_driver() {
                        continue;
                    }
                    // The rider and staff following the trip see where the driver is;
                    // nobody else, even if they once subscribed (a driver who gave the trip back).
                    let targets: Vec<Arc<Outbox>> = {
                        let r = self.registry.lock();
                        let rider = r.by_user.get(&trip.rider_id).into_iter().flatten();
                        let subscribed = r.by_trip.get(trip_id).into_iter().flatten();
                        let mut sent = HashSet::new();
                        rider
                            .chain(subscribed)
                            .filter(|id| sent.insert(**id))
                            .filter_map(|id| r.sockets.get(id))
                            .filter(|s| s.staff || s.user == Some(trip.rider_id))
                            .map(|s| Arc::clone(&s.outbox))
                            .collect()
                    };
                    if targets.is_empty() {
                        continue;
                    }
                    let frame = json!({
                        "type": "driver_location", "trip_id": trip_id.to_string(),
                        "lat": point.lat(), "lng": point.lng(), "heading_deg": heading_deg,
                        "at": crate::http::rfc3339(*at),
                    })
                    .to_string();
                    let frame = Utf8Bytes::from(frame);
                    for outbox in targets {
                        outbox.push(OutFrame::Location(*trip_id, frame.clone()), &self.metrics);
                    }
                }
                Event::DriverMoved { .. } => {}
                Event::NoDriversNearby { trip_id, rider_id } => {
                    self.send_user(*rider_id, || {
                        json!({"type": "no_drivers_nearby", "trip_id": trip_id.to_string()}).to_string().into()
                    });
                }
                Event::DriverPresence { driver_id, trip_id, connected } => {
                    let (trip, fix) =
                        engine.read(|v| (v.trip(*trip_id).cloned(), v.driver(*driver_id).and_then(|d| d.fix)));
                    let Some(trip) = trip else { continue };
                    self.send_user(trip.rider_id, || {
                        presence_frame(*trip_id, *driver_id, *connected, fix, now()).to_string().into()
                    });
                }
                Event::ChatMessage { trip, message } => {
                    let frame: Utf8Bytes =
                        json!({"type": "chat_message", "message": render::message(message)}).to_string().into();
                    let r = self.registry.lock();
                    let party = |id: &u64| r.sockets.get(id).is_some_and(|s| trip.visible_to(s.user, s.staff));
                    // The trip's rider and current driver, staff following the trip, and the
                    // sender's own sockets (staff who posted without following it).
                    let sender = message.from_role.is_staff().then_some(message.from_user_id).flatten();
                    let people = [Some(trip.rider_id), trip.driver_id, sender];
                    let of_people = people.into_iter().flatten().filter_map(|u| r.by_user.get(&u)).flatten();
                    let subscribed = r.by_trip.get(&trip.id).into_iter().flatten().filter(|id| party(id));
                    let mut sent = HashSet::new();
                    for id in of_people.chain(subscribed) {
                        if sent.insert(*id)
                            && let Some(s) = r.sockets.get(id)
                        {
                            s.outbox.push(OutFrame::Event(frame.clone()), &self.metrics);
                        }
                    }
                }
                // Outbound webhooks' business (`payout.paid`, `payout.failed`), not a frame.
                Event::PayoutUpdated { .. } => {}
                Event::AlertRaised { alert } => {
                    let frame: Utf8Bytes =
                        json!({"type": "sos_alert", "alert": render::alert(alert)}).to_string().into();
                    let r = self.registry.lock();
                    // Every staff socket hears every alert: safety is not filtered by a map box.
                    for s in r.sockets.values().filter(|s| s.staff) {
                        s.outbox.push(OutFrame::Event(frame.clone()), &self.metrics);
                    }
                }
            }
        }
    }

    /// Queues `text` on every socket of `user`; how many.
    /// Sends `user`'s sockets the frame `text` makes, made only if the user has one (and
    /// outside the registry's lock). Returns how many sockets it went to.
    fn send_user(&self, user: UserId, text: impl FnOnce() -> Utf8Bytes) -> u64 {
        let boxes = self.of_user(&self.registry.lock(), user);
        if boxes.is_empty() {
            return 0;
        }
        let text = text();
        for b in &boxes {
            b.push(OutFrame::Event(text.clone()), &self.metrics);
        }
        boxes.len() as u64
    }
}

/// The wall clock, for the age of a position.
fn now() -> dispatch_core::clock::Timestamp {
    dispatch_core::clock::Clock::now(&dispatch_core::clock::SystemClock)
}

/// `driver_presence`: the driver's socket dropped or came back, with the last known
/// position (API.md: the rider sees the driver "temporarily offline with the last
/// position"); `null` position fields when the driver never reported one.
fn presence_frame(
    trip_id: TripId,
    driver_id: UserId,
    connected: bool,
    fix: Option<dispatch_core::driver::Fix>,
    now: dispatch_core::clock::Timestamp,
) -> Value {
    json!({"type": "driver_presence", "trip_id": trip_id.to_string(),
        "driver_id": driver_id.to_string(), "connected": connected,
        "lat": fix.map(|f| f.point.lat()), "lng": fix.map(|f| f.point.lng()),
        "at": fix.map(|f| crate::http::rfc3339(f.at)),
        "location_age_s": fix.map(|f| now.millis_since(f.at).max(0) / 1000)})
}

/// API.md's name of why an offer ended.
fn reason_str(r: dispatch_core::WithdrawReason) -> &'static str {
    match r {
        dispatch_core::WithdrawReason::Taken => "taken",
        dispatch_core::WithdrawReason::Cancelled => "cancelled",
        dispatch_core::WithdrawReason::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use dispatch_core::Role;

    use super::*;

    #[test]
    fn presence_is_reported_on_a_users_first_open_and_last_close_only() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let driver = Principal::user(UserId::from_raw(7).unwrap(), Role::Driver);
        let reports = parking_lot::Mutex::new(Vec::new());
        let (a, _, first_a) = hub.register(driver, || reports.lock().push(true));
        let (b, _, first_b) = hub.register(driver, || reports.lock().push(true));
        assert!(first_a && !first_b);
        assert!(!hub.unregister(a, || reports.lock().push(false)), "the other socket is still open");
        assert!(hub.unregister(b, || reports.lock().push(false)));
        assert!(!hub.unregister(b, || reports.lock().push(false)), "unknown sockets change nothing");
        assert_eq!(*reports.lock(), vec![true, false]);
    }
}
