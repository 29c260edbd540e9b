//! Why a trip ended other than by completion: [`Cancellation`] (who, the reason code of
//! API.md's list, the text, when), the parties ([`CancelledBy`]) and the codes
//! ([`CancelReason`], with their wire names). A code outside the list has no value here:
//! [`CancelReason::parse`] answers `None`, so callers refuse it before anything changes.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// Who cancelled a trip, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancellation {
    /// Who.
    pub by: CancelledBy,
    /// Why, as one of the codes API.md lists.
    pub code: CancelReason,
    /// Their reason (plain text).
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// The party that cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    /// The trip's rider.
    Rider,
    /// The trip's driver. A driver who gives an accepted trip back does not end it (it
    /// searches again), so no trip records this today; API.md lists it.
    Driver,
    /// Operator staff.
    Staff,
    /// The engine itself: a search that timed out (the trip expired), or a command
    /// the system actor sent.
    System,
}

/// Why a trip was cancelled: the codes of API.md ("Cancel"). A cancel that names no
/// code (only a `reason`, or nothing) is [`CancelReason::Other`], and so is a trip
/// whose search timed out (none of the others fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The rider no longer wants the ride.
    ChangedMind,
    /// The driver is taking too long.
    DriverLate,
    /// The pickup was set in the wrong place.
    WrongPickup,
    /// The driver asked for the cancellation.
    DriverAsked,
    /// The rider did not come to the pickup.
    RiderNoShow,
    /// Someone felt unsafe.
    Unsafe,
    /// Anything else (the default).
    #[default]
    Other,
}

impl CancelReason {
    /// Every code, in API.md's order.
    pub const ALL: [CancelReason; 7] = [
        CancelReason::ChangedMind,
        CancelReason::DriverLate,
        CancelReason::WrongPickup,
        CancelReason::DriverAsked,
        CancelReason::RiderNoShow,
        CancelReason::Unsafe,
        CancelReason::Other,
    ];

    /// The wire name (`driver_late`).
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::ChangedMind => "changed_mind",
            CancelReason::DriverLate => "driver_late",
            CancelReason::WrongPickup => "wrong_pickup",
            CancelReason::DriverAsked => "driver_asked",
            CancelReason::RiderNoShow => "rider_no_show",
            CancelReason::Unsafe => "unsafe",
            CancelReason::Other => "other",
        }
    }

    /// The code of a wire name, `None` for any other string.
    pub fn parse(s: &str) -> Option<CancelReason> {
        CancelReason::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The reason text the engine records when a trip's search times out (it expires).
pub const EXPIRED_REASON: &str = "no driver accepted the trip in time";
