//! Chat retention for archived trips: the `chat_by_age` index and the walk that rewrites
//! archived trip rows without their expired messages.
//!
//! A hot trip drops its expired messages itself (each new message does, and reads hide
//! them: `Trip::chat_kept`); a trip archived with messages keeps them in its history row.
//! So when a checkpoint writes such a row it also writes `oldest message's time ‖ trip →
//! ()` ([`index_row`]), and retention ([`History::prune_chat`]) walks that index oldest
//! first: for each entry whose time is past retention it reads the row, drops the
//! expired messages, writes the row back, deletes the entry and, when messages remain,
//! indexes the row again under its new oldest message.
//!
//! Guarantees:
//! - it runs on the checkpoint thread, the only writer of trip rows, between checkpoints,
//!   so a rewrite never races a checkpoint's write of the same row;
//! - each batch is its own short transaction of at most [`CHAT_PRUNE_BATCH_MAX`] trips;
//!   the index is durable, so a restart resumes where the walk stopped;
//! - a row is rewritten only without messages that reads already hide
//!   (`crate::chat::kept`); nothing else in it changes (not its revision);
//! - the index is keyed by the messages' times, not their expiry, so a retention changed
//!   later applies to rows archived before; a stale entry (a row archived again since,
//!   under another oldest message) is deleted when its turn comes.

use dispatch_storage::store::{self, Scan, TableName, key};

use super::{History, TRIPS, decode, store_error};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::TripId;
use crate::trip::Trip;

const CHAT_BY_AGE: TableName = TableName::new("chat_by_age");

/// Most archived trips one chat retention batch rewrites: one short transaction each.
pub const CHAT_PRUNE_BATCH_MAX: usize = 1_000;

/// What one batch of chat retention did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatPruned {
    /// Index entries taken (trips looked at).
    pub trips: u64,
    /// Messages removed from their rows.
    pub messages: u64,
}

fn ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis()).unwrap_or(0)
}

fn entry(oldest: Timestamp, trip: TripId) -> Vec<u8> {
    key::concat(&[&key::u64_be(ms(oldest)), &key::u64_be(trip.raw())])
}

/// The index row a checkpoint writes with an archived trip that holds messages.
pub(super) fn index_row(trip: &Trip) -> Option<(TableName, Vec<u8>, Vec<u8>)> {
    let oldest = trip.messages.iter().map(|m| m.at).min()?;
    Some((CHAT_BY_AGE, entry(oldest, trip.id), Vec::new()))
}

impl History {
    /// One batch of chat retention at `now` under `retention_s`: rewrites at most `max`
    /// (up to [`CHAT_PRUNE_BATCH_MAX`]) archived trips whose oldest message expired, in
    /// one transaction. Fewer trips than `max`: nothing more is due.
    pub(crate) fn prune_chat(&self, now: Timestamp, retention_s: u32, max: usize) -> Result<ChatPruned> {
        let _rows = self.trip_rows.lock();
        let max = max.clamp(1, CHAT_PRUNE_BATCH_MAX);
        let scan = Scan::new(Vec::new(), max.min(store::SCAN_LIMIT_MAX));
        let page = self.store.scan(CHAT_BY_AGE, &scan).map_err(|e| store_error("cannot read the chat index", &e))?;
        let mut done = ChatPruned::default();
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &page.rows {
            let malformed = || Error::Storage("a chat index row has a malformed key".into());
            let (at, rest) = key::take_u64_be(k).ok_or_else(malformed)?;
            let at = Timestamp::from_millis(i64::try_from(at).unwrap_or(i64::MAX));
            if crate::chat::kept(at, now, retention_s) {
                break;
            }
            let trip = key::take_u64_be(rest).and_then(|(raw, _)| TripId::from_raw(raw)).ok_or_else(malformed)?;
            deletes.push((CHAT_BY_AGE, k.clone()));
            done.trips += 1;
            if !seen.insert(trip) {
                continue;
            }
            let row = key::u64_be(trip.raw()).to_vec();
            let Some(bytes) = self.store.get(TRIPS, &row).map_err(|e| store_error("cannot read a trip", &e))? else {
                continue;
            };
            let mut t = decode(&bytes)?;
            let before = t.messages.len();
            let kept: Vec<_> =
                t.messages.iter().filter(|m| crate::chat::kept(m.at, now, retention_s)).cloned().collect();
            if kept.len() == before {
                // A stale entry: the row was archived again since, under its own entry.
                continue;
            }
            done.messages += (before - kept.len()) as u64;
            t.messages = std::sync::Arc::new(kept);
            if let Some(next) = index_row(&t) {
                puts.push(next);
            }
            let value = postcard::to_allocvec(&t).map_err(|e| Error::internal(format!("cannot encode a trip: {e}")))?;
            puts.push((TRIPS, row, value));
        }
        self.store.write_rows(&puts, &deletes).map_err(|e| store_error("cannot prune chat", &e))?;
        self.pruned_chat.fetch_add(done.messages, std::sync::atomic::Ordering::Relaxed);
        Ok(done)
    }

    /// How many archived trips the chat index names (each until its last message expired).
    pub fn chat_indexed(&self) -> Result<u64> {
        self.store.len(CHAT_BY_AGE).map_err(|e| store_error("cannot count the chat index", &e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dispatch_domain::testkit::World;

    use super::*;
    use crate::chat::{Message, SenderRole};
    use crate::command::DispatchRules;
    use crate::history::Leaving;
    use crate::id::MessageId;

    const DAY_S: i64 = 86_400;

    fn message(trip: &Trip, n: u64, at: Timestamp) -> Message {
        Message {
            id: MessageId::from_raw(n).unwrap(),
            trip_id: trip.id,
            from_user_id: Some(trip.rider_id),
            from_role: SenderRole::Rider,
            text: format!("message {n}"),
            at,
        }
    }

    /// Archived trips keep their chat rows until retention: a batch rewrites the row of the
    /// trip whose oldest message expired without it (a recent one kept, indexed again), a
    /// reopen resumes the walk, and a trip whose every message expired leaves the index.
    #[test]
    fn chat_of_archived_trips_is_pruned_message_by_message_and_resumes_after_a_reopen() {
        let mut w = World::new(DispatchRules::default());
        let rider = w.rider();
        let (a, b, quiet) = (w.trip(rider), w.trip(rider), w.trip(rider));
        let t0 = w.now;
        let at = |days: i64| t0.plus_millis(days * DAY_S * 1000);
        let mut with_two = (*w.get(a)).clone();
        with_two.messages = Arc::new(vec![message(&with_two, 1, at(0)), message(&with_two, 2, at(10))]);
        let mut with_one = (*w.get(b)).clone();
        with_one.messages = Arc::new(vec![message(&with_one, 3, at(0).plus_millis(3_600_000))]);
        let without = w.get(quiet);
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path()).unwrap();
        let leaving = Leaving {
            trips: vec![Arc::new(with_two.clone()), Arc::new(with_one.clone()), without],
            ..Leaving::default()
        };
        let empty = crate::checkpoint::Prepared { lsn: 1, blob: Vec::new(), changes: Default::default() };
        history.write(empty, &leaving, t0).unwrap();
        assert_eq!(history.chat_indexed().unwrap(), 2, "only trips with messages are indexed");

        let retention = 30 * 86_400;
        // Nothing is due before the first message's 30 days are up.
        assert_eq!(history.prune_chat(at(29), retention, 10).unwrap(), ChatPruned::default());
        let now = at(31);
        assert_eq!(history.prune_chat(now, retention, 1).unwrap(), ChatPruned { trips: 1, messages: 1 });
        let kept = history.trip(a).unwrap().unwrap();
        assert_eq!(kept.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), vec!["message 2"]);
        let mut expected = with_two.clone();
        expected.messages = Arc::new(vec![message(&with_two, 2, at(10))]);
        assert_eq!(kept, expected, "nothing but the expired message changes (not the revision)");
        drop(history);

        let history = History::open(dir.path()).unwrap();
        assert_eq!(history.prune_chat(now, retention, 10).unwrap(), ChatPruned { trips: 1, messages: 1 });
        assert!(history.trip(b).unwrap().unwrap().messages.is_empty());
        assert_eq!(history.prune_chat(now, retention, 10).unwrap(), ChatPruned::default());
        assert_eq!(history.chat_indexed().unwrap(), 1, "the trip with a recent message, under it");
        assert_eq!(history.retention_pruned().1, 1);
        // Its turn comes 30 days after that message.
        assert_eq!(history.prune_chat(at(41), retention, 10).unwrap(), ChatPruned { trips: 1, messages: 1 });
        assert!(history.trip(a).unwrap().unwrap().messages.is_empty());
        assert_eq!(history.chat_indexed().unwrap(), 0);
        w.finish();
    }
}
