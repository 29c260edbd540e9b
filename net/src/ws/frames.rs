//! What a client may send on its socket, and the answers: `location` (drivers),
//! `subscribe` (a trip, or staff's `ops` channel), `ping`.
//!
//! Guarantees: frames parse strictly (malformed JSON `invalid_json`, a wrong shape or an
//! unknown type `invalid_request`) and a bad frame is answered with an `error` frame, never
//! by closing; a position passes the same checks as over HTTP (`crate::wire::LocationIn`);
//! a trip is followed only by who may see it (`Trip::visible_to`: its rider, its driver,
//! staff) and the ops channel only by staff.

use dispatch_core::{Command, Role, TripId};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::http::ApiError;
use crate::hub::ops::BBox;
use crate::render;
use crate::server::App;
use crate::wire::LocationIn;

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A driver's position.
    Location(LocationIn),
    /// Follow a trip (or, staff, the ops channel).
    Subscribe(SubscribeIn),
    /// Keep-alive.
    Ping {},
}

/// `{"type":"subscribe", ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeIn {
    /// The trip to follow.
    #[serde(default)]
    pub trip_id: Option<String>,
    /// `ops` (staff).
    #[serde(default)]
    pub channel: Option<String>,
    /// The ops channel's box `[min_lng, min_lat, max_lng, max_lat]`.
    #[serde(default)]
    pub bbox: Option<[f64; 4]>,
}

/// Parses one client text frame: `invalid_json` for bad JSON, `invalid_request` for a
/// wrong shape or unknown type. Pure; fuzzed.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ApiError> {
    serde_json::from_str(text).map_err(|e| crate::http::json_error(&e))
}

/// An `error` frame.
pub(super) fn error_frame(code: &str, message: &str) -> String {
    json!({"type": "error", "code": code, "message": message}).to_string()
}

/// Handles one text frame; the reply frame, if any.
pub(super) async fn on_text(app: &App, who: Principal, socket: u64, text: &str) -> Option<String> {
    let frame = match parse_client_frame(text) {
        Ok(f) => f,
        Err(e) => return Some(error_frame(e.code, &e.message)),
    };
    match frame {
        ClientFrame::Ping {} => Some(json!({"type": "pong"}).to_string()),
        ClientFrame::Location(l) => {
            if who.role() != Role::Driver {
                return Some(error_frame("forbidden", "only drivers send locations"));
            }
            let report = match l.report() {
                Ok(r) => r,
                Err(e) => return Some(error_frame(e.code, &e.message)),
            };
            match app.submit(who.actor(), Command::UpdateLocation(report)).await {
                Ok(_) => None,
                Err(e) => Some(error_frame(e.code, &e.message)),
            }
        }
        ClientFrame::Subscribe(s) => match (s.trip_id, s.channel.as_deref()) {
            (Some(trip), None) => {
                let found = match trip.parse::<TripId>() {
                    // A finished trip may be in the history on disk: read it off the runtime threads.
                    Ok(id) => app.blocking(move |e| e.find_trip(id)).await.ok().flatten(),
                    Err(_) => None,
                };
                let visible = found.filter(|t| t.visible_to(who.user_id(), who.is_staff()));
                match visible {
                    Some(t) => {
                        // A finished trip has nothing more to say: acknowledged, not registered.
                        if !t.status.is_terminal() {
                            app.hub.subscribe_trip(socket, t.id);
                        }
                        let viewer = render::Viewer::of(&t, who.user_id(), who.is_staff());
                        let mut cards = app.engine.read(|v| render::Cards::of(v, &t));
                        cards.eta = app.etas.cached(&t);
                        let trip = render::trip(&t, viewer, &cards);
                        Some(json!({"type": "subscribed", "trip_id": t.id.to_string(), "trip": trip}).to_string())
                    }
                    None => Some(error_frame("forbidden", "not your trip")),
                }
            }
            (None, Some("ops")) if who.is_staff() => match s.bbox.map(BBox::new).transpose() {
                Ok(bbox) => {
                    app.hub.subscribe_ops(socket, bbox);
                    Some(json!({"type": "subscribed", "channel": "ops"}).to_string())
                }
                Err(e) => Some(error_frame(e.code, &e.message)),
            },
            (None, Some("ops")) => Some(error_frame("forbidden", "the ops channel is for staff")),
            _ => Some(error_frame("invalid_request", "subscribe takes a trip_id, or channel \"ops\"")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_strictly() {
        assert!(matches!(parse_client_frame(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping {})));
        assert!(matches!(
            parse_client_frame(r#"{"type":"location","lat":30.0,"lng":31.2,"heading_deg":90}"#),
            Ok(ClientFrame::Location(_))
        ));
        assert!(matches!(
            parse_client_frame(r#"{"type":"subscribe","trip_id":"trp_1"}"#),
            Ok(ClientFrame::Subscribe(_))
        ));
        assert_eq!(parse_client_frame("{").unwrap_err().code, "invalid_json");
        assert_eq!(parse_client_frame(r#"{"type":"dance"}"#).unwrap_err().code, "invalid_request");
        assert_eq!(
            parse_client_frame(r#"{"type":"location","lat":1,"lng":2,"x":3}"#).unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(parse_client_frame(r#"{"lat":1}"#).unwrap_err().code, "invalid_request");
    }

    proptest::proptest! {
        /// The stable twin of `fuzz/fuzz_targets/server_input.rs`.
        #[test]
        fn fuzz_twin(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            crate::fuzz_input(&bytes);
        }

        #[test]
        fn fuzz_twin_near_valid_frames(lat in -200.0f64..200.0, lng in -400.0f64..400.0, ty in "[a-z_]{0,12}") {
            let frame = format!(r#"{{"type":"{ty}","lat":{lat},"lng":{lng}}}"#);
            crate::fuzz_input(frame.as_bytes());
        }
    }
}
