//! What a client may send on its socket, and the answers: `location` (drivers),
//! `subscribe` (a trip, or staff's `ops` channel), `chat` (a message on a trip), `ping`.
//!
//! Guarantees: frames parse strictly (malformed JSON `invalid_json`, a wrong shape or an
//! unknown type `invalid_request`) and a bad frame is answered with an `error` frame, never
//! by closing; a position passes the same checks as over HTTP (`crate::wire::LocationIn`);
//! a trip is followed only by who may see it (`Trip::visible_to`: its rider, its driver,
//! staff) and the ops channel only by staff; a `chat` frame follows the rules of `POST
//! /v1/trips/{id}/messages` (the engine's, `dispatch_core::chat`) and counts against the
//! same `[limits] chat_per_min` bucket; it is answered by the `chat_message` the fan-out
//! sends every party (the sender's sockets included), and only a refusal gets a reply
//! (`error`).

use dispatch_core::{Command, Outcome, Role, TripId};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::http::ApiError;
use crate::hub::ops::BBox;
use crate::ratelimit::{Class, Subject};
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
    /// Post a chat message on a trip.
    Chat(ChatIn),
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

/// `{"type":"chat","trip_id","text"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatIn {
    /// The trip.
    pub trip_id: String,
    /// The message (the engine trims and checks it).
    pub text: String,
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
            // ----- issue 21 -----
            // A follower's socket: the leader takes the report (the socket's answer is the same).
            if let Some(node) = app.follower() {
                let sent = crate::cluster::forward::submit(node, who.actor(), Command::UpdateLocation(report));
                return sent.await.err().map(|r| error_frame(&r.code, &r.message));
            }
            match app.submit(who.actor(), Command::UpdateLocation(report)).await {
                Ok(_) => None,
                Err(e) => Some(error_frame(e.code, &e.message)),
            }
        }
        ClientFrame::Chat(c) => {
            chat(app, who, socket, c).await.unwrap_or_else(|e| Some(error_frame(e.code, &e.message)))
        }
        ClientFrame::Subscribe(s) => match (s.trip_id, s.channel.as_deref()) {
            (Some(trip), None) => {
                let found = match trip.parse::<TripId>() {
                    // A finished trip may be in the history on disk: read it off the runtime threads.
                    Ok(id) => app.blocking(move |e| e.find_trip(id)).await.ok().flatten(),
                    Err(_) => None,
                };
                let visible = found.filter(|t| t.visible_to(who.user_id(), who.reads_trips()));
                match visible {
                    Some(t) => {
                        // A finished trip has nothing more to say: acknowledged, not registered.
                        if !t.status.is_terminal() {
                            app.hub.subscribe_trip(socket, t.id);
                        }
                        let viewer = render::Viewer::of(&t, who.user_id(), who.reads_trips());
                        let mut cards = app.engine.read(|v| render::Cards::of(v, &t));
                        cards.eta = app.etas.cached(&t);
                        let trip = serde_json::to_value(render::trip(&t, viewer, &cards)).unwrap_or_default();
                        Some(json!({"type": "subscribed", "trip_id": t.id.to_string(), "trip": trip}).to_string())
                    }
                    None => Some(error_frame("forbidden", "not your trip")),
                }
            }
            (None, Some("ops")) if who.reads_trips() => match s.bbox.map(BBox::new).transpose() {
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

/// A `chat` frame: rate-limited like the HTTP post, then the engine's `PostMessage`. The
/// fan-out delivers the message; only the bootstrap admin's socket (no user, so no
/// sockets by user) that does not follow the trip is sent it here, as the reply.
async fn chat(app: &App, who: Principal, socket: u64, c: ChatIn) -> Result<Option<String>, ApiError> {
    if let Some(user) = who.user_id() {
        app.limit("ws_chat", Class::Chat, Subject::User(user.raw()))?;
    }
    // A malformed id names no trip: `not_found`, as over HTTP.
    let trip_id: TripId = c.trip_id.parse().map_err(|_| ApiError::not_found("trip"))?;
    // ----- issue 21 -----
    if let Some(node) = app.follower() {
        let sent = crate::cluster::forward::submit(node, who.actor(), app.post_message(trip_id, c.text));
        return Ok(match sent.await {
            Ok(v) if who.user_id().is_none() && !app.hub.follows(socket, trip_id) && !v["message"].is_null() => {
                Some(json!({"type": "chat_message", "message": v["message"]}).to_string())
            }
            Ok(_) => None,
            Err(r) => Some(error_frame(&r.code, &r.message)),
        });
    }
    let outcome = app.submit(who.actor(), app.post_message(trip_id, c.text)).await?;
    match outcome {
        Outcome::Message(m) if who.user_id().is_none() && !app.hub.follows(socket, trip_id) => {
            Ok(Some(json!({"type": "chat_message", "message": render::message(&m)}).to_string()))
        }
        _ => Ok(None),
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
        assert!(matches!(
            parse_client_frame(r#"{"type":"chat","trip_id":"trp_1","text":"hi"}"#),
            Ok(ClientFrame::Chat(_))
        ));
        assert_eq!(
            parse_client_frame(r#"{"type":"chat","trip_id":"trp_1","text":"hi","x":1}"#).unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(parse_client_frame(r#"{"type":"chat","trip_id":"trp_1"}"#).unwrap_err().code, "invalid_request");
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
