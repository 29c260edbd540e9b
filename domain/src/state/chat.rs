//! The handler of `Command::PostMessage`: a chat message on a trip.
//!
//! Guarantees (the rules themselves are in [`crate::chat`]): every condition is checked
//! before the first write, in this order — who (anyone but the trip's rider, its
//! current driver or staff: `not_found`, as if the trip did not exist), the text
//! (`invalid_request`), the window of the rider and the driver (`invalid_transition`),
//! the bound of the chat (`invalid_transition`); the message is appended to its trip
//! (a new revision, so a trip archived since is archived again with it) after the
//! trip's expired messages are dropped, and `Event::ChatMessage` is emitted. Also here, as
//! methods of the trip: who of it is a party to its chat, whether its window is open, and
//! the messages still kept (the trip's module holds only the data).

use std::sync::Arc;

use crate::chat::{self, CHAT_WINDOW_AFTER_END_S, MAX_MESSAGES_PER_TRIP, Message, SenderRole, kept};
use crate::clock::Timestamp;
use crate::command::{Actor, Event, Outcome};
use crate::error::{Error, Result};
use crate::id::{MessageId, TripId, UserId};
use crate::trip::Trip;

use super::{Effects, State, Who};

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn post_message(
        &mut self,
        who: Who,
        actor: Actor,
        id: Option<MessageId>,
        trip_id: TripId,
        text: &str,
        now: Timestamp,
        fx: &mut Effects,
    ) -> Result<Outcome> {
        let id = id.ok_or_else(|| Error::Internal("a message must be stamped with its id".into()))?;
        let trip = self.trips.get(&trip_id).ok_or_else(|| Error::not_found("trip", trip_id))?;
        let (from_user_id, from_role) = match (who, actor) {
            (Who::Staff { admin }, _) => {
                let user = match actor {
                    Actor::User(u) => Some(u),
                    _ => None,
                };
                (user, if admin { SenderRole::Admin } else { SenderRole::Support })
            }
            (Who::Rider(u) | Who::Driver(u), _) => match trip.chat_party(u) {
                Some(role) => (Some(u), role),
                None => return Err(Error::not_found("trip", trip_id)),
            },
            (Who::System, _) => return Err(Error::Forbidden("the engine does not post chat messages".into())),
        };
        let text = chat::clean_text(text)?;
        if !from_role.is_staff() && !trip.chat_open(now) {
            return Err(Error::InvalidTransition {
                action: "post a message to",
                entity: format!("trip {trip_id}"),
                from: if trip.driver_id.is_none() && trip.status.is_open() {
                    "without a driver"
                } else {
                    trip.status.as_str()
                },
            });
        }
        let retention_s = self.rules.chat_retention_s;
        let kept = trip.messages.iter().filter(|m| chat::kept(m.at, now, retention_s)).count();
        if kept >= MAX_MESSAGES_PER_TRIP {
            return Err(Error::InvalidTransition {
                action: "post another message to",
                entity: format!("trip {trip_id}"),
                from: "holding its 500 messages",
            });
        }
        let message = Message { id, trip_id, from_user_id, from_role, text, at: now };
        let t = self.trip_mut(trip_id, fx)?;
        let messages = Arc::make_mut(&mut t.messages);
        messages.retain(|m| chat::kept(m.at, now, retention_s));
        messages.push(message.clone());
        let trip = Arc::clone(self.trip_ref(trip_id)?);
        fx.events.push(Event::ChatMessage { trip, message: message.clone() });
        Ok(Outcome::Message(Box::new(message)))
    }
}

impl Trip {
    /// The chat role of `user` on this trip when that user is one of its two parties:
    /// its rider, or its current driver. `None` for anyone else (a driver who gave the
    /// trip back included).
    pub fn chat_party(&self, user: UserId) -> Option<SenderRole> {
        if user == self.rider_id {
            Some(SenderRole::Rider)
        } else if Some(user) == self.driver_id {
            Some(SenderRole::Driver)
        } else {
            None
        }
    }

    /// Whether the rider and the driver may post at `now`: a driver holds the trip
    /// (accepted, arrived, in progress, or it ended with one), and it has not been over
    /// for [`CHAT_WINDOW_AFTER_END_S`] yet.
    pub fn chat_open(&self, now: Timestamp) -> bool {
        if self.driver_id.is_none() {
            return false;
        }
        if self.status.is_open() {
            return true;
        }
        self.ended_at
            .is_some_and(|end| now.as_millis() < end.as_millis().saturating_add(CHAT_WINDOW_AFTER_END_S * 1000))
    }

    /// The messages still kept at `now`, newest first (by time, then id: the order the
    /// API pages them in).
    pub fn chat_kept(&self, now: Timestamp, retention_s: u32) -> Vec<&Message> {
        let mut out: Vec<&Message> = self.messages.iter().filter(|m| kept(m.at, now, retention_s)).collect();
        out.sort_by_key(|m| std::cmp::Reverse((m.at, m.id)));
        out
    }
}
