//! Safety alerts (SOS) raised by a trip's rider or driver, for operators to handle.
//!
//! Owns [`Alert`], its two states and the rules of raising one:
//! - an SOS is taken on a live trip, or one that ended at most [`SOS_AFTER_END_S`] ago;
//! - a repeated SOS by the same person on the same trip, while their alert is open, folds
//!   into it (its `count` and `last_raised_at` move, the newest location and note win):
//!   a flood of SOS is one alert that says how urgent it is, never a hundred that bury
//!   another rider's;
//! - a person has at most [`MAX_OPEN_ALERTS_PER_USER`] open alerts at once (each on its own
//!   trip); one more is `rate_limited` until staff acknowledge one.
//!
//! An alert is acknowledged once, by staff, and then never changes: the next checkpoint
//! moves it to the history (the hot set holds the open ones and the few acknowledged
//! since the last checkpoint).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::geo::LatLng;
use crate::id::{AlertId, TripId, UserId};

/// The longest note on an alert, characters.
pub const MAX_NOTE_LEN: usize = 500;

/// An SOS is taken on a trip that ended at most this long ago (a rider who just got out
/// of the car), never on an older one.
pub const SOS_AFTER_END_S: u32 = 30 * 60;

/// Open alerts one person may have at once (each on its own trip: repeats on one trip
/// fold into its alert).
pub const MAX_OPEN_ALERTS_PER_USER: usize = 3;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Waiting for an operator.
    Open,
    /// An operator has it.
    Acknowledged,
}

impl AlertStatus {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
        }
    }
}

/// A safety alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Its id.
    pub id: AlertId,
    /// The trip it is about.
    pub trip_id: TripId,
    /// Who raised it.
    pub raised_by: UserId,
    /// Where, as the app reported, or the raiser's last known position.
    pub location: Option<LatLng>,
    /// What they wrote.
    pub note: Option<String>,
    /// When it was first raised.
    pub raised_at: Timestamp,
    /// How many times it was raised (repeats while it was open fold into it).
    pub count: u32,
    /// When it was last raised.
    pub last_raised_at: Timestamp,
    /// Open or acknowledged.
    pub status: AlertStatus,
    /// Who acknowledged it (`None` for the bootstrap admin or while open).
    pub acknowledged_by: Option<UserId>,
    /// When.
    pub acknowledged_at: Option<Timestamp>,
}
