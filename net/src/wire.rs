//! Input shapes that more than one transport parses: what arrives as the body of an HTTP
//! request and as a WebSocket frame alike (a driver's position), so that both check it
//! the same way.
//!
//! Guarantees: unknown fields are refused (`invalid_request`); a position out of range or
//! not finite is `invalid_coordinates`, whichever way it came in.

use dispatch_core::LocationReport;
use serde::Deserialize;

use crate::http::{self, ApiError, lat_lng};

/// `POST /v1/driver/location` and the WS `location` message (without `type`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationIn {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Degrees from north.
    #[serde(default)]
    pub heading_deg: Option<f32>,
    /// Metres per second.
    #[serde(default)]
    pub speed_mps: Option<f32>,
    /// Accuracy, metres (accepted, not used yet).
    #[serde(default)]
    pub accuracy_m: Option<f32>,
    /// The phone's time (accepted, not trusted: the engine stamps its own).
    #[serde(default)]
    pub recorded_at: Option<String>,
}

impl LocationIn {
    /// The engine's report (`invalid_coordinates` / `invalid_request` on bad values).
    pub fn report(&self) -> Result<LocationReport, ApiError> {
        let point = lat_lng(self.lat, self.lng)?;
        if self.heading_deg.is_some_and(|h| !(0.0..=360.0).contains(&h))
            || self.speed_mps.is_some_and(|s| !(0.0..=200.0).contains(&s))
            || self.accuracy_m.is_some_and(|a| !(0.0..=100_000.0).contains(&a))
        {
            return Err(ApiError::invalid("heading_deg must be 0-360, speed_mps 0-200, accuracy_m positive"));
        }
        if let Some(t) = &self.recorded_at {
            http::parse_rfc3339(t, "recorded_at")?;
        }
        Ok(LocationReport { point, heading_deg: self.heading_deg, speed_mps: self.speed_mps })
    }
}
