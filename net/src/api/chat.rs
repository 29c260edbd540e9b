//! A trip's chat over HTTP: `POST /v1/trips/{id}/messages` and `GET
//! /v1/trips/{id}/messages` (API.md "The ride, as riders and drivers see it").
//!
//! Guarantees: the rules are the engine's (`dispatch_core::chat`: who may post when, the
//! text, the bound), so HTTP and the WebSocket's `chat` frame can never disagree; posts
//! count against `[limits] chat_per_min` (the route's class, shared with the socket);
//! reading shows the trip's messages to who may see the trip (`Trip::visible_to`: its
//! rider, its current driver, staff; anyone else `404`) for as long as they are kept
//! (`[retention] chat_days`), whether the trip is hot or in the history, newest first
//! (by time, then id), paged by the opaque cursor of every list.

use dispatch_core::chat::Message;
use dispatch_core::{Outcome, TripId};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::{Ctx, now, parse_id, unexpected};
use crate::http::{self, ApiError, Cursor, Resp, json_response};
use crate::render;

impl Ctx<'_> {
    /// `POST /v1/trips/{id}/messages`: `{"text"}` → `201` the message.
    pub(super) async fn post_message(&mut self, id: &str) -> Result<Resp, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct In {
            text: String,
        }
        let b: In = self.json(false)?;
        let trip_id: TripId = parse_id(id, "trip")?;
        match self.submit(self.app.post_message(trip_id, b.text)).await? {
            Outcome::Message(m) => Ok(json_response(StatusCode::CREATED, &render::message(&m))),
            o => Err(unexpected(&o)),
        }
    }

    /// `GET /v1/trips/{id}/messages?limit=&cursor=`: the messages still kept, newest first.
    pub(super) async fn list_messages(&self, id: &str) -> Result<Resp, ApiError> {
        let limit = http::limit(&self.query)?;
        let after = Cursor::from_query(&self.query)?;
        let t = self.visible_trip(id).await?;
        let retention_s = self.app.config.rules().chat_retention_s;
        let page: Vec<&Message> = t
            .chat_kept(now(), retention_s)
            .into_iter()
            .filter(|m| after.is_none_or(|c| c.precedes(m.at.as_millis(), m.id.raw())))
            .take(limit)
            .collect();
        let last = page.last().map(|m| Cursor { at_ms: m.at.as_millis(), id: m.id.raw() });
        let items: Vec<Value> = page.iter().map(|m| render::message(m)).collect();
        Ok(json_response(StatusCode::OK, &http::page(items, limit, last)))
    }
}
