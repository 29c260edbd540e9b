//! A driver's live state: availability, position, open offers, socket presence.
//!
//! ```text
//! offline ──go online──▶ available ──accept──▶ on_trip
//!    ▲                     │   ▲                  │
//!    └────go offline───────┘   └──complete / cancel┘
//! ```
//!
//! Invariants (checked by [`crate::State::check_invariants`]): a driver is `on_trip`
//! exactly when it has a current trip, and that trip names it as its driver; a driver
//! is in the spatial index, at its last fix, exactly while it is not offline.
//! Going offline with a trip is refused.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::geo::LatLng;
use crate::id::{TripId, UserId};
use crate::user::Category;

/// Whether a driver can be offered trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Not working.
    Offline,
    /// Working, free, can be offered trips.
    Available,
    /// On a trip.
    OnTrip,
}

impl Availability {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Offline => "offline",
            Availability::Available => "available",
            Availability::OnTrip => "on_trip",
        }
    }
}

/// Why a driver cannot be offered trips now (API.md `not_dispatchable_because`).
///
/// `NotApproved` is an applicant's (a driver user without a driver record: the server
/// renders it); `DocumentExpired` and `CashDebtLimit` are refusals of going online, part of
/// the contract's list, and not produced by [`Driver::not_dispatchable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotDispatchable {
    /// Not working.
    Offline,
    /// On a trip.
    OnTrip,
    /// Suspended by staff.
    Suspended,
    /// A driver who uses the WebSocket is not connected to it.
    SocketDisconnected,
    /// No position, or none fresher than `stale_location_s`.
    StaleLocation,
    /// The driver's application is not approved (an applicant).
    NotApproved,
    /// A required document has expired (not produced yet).
    DocumentExpired,
    /// The driver owes more cash than allowed (not produced yet).
    CashDebtLimit,
}

impl NotDispatchable {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NotDispatchable::Offline => "offline",
            NotDispatchable::OnTrip => "on_trip",
            NotDispatchable::Suspended => "suspended",
            NotDispatchable::SocketDisconnected => "socket_disconnected",
            NotDispatchable::StaleLocation => "stale_location",
            NotDispatchable::NotApproved => "not_approved",
            NotDispatchable::DocumentExpired => "document_expired",
            NotDispatchable::CashDebtLimit => "cash_debt_limit",
        }
    }

    /// Every reason, in the contract's order.
    pub const ALL: [NotDispatchable; 8] = [
        NotDispatchable::Offline,
        NotDispatchable::OnTrip,
        NotDispatchable::Suspended,
        NotDispatchable::SocketDisconnected,
        NotDispatchable::StaleLocation,
        NotDispatchable::NotApproved,
        NotDispatchable::DocumentExpired,
        NotDispatchable::CashDebtLimit,
    ];
}

/// A position report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Where.
    pub point: LatLng,
    /// When the engine took it (its clock, not the phone's).
    pub at: Timestamp,
    /// Heading in degrees from north, if the phone knows.
    pub heading_deg: Option<f32>,
    /// Speed, if the phone knows.
    pub speed_mps: Option<f32>,
}

/// Most trips one driver may have offers from at once; bounds a driver's record.
pub const MAX_PENDING_OFFERS: usize = 16;

/// A driver's live record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// The driver's user id.
    pub id: UserId,
    /// The category the driver's vehicle is dispatched in.
    pub category: Category,
    /// Whether the driver can be offered trips.
    pub availability: Availability,
    /// The trip the driver is on, exactly while `on_trip`.
    pub trip_id: Option<TripId>,
    /// The last position, if any was reported.
    pub fix: Option<Fix>,
    /// Trips whose offers to this driver await an answer (at most [`MAX_PENDING_OFFERS`]).
    pub pending_offers: Vec<TripId>,
    /// Socket presence: `None` for drivers who never used the socket, else whether
    /// it is connected now and since when.
    pub connected: Option<(bool, Timestamp)>,
    /// Suspended by staff: offline and may not go online.
    pub suspended: bool,
    /// When the driver last went online (`None` while offline). A position is checked
    /// for an implausible jump only against a fix taken since then: the first position
    /// after going online is free.
    pub online_since: Option<Timestamp>,
    /// Metres driven on the current trip since it started: the great-circle steps
    /// between the positions published while it is in progress (0 off a started trip).
    /// The trip's billed distance is bounded by it (see [`crate::fare::billed_distance_m`]).
    pub trip_odometer_m: f64,
    // ----- issue 20: U -----
    /// What the driver did with offers, and time online (staff's `stats`).
    pub stats: DriverStats,
    // ----- issue 22 -----
    /// Since when the driver has been available without a trip (went online, or its last
    /// trip ended), exactly while `available`: the idle time the ranking that learns
    /// credits (`crate::matching::offer_cost`).
    pub available_since: Option<Timestamp>,
}

// ----- issue 20: U -----

/// Days of online time kept ([`DriverStats::online_s_7d`] reads the last 7 of them).
pub const ONLINE_DAYS_KEPT: usize = 8;

/// A driver's statistics, maintained by `apply` as things happen (O(1) per event, in the
/// driver record the event's command already changes):
/// - `offers`: offers made to the driver; `accepted`, `declined`, `lapsed`: offers
///   accepted (a bid the rider picked counts as an accepted offer), declined, left to
///   lapse; `cancelled_after_accept`: trips the driver cancelled after accepting them;
/// - the acceptance rate, in basis points (per 10,000), is `accepted × 10,000 / offers`;
///   the cancel rate `cancelled_after_accept × 10,000 / accepted`; each 0 when its
///   denominator is 0 (integers, rounded down);
/// - online time per UTC day, in a ring of the last [`ONLINE_DAYS_KEPT`] days, added when
///   the driver goes offline (a stretch over midnight is split between its days); the
///   stretch still running is added when read ([`DriverStats::online_s_7d`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStats {
    /// Offers made.
    pub offers: u32,
    /// Offers accepted.
    pub accepted: u32,
    /// Offers declined.
    pub declined: u32,
    /// Offers that lapsed unanswered.
    pub lapsed: u32,
    /// Trips cancelled by the driver after accepting.
    pub cancelled_after_accept: u32,
    /// (UTC day number since the epoch, seconds online that day), at most
    /// [`ONLINE_DAYS_KEPT`], the oldest dropped first.
    pub online_days: Vec<(i64, u32)>,
    // ----- issue 22 -----
    /// The driver's last answers to offers, newest in bit 0: 1 accepted, 0 declined or
    /// lapsed (a withdrawn offer was no answer); [`DriverStats::recent_len`] of them count.
    /// The window the ranking that learns reads ([`DriverStats::learned_acceptance_bps`]),
    /// so a driver who changed its ways is not judged by its first month.
    pub recent: u32,
    /// How many bits of `recent` count: at most [`RECENT_ANSWERS`].
    pub recent_len: u8,
}

/// The answers to offers [`DriverStats::recent`] keeps.
pub const RECENT_ANSWERS: u8 = 32;

const DAY_MS: i64 = 86_400_000;

impl DriverStats {
    /// Accepted per 10,000 offers (0 without offers).
    pub fn acceptance_rate_bps(&self) -> u32 {
        rate_bps(self.accepted, self.offers)
    }

    /// Cancelled after accepting per 10,000 accepted (0 without accepted offers).
    pub fn cancel_rate_bps(&self) -> u32 {
        rate_bps(self.cancelled_after_accept, self.accepted)
    }

    /// Records an answer to an offer (accepted, or declined / lapsed) in the recent window.
    pub fn answered(&mut self, accepted: bool) {
        self.recent = (self.recent << 1) | u32::from(accepted);
        self.recent_len = (self.recent_len + 1).min(RECENT_ANSWERS);
    }

    /// The acceptance the ranking that learns uses: over the recent window, with the prior
    /// of [`crate::matching::learned_acceptance_bps`] (a driver without answers: 10,000).
    pub fn learned_acceptance_bps(&self) -> u64 {
        let len = u32::from(self.recent_len.min(RECENT_ANSWERS));
        let mask = if len >= 32 { u32::MAX } else { (1u32 << len) - 1 };
        crate::matching::learned_acceptance_bps((self.recent & mask).count_ones(), len)
    }

    /// Adds the online stretch `[from, to)` to its UTC days.
    pub fn add_online(&mut self, from: Timestamp, to: Timestamp) {
        // Only the days kept can count: a longer stretch starts where they do.
        let end = to.as_millis();
        let mut at = from.as_millis().max(end - ONLINE_DAYS_KEPT as i64 * DAY_MS);
        while at < end {
            let day = at.div_euclid(DAY_MS);
            let day_end = (day + 1) * DAY_MS;
            let upto = end.min(day_end);
            let secs = u32::try_from((upto - at) / 1000).unwrap_or(u32::MAX);
            match self.online_days.iter_mut().find(|(d, _)| *d == day) {
                Some((_, s)) => *s = s.saturating_add(secs),
                None => {
                    self.online_days.push((day, secs));
                    self.online_days.sort_unstable();
                    if self.online_days.len() > ONLINE_DAYS_KEPT {
                        self.online_days.remove(0);
                    }
                }
            }
            at = upto;
        }
    }

    /// Seconds online in the 7 UTC days ending with `now`'s (today, partial, and the 6
    /// before it), counting the stretch running since `online_since` (if online).
    pub fn online_s_7d(&self, online_since: Option<Timestamp>, now: Timestamp) -> u64 {
        let today = now.as_millis().div_euclid(DAY_MS);
        let first = today - 6;
        let mut total: u64 =
            self.online_days.iter().filter(|(d, _)| (first..=today).contains(d)).map(|(_, s)| u64::from(*s)).sum();
        if let Some(since) = online_since {
            let from = since.as_millis().max(first * DAY_MS);
            total += u64::try_from((now.as_millis() - from) / 1000).unwrap_or(0);
        }
        total
    }
}

fn rate_bps(n: u32, of: u32) -> u32 {
    if of == 0 { 0 } else { u32::try_from(u64::from(n) * 10_000 / u64::from(of)).unwrap_or(u32::MAX) }
}

impl Driver {
    /// A new, offline driver.
    pub fn new(id: UserId, category: Category) -> Self {
        Self {
            id,
            category,
            availability: Availability::Offline,
            trip_id: None,
            fix: None,
            pending_offers: Vec::new(),
            connected: None,
            suspended: false,
            online_since: None,
            trip_odometer_m: 0.0,
            stats: DriverStats::default(),
            available_since: None,
        }
    }

    /// Seconds the driver has been available without a trip at `now` (0 when not available).
    pub fn idle_s(&self, now: Timestamp) -> u64 {
        self.available_since.map_or(0, |since| u64::try_from(now.millis_since(since) / 1000).unwrap_or(0))
    }

    /// Whether the last position is no older than `stale_s` at `now`.
    pub fn has_fresh_fix(&self, now: Timestamp, stale_s: u32) -> bool {
        self.fix.is_some_and(|f| now.millis_since(f.at) <= i64::from(stale_s) * 1000)
    }

    /// Why the driver cannot be offered any trip at `now` (positions older than
    /// `stale_location_s` are stale), or `None` when it can: the conditions of the driver
    /// alone that the dispatch round checks (`State::nearest_eligible` calls this; what
    /// depends on the trip — category, distance, a previous offer, room for one more —
    /// is checked there). When several hold, the first of: suspended, offline, on a trip,
    /// socket disconnected, stale location.
    pub fn not_dispatchable(&self, now: Timestamp, stale_location_s: u32) -> Option<NotDispatchable> {
        if self.suspended {
            Some(NotDispatchable::Suspended)
        } else if self.availability == Availability::Offline {
            Some(NotDispatchable::Offline)
        } else if self.availability == Availability::OnTrip {
            Some(NotDispatchable::OnTrip)
        } else if self.is_disconnected() {
            Some(NotDispatchable::SocketDisconnected)
        } else if !self.has_fresh_fix(now, stale_location_s) {
            Some(NotDispatchable::StaleLocation)
        } else {
            None
        }
    }

    /// Whether a socket user's socket is gone (drivers who never connected are not "gone").
    pub fn is_disconnected(&self) -> bool {
        matches!(self.connected, Some((false, _)))
    }
}
