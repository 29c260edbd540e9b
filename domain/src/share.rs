//! Share links: a trip's rider lets someone follow the ride, read-only, without a
//! token of their own.
//!
//! The state records a link by its id ([`crate::id::ShareId`], drawn by the writer) and
//! its trip; the link's secret token is not in the domain at all: the server derives it
//! from the id with a keyed MAC (so neither the log nor a checkpoint holds anything a
//! reader could follow a trip with), and checks it before asking the state.
//!
//! Guarantees: a link works while its trip is open and until [`SHARE_AFTER_END_S`] after
//! the trip ended ([`expires_at`]); at most [`MAX_SHARES_PER_TRIP`] links of a trip exist
//! at once; revoking removes every link of the trip.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::id::{TripId, UserId};
use crate::trip::Trip;

/// A link keeps working this long after its trip ended: 15 minutes.
pub const SHARE_AFTER_END_S: u32 = 15 * 60;

/// Most links one trip may have at once (revoking them all makes room again).
pub const MAX_SHARES_PER_TRIP: usize = 5;

/// A share link as the state records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The trip it shows.
    pub trip_id: TripId,
    /// The rider who made it.
    pub rider_id: UserId,
    /// When.
    pub created_at: Timestamp,
    /// When the trip ended, recorded when the trip left the hot state (the state no
    /// longer has the trip to read it from); `None` while the trip is hot.
    pub trip_ended_at: Option<Timestamp>,
}

/// When links to `trip` stop working: [`SHARE_AFTER_END_S`] after it ended; `None` while
/// it is open (the end is not known yet).
pub fn expires_at(trip: &Trip) -> Option<Timestamp> {
    ends_at(trip.status.is_terminal().then_some(trip.ended_at).flatten())
}

/// When a link stops working given when its trip ended (`None`: not yet).
pub fn ends_at(trip_ended_at: Option<Timestamp>) -> Option<Timestamp> {
    trip_ended_at.map(|t| t.plus_secs(SHARE_AFTER_END_S))
}

/// Whether a link to `trip` still works at `now`.
pub fn is_live(trip: &Trip, now: Timestamp) -> bool {
    expires_at(trip).is_none_or(|end| now < end)
}
