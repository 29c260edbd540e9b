//! In-trip chat: a trip's messages, who may post and read them, and for how long they
//! are kept (API.md "The ride, as riders and drivers see it").
//!
//! Owns the rules; the handler that applies `Command::PostMessage` is in
//! `state/chat.rs`, with the trip's chat questions (`Trip::chat_party`, `Trip::chat_open`,
//! `Trip::chat_kept`: the trip's module does not depend on this one's rules, only on
//! [`Message`]). Guarantees:
//! - a message's text is trimmed, 1–[`MAX_TEXT_CHARS`] characters (Unicode scalar values,
//!   not bytes) and holds no control character at all — not even a newline: a chat line
//!   is one line, and a newline in it would be the one control character apps render
//!   differently (refused: `invalid_request`);
//! - the messages live on their trip (`Trip::messages`), so they are checkpointed,
//!   archived to the history and restored with it, and a replay rebuilds them from the log
//!   like every other change;
//! - who may post (`Trip::chat_party`, `Trip::chat_open`): the trip's rider and its
//!   *current* driver (the one whose id the trip holds: a driver who gave the trip back
//!   loses the chat with the trip, and the next driver sees the whole conversation,
//!   earlier messages included) from accept until [`CHAT_WINDOW_AFTER_END_S`] after the
//!   trip ends; staff (support, admin) at any time; anyone else does not see the trip
//!   (`not_found`). Reading follows the same visibility (`Trip::visible_to`) without
//!   the window: a rider or driver reads the chat for as long as it is kept;
//! - at most [`MAX_MESSAGES_PER_TRIP`] messages are kept per trip; one more is
//!   `409 invalid_transition` (the chat is full: a state of the trip, not a rate);
//! - retention: a message is kept `DispatchRules::chat_retention_s` (`[retention]
//!   chat_days`) from when it was posted. Reads never return an older one
//!   (`Trip::chat_kept`), and each new message drops the trip's expired ones from the
//!   state (so from the next checkpoint and history row). A trip archived with messages
//!   keeps them in its history row, unserved once expired, until the checkpoint thread
//!   rewrites the row without them (`dispatch_core::history`'s chat retention).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{MessageId, TripId, UserId};

/// Longest message, in characters, after trimming.
pub const MAX_TEXT_CHARS: usize = 1_000;

/// Most messages a trip keeps: the bound of its chat.
pub const MAX_MESSAGES_PER_TRIP: usize = 500;

/// The rider and the driver may post until this long after the trip ended (30 min).
pub const CHAT_WINDOW_AFTER_END_S: i64 = 30 * 60;

/// The default of `DispatchRules::chat_retention_s` (`[retention] chat_days = 30`).
pub const DEFAULT_RETENTION_S: u32 = 30 * 24 * 60 * 60;

/// Who posted a message, as the API names the sender's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderRole {
    /// The trip's rider.
    Rider,
    /// The trip's driver.
    Driver,
    /// A support agent.
    Support,
    /// An administrator (a user, or the bootstrap admin token).
    Admin,
}

impl SenderRole {
    /// The name used in the API (`from_role`).
    pub fn as_str(self) -> &'static str {
        match self {
            SenderRole::Rider => "rider",
            SenderRole::Driver => "driver",
            SenderRole::Support => "support",
            SenderRole::Admin => "admin",
        }
    }

    /// Staff, who may post at any time.
    pub fn is_staff(self) -> bool {
        matches!(self, SenderRole::Support | SenderRole::Admin)
    }
}

/// One chat message of a trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unguessable id (`msg_…`), drawn by the writer.
    pub id: MessageId,
    /// The trip it belongs to.
    pub trip_id: TripId,
    /// Who sent it; `None` for the bootstrap admin token, which has no user record.
    pub from_user_id: Option<UserId>,
    /// In what role.
    pub from_role: SenderRole,
    /// The text, trimmed (plain text; renderers escape it).
    pub text: String,
    /// When it was posted.
    pub at: Timestamp,
}

/// The text as it will be stored: trimmed, 1-[`MAX_TEXT_CHARS`] characters, no control
/// characters; `invalid_request` otherwise.
pub fn clean_text(text: &str) -> Result<String> {
    let t = text.trim();
    let n = t.chars().count();
    if n == 0 || n > MAX_TEXT_CHARS || t.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "text must be 1-{MAX_TEXT_CHARS} characters after trimming, without control characters"
        )));
    }
    Ok(t.to_owned())
}

/// Whether a message posted at `at` is still kept at `now` under `retention_s`.
pub fn kept(at: Timestamp, now: Timestamp, retention_s: u32) -> bool {
    now.as_millis() < at.as_millis().saturating_add(i64::from(retention_s).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_counted_in_characters_and_free_of_control_characters() {
        assert_eq!(clean_text("  hello \t").as_deref(), Ok("hello"));
        assert!(clean_text("").is_err());
        assert!(clean_text(" \n\t ").is_err());
        // 1,000 two-byte characters pass (2,000 bytes); 1,001 do not.
        assert!(clean_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(clean_text(&"é".repeat(MAX_TEXT_CHARS + 1)).is_err());
        // Surrounding whitespace does not count.
        assert!(clean_text(&format!("  {}  ", "a".repeat(MAX_TEXT_CHARS))).is_ok());
        for bad in ["a\nb", "a\u{7}b", "a\u{1b}[31mb", "a\u{85}b", "a\rb"] {
            assert!(clean_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retention_keeps_a_message_strictly_less_than_its_period() {
        let at = Timestamp::from_millis(1_000_000);
        assert!(kept(at, Timestamp::from_millis(1_000_000 + 9_999), 10));
        assert!(!kept(at, Timestamp::from_millis(1_000_000 + 10_000), 10));
    }
}
