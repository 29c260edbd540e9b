//! Safety alerts (SOS) raised by a trip's rider or driver, for operators to handle.
//!
//! Owns [`Alert`] and its two states. An alert is raised once per call, kept until
//! acknowledged by staff, and never deleted: the list of open alerts is what the
//! operators' console shows first, oldest first.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::geo::LatLng;
use crate::id::{AlertId, TripId, UserId};

/// The longest note on an alert, characters.
pub const MAX_NOTE_LEN: usize = 500;

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
    /// When.
    pub raised_at: Timestamp,
    /// Open or acknowledged.
    pub status: AlertStatus,
    /// Who acknowledged it (`None` for the bootstrap admin or while open).
    pub acknowledged_by: Option<UserId>,
    /// When.
    pub acknowledged_at: Option<Timestamp>,
}
