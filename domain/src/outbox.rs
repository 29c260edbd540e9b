//! The notification outbox and users' push devices: what is to be sent, to whom, and
//! what became of it.
//!
//! Owns [`Device`] (a push token a user registered), [`Notification`] (one item of the
//! outbox: a push to one device, an SMS to one phone or an email to one address) with its
//! [`Status`], the worker's report of one try ([`AttemptOutcome`]) and the backoff the
//! worker draws its next try from ([`retry_delay_ms`]).
//!
//! Guarantees: items are made by `apply` itself, as effects of the commands that cause
//! them (`state/notify.rs`), so an item is in the state — and its cause in the log —
//! before anything is sent, and a replay makes it again; an item leaves `pending` once,
//! for `sent` (a `Delivered` report) or `failed` (a permanent answer, an invalid token, or
//! its 24-hour window over), and never changes after that; a report names the attempt it
//! is about, so a duplicate or stale report is refused and changes nothing. Ids are not
//! random (the state draws nothing): [`notification_id`] mixes the state's counter
//! through a bijection, so they are unique and look alike to readers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{DeviceId, NotificationId, TripId, UserId};
use crate::money::Currency;

/// A user keeps at most this many push devices; registering one more drops the oldest.
pub const MAX_DEVICES_PER_USER: usize = 5;
/// Longest push token accepted, bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// A notification not delivered this long after it was made is failed (API.md: 24 h).
pub const GIVE_UP_S: u32 = 24 * 60 * 60;
/// A sent or failed item stays in the hot state (and `GET /v1/admin/notifications`)
/// this long after it finished, then leaves it (pruned on `Tick`): the outbox's bound.
pub const KEPT_S: u32 = 7 * 24 * 60 * 60;
/// The first retry waits this long (API.md: from 1 s)…
pub const FIRST_RETRY_MS: u64 = 1_000;
/// …doubling up to this (API.md: up to 10 min).
pub const MAX_RETRY_MS: u64 = 10 * 60 * 1_000;
/// Longest error text kept on an item, characters.
pub const MAX_ERROR_LEN: usize = 500;
/// Longest chat text carried into a notification, characters.
pub const MAX_PREVIEW_LEN: usize = 140;
/// SOS phones the rules may name.
pub const MAX_SOS_PHONES: usize = 10;

/// Which push service a device's token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Firebase Cloud Messaging (Android, web).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl Platform {
    /// As API.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
        }
    }
}

/// A push token a user registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// Whose.
    pub user_id: UserId,
    /// FCM or APNs.
    pub platform: Platform,
    /// The token (never shown back by the API).
    pub token: String,
    /// When it was registered.
    pub created_at: Timestamp,
}

/// Checks a push token: 1–4096 printable ASCII characters.
pub fn validate_token(token: &str) -> Result<()> {
    if (1..=MAX_TOKEN_LEN).contains(&token.len()) && token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(Error::InvalidParam {
            param: "token",
            message: "must be 1-4096 printable ASCII characters, no spaces".into(),
        })
    }
}

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A push notification to a device.
    Push,
    /// A text message.
    Sms,
    /// An email.
    Email,
}

impl Channel {
    /// As API.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Sms => "sms",
            Channel::Email => "email",
        }
    }

    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Sms, Channel::Email];
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// To a driver without an open socket: a trip is offered.
    TripOffer,
    /// To the rider: a driver took the trip.
    TripAccepted,
    /// To the rider: the driver is at the pickup.
    DriverArrived,
    /// To the rider: the driver or staff cancelled.
    TripCancelled,
    /// To the rider: nobody near the pickup.
    NoDriversNearby,
    /// To the rider: nobody took the trip in time.
    TripExpired,
    /// To the rider: the fare, at completion.
    Receipt,
    /// To a participant without an open socket: a chat message.
    ChatMessage,
    /// To a parcel's recipient, by SMS when the parcel is booked: the delivery code.
    DeliveryCode,
    /// To on-call staff: an SOS.
    Sos,
    /// To a driver: the driving licence expires in 14 days (`text`: the date).
    LicenceExpiring,
}

impl Kind {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TripOffer => "trip_offer",
            Kind::TripAccepted => "trip_accepted",
            Kind::DriverArrived => "driver_arrived",
            Kind::TripCancelled => "trip_cancelled",
            Kind::NoDriversNearby => "no_drivers_nearby",
            Kind::TripExpired => "trip_expired",
            Kind::Receipt => "receipt",
            Kind::ChatMessage => "chat_message",
            Kind::DeliveryCode => "delivery_code",
            Kind::Sos => "sos",
            Kind::LicenceExpiring => "licence_expiring",
        }
    }
}

/// Where an item goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A registered device (its token is read when sending: a device removed since
    /// means the item fails).
    Device(DeviceId),
    /// A phone, E.164.
    Phone(String),
    /// An email address.
    Email(String),
}

/// What a template needs, captured when the item is made (so a later change — a new
/// plate, a rename — does not change what a retry says).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The recipient's language (BCP 47) when the item was made.
    pub language: String,
    /// The trip it is about.
    pub trip_id: Option<TripId>,
    /// The trip's short reference.
    pub reference: Option<String>,
    /// A person's name: the driver (accepted), the sender (chat), who raised an SOS.
    pub name: Option<String>,
    /// The vehicle, as `color make model`.
    pub vehicle: Option<String>,
    /// The plate.
    pub plate: Option<String>,
    /// An amount (the fare in a receipt, a trip offer's price), minor units…
    pub amount_minor: Option<i64>,
    /// …of this currency.
    pub currency: Option<Currency>,
    /// A text: the chat message (cut to [`MAX_PREVIEW_LEN`]), the SOS note, a code.
    pub text: Option<String>,
    /// A distance, metres (a trip offer's distance to the pickup).
    pub distance_m: Option<u32>,
}

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its (next) try.
    Pending,
    /// The provider accepted it.
    Sent,
    /// Given up on: a permanent answer, an invalid token, or 24 h without delivery.
    Failed,
}

impl Status {
    /// As API.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }
}

/// One item of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id: the provider's idempotency key.
    pub id: NotificationId,
    /// The user it is for (none for on-call staff's phones).
    pub user_id: Option<UserId>,
    /// Push, SMS or email.
    pub channel: Channel,
    /// What about.
    pub kind: Kind,
    /// Where to.
    pub target: Target,
    /// The template's inputs.
    pub params: Arc<Params>,
    /// Pending, sent or failed.
    pub status: Status,
    /// Tries reported so far.
    pub attempts: u32,
    /// What the last failed try said.
    pub last_error: Option<String>,
    /// The provider's id of the message, once sent.
    pub provider_id: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it may be tried (again).
    pub next_attempt_at: Timestamp,
    /// Not sent by then: failed.
    pub give_up_at: Timestamp,
    /// When it was sent or failed.
    pub finished_at: Option<Timestamp>,
}

/// What one try of an item gave, as the worker reports it
/// (`Command::NotificationAttempted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    /// The provider accepted it.
    Delivered {
        /// The provider's id for it, if any.
        provider_id: Option<String>,
    },
    /// Not now; try again at `next_attempt_at` (chosen by the worker: backoff with
    /// jitter, or the provider's `Retry-After`), unless that is past the item's window.
    Retry {
        /// What went wrong.
        error: String,
        /// When to try again.
        next_attempt_at: Timestamp,
    },
    /// The push token is dead: the device is removed and the item fails.
    InvalidToken {
        /// The provider's words.
        error: String,
    },
    /// Refused for good: the item fails.
    Rejected {
        /// Why.
        error: String,
    },
}

/// The outbox and the devices, as the state keeps them (`State::outbox`) and the view
/// publishes them ([`Outbox::for_readers`]): persistent maps, so a clone is O(1). Only the
/// devices, the items and the counter are stored; the orders are derived from the items
/// and rebuilt when read back. The items are keyed by the counter they were made with
/// ([`ItemKey`]), so their map is also the creation order readers list from.
///
/// The state's copy keeps the two orders `apply` reads: the windows of the pending items
/// (`Tick`) and the finished order (pruning). The readers' copy keeps the items alone —
/// followed entry by entry ([`Outbox::sync_from`]), not shared, so the state's next write
/// never copies a path the view holds — with the number of pending items and the oldest
/// one's age copied from the state's at each batch; the delivery worker keeps its own
/// order of next tries ([`crate::schedule::Schedule`]). An item made costs the writer
/// three inserts: two into the state's copy, one into the readers' (BENCHMARKS.md "The
/// notification outbox"). Equal when the devices, the items and the counter are (the
/// rest is derived).
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    /// Each user's devices, oldest first (at most [`MAX_DEVICES_PER_USER`]).
    pub(crate) devices: imbl::OrdMap<UserId, Arc<Vec<Device>>>,
    /// Who holds each token (a token is one phone's: one user at most), derived from
    /// `devices` and changed only with them ([`Outbox::set_devices`]): registering finds
    /// a token's previous holder without walking every user's devices.
    pub(crate) holders: imbl::OrdMap<(Platform, String), UserId>,
    /// Every item in the hot state, in the order they were made ([`ItemKey`]).
    pub(crate) items: imbl::OrdMap<ItemKey, Arc<Notification>>,
    /// Items ever made: the next item's id is derived from it.
    pub(crate) seq: u64,
    /// Pending items by the end of their window (the state's copy only).
    pub(crate) give_up: imbl::OrdSet<(Timestamp, NotificationId)>,
    /// Finished items by when they finished (they leave [`KEPT_S`] later; the state's
    /// copy only).
    pub(crate) done: imbl::OrdSet<(Timestamp, NotificationId)>,
    /// Whether this is the readers' copy, which keeps no orders.
    readers: bool,
    /// Pending items, as the state's copy counts them (the readers' copy only: copied at
    /// each [`Outbox::sync_from`]).
    pending_count: usize,
    /// When the oldest pending item was made, as the state's copy says (readers' copy only).
    oldest_pending_at: Option<Timestamp>,
}

impl PartialEq for Outbox {
    fn eq(&self, other: &Self) -> bool {
        self.devices == other.devices && self.items == other.items && self.seq == other.seq
    }
}

impl Serialize for Outbox {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.devices, &self.items, self.seq).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Outbox {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        type Stored = (imbl::OrdMap<UserId, Arc<Vec<Device>>>, imbl::OrdMap<ItemKey, Arc<Notification>>, u64);
        let (devices, items, seq) = Stored::deserialize(d)?;
        let mut outbox = Outbox { seq, ..Outbox::default() };
        outbox.set_rows(items, devices);
        Ok(outbox)
    }
}

impl Outbox {
    /// Adds `item` to the order its status puts it in (not to `items`; the state's copy:
    /// the readers' keeps no orders).
    pub(crate) fn index(&mut self, item: &Notification) {
        debug_assert!(!self.readers, "Outbox::index on a readers' copy, which keeps no orders");
        match (item.status, item.finished_at) {
            (Status::Pending, _) => {
                self.give_up.insert((item.give_up_at, item.id));
            }
            (_, finished) => {
                self.done.insert((finished.unwrap_or(item.created_at), item.id));
            }
        }
    }

    /// The items and devices as a checkpoint keeps them (rows of their own tables).
    #[allow(clippy::type_complexity)]
    pub(crate) fn rows(&self) -> (imbl::OrdMap<ItemKey, Arc<Notification>>, imbl::OrdMap<UserId, Arc<Vec<Device>>>) {
        (self.items.clone(), self.devices.clone())
    }

    /// Puts back the items and devices of a checkpoint's rows (or none: a state taken
    /// apart for its blob), the orders rebuilt from the items: O(n log n), at start only.
    pub(crate) fn set_rows(
        &mut self,
        items: imbl::OrdMap<ItemKey, Arc<Notification>>,
        devices: imbl::OrdMap<UserId, Arc<Vec<Device>>>,
    ) {
        let seq = self.seq;
        *self = Outbox { holders: holders_of(&devices), devices, seq, ..Outbox::default() };
        for item in items.values() {
            self.index(item);
        }
        self.items = items;
    }

    /// A copy for readers (the view): the same items and devices, without the orders, with
    /// the number of pending items and the oldest one's age (O(1): when the view is made;
    /// afterwards it follows the state's entry by entry, [`Outbox::sync_from`]).
    pub fn for_readers(&self) -> Outbox {
        if self.readers {
            return self.clone();
        }
        Outbox {
            devices: self.devices.clone(),
            holders: self.holders.clone(),
            items: self.items.clone(),
            seq: self.seq,
            give_up: imbl::OrdSet::new(),
            done: imbl::OrdSet::new(),
            readers: true,
            pending_count: self.pending(),
            oldest_pending_at: self.oldest_pending(),
        }
    }

    /// Copies from `from` (the state's outbox) the devices of `users` and the changes
    /// `items` (the state's effects, in order: each item as it became, or `None` when it
    /// left), entry by entry: how the readers' copy (the view's) follows the state's without
    /// sharing its trees, so that neither copies a path on the other's account (a tree
    /// shared with the view would be copied, root to leaf, at the state's first write of
    /// every batch).
    pub fn sync_from(
        &mut self,
        from: &Outbox,
        items: &[(NotificationId, Option<Arc<Notification>>)],
        users: &[UserId],
    ) {
        debug_assert!(self.readers && !from.readers, "sync_from copies the state's into the readers'");
        for user in users {
            self.set_devices(*user, from.devices.get(user).cloned());
        }
        for (id, item) in items {
            let key = ItemKey::of(*id);
            match item {
                Some(item) => {
                    self.items.insert(key, Arc::clone(item));
                }
                None => {
                    self.items.remove(&key);
                }
            }
        }
        self.seq = from.seq;
        self.pending_count = from.pending();
        self.oldest_pending_at = from.oldest_pending();
    }

    /// Sets `user`'s devices to `list` (`None` or empty: none), keeping `holders` in step.
    pub(crate) fn set_devices(&mut self, user: UserId, list: Option<Arc<Vec<Device>>>) {
        if let Some(old) = self.devices.get(&user).cloned() {
            for d in old.iter() {
                let key = (d.platform, d.token.clone());
                if self.holders.get(&key) == Some(&user) {
                    self.holders.remove(&key);
                }
            }
        }
        match list.filter(|l| !l.is_empty()) {
            Some(list) => {
                for d in list.iter() {
                    self.holders.insert((d.platform, d.token.clone()), user);
                }
                self.devices.insert(user, list);
            }
            None => {
                self.devices.remove(&user);
            }
        }
    }

    /// The user holding push token `token` of `platform`, if any.
    pub(crate) fn holder(&self, platform: Platform, token: &str) -> Option<UserId> {
        self.holders.get(&(platform, token.to_owned())).copied()
    }

    /// Takes `item` out of the pending order (it is about to change; the state's copy).
    pub(crate) fn unindex_pending(&mut self, item: &Notification) {
        if item.status == Status::Pending {
            self.give_up.remove(&(item.give_up_at, item.id));
        }
    }

    /// The orders agree with the items — in the state's copy each pending item has a
    /// window and each finished one is in `done`, and nothing else is in either; the
    /// readers' copy keeps no orders, and its pending count and oldest item are the
    /// items' — and no user has more than [`MAX_DEVICES_PER_USER`] devices (nor an empty
    /// list).
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let pending = self.items.values().filter(|n| n.status == Status::Pending).count();
        let finished = self.items.len() - pending;
        if self.readers {
            let oldest = self.items.values().filter(|n| n.status == Status::Pending).map(|n| n.give_up_at).min();
            let oldest = oldest.map(|t| t.plus_millis(-i64::from(GIVE_UP_S) * 1_000));
            if (self.pending_count, self.oldest_pending_at) != (pending, oldest)
                || !self.give_up.is_empty()
                || !self.done.is_empty()
            {
                return Err(format!(
                    "the readers' copy counts {} pending, the oldest made at {:?}; the items say {pending}, {oldest:?}",
                    self.pending_count, self.oldest_pending_at
                ));
            }
        } else if self.give_up.len() != pending || self.done.len() != finished {
            return Err(format!(
                "{pending} pending and {finished} finished items; {} windows and {} done",
                self.give_up.len(),
                self.done.len()
            ));
        }
        for n in self.items.values() {
            let indexed = match n.status {
                Status::Pending => {
                    n.finished_at.is_none() && (self.readers || self.give_up.contains(&(n.give_up_at, n.id)))
                }
                _ => n.finished_at.is_some_and(|f| self.readers || self.done.contains(&(f, n.id))),
            };
            if !indexed {
                return Err(format!("notification {} is not indexed as {}", n.id, n.status.as_str()));
            }
        }
        if let Some((key, _)) = self.items.get_max()
            && *key >= ItemKey::from_seq(self.seq)
        {
            return Err(format!("an item's key {key:?} is not below the counter {}", self.seq));
        }
        if let Some((u, list)) = self.devices.iter().find(|(_, l)| l.len() > MAX_DEVICES_PER_USER || l.is_empty()) {
            return Err(format!("user {u} has {} devices", list.len()));
        }
        if self.holders != holders_of(&self.devices) {
            return Err("the token holders do not match the devices (or a token has two holders)".into());
        }
        Ok(())
    }

    /// A user's devices, oldest first.
    pub fn devices_of(&self, user: UserId) -> &[Device] {
        self.devices.get(&user).map(|d| d.as_slice()).unwrap_or(&[])
    }

    /// A user's device.
    pub fn device(&self, user: UserId, id: DeviceId) -> Option<&Device> {
        self.devices_of(user).iter().find(|d| d.id == id)
    }

    /// An item.
    pub fn item(&self, id: NotificationId) -> Option<&Arc<Notification>> {
        self.items.get(&ItemKey::of(id))
    }

    /// Items in the hot state.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Pending items (each has a window).
    pub fn pending(&self) -> usize {
        if self.readers { self.pending_count } else { self.give_up.len() }
    }

    /// When the oldest pending item was made.
    pub fn oldest_pending(&self) -> Option<Timestamp> {
        if self.readers {
            return self.oldest_pending_at;
        }
        // The window is the same length for every item: the first to give up is the oldest.
        self.give_up.get_min().map(|(t, _)| t.plus_millis(-i64::from(GIVE_UP_S) * 1_000))
    }

    /// The pending items: in the state's copy the first to give up first, O(p); in the
    /// readers' (no orders) in the order they were made, found by a walk of every item in
    /// the hot state (for a worker's start, not its passes).
    pub fn pending_items(&self) -> impl Iterator<Item = &Arc<Notification>> + '_ {
        let by_window =
            (!self.readers).then(|| self.give_up.iter().filter_map(|(_, id)| self.items.get(&ItemKey::of(*id))));
        let by_walk = self.readers.then(|| self.items.values().filter(|n| n.status == Status::Pending));
        by_window.into_iter().flatten().chain(by_walk.into_iter().flatten())
    }

    /// The end of the first pending item's window (a deadline of the writer's `Tick`; the
    /// state's copy's).
    pub(crate) fn next_give_up(&self) -> Option<Timestamp> {
        debug_assert!(!self.readers, "Outbox::next_give_up on a readers' copy, which keeps no windows");
        self.give_up.get_min().map(|(t, _)| *t)
    }

    /// Items newest first, made strictly before `before` (a cursor: the last item of the
    /// previous page), that pass `keep`, at most `limit`.
    pub fn newest_first(
        &self,
        before: Option<NotificationId>,
        mut keep: impl FnMut(&Notification) -> bool,
        limit: usize,
    ) -> Vec<Arc<Notification>> {
        let range = match before {
            Some(b) => self.items.range(..ItemKey::of(b)),
            None => self.items.range::<_, ItemKey>(..),
        };
        range.rev().map(|(_, n)| n).filter(|n| keep(n)).take(limit).cloned().collect()
    }
}

/// Who holds each token of `devices`.
fn holders_of(devices: &imbl::OrdMap<UserId, Arc<Vec<Device>>>) -> imbl::OrdMap<(Platform, String), UserId> {
    devices.iter().flat_map(|(u, list)| list.iter().map(move |d| ((d.platform, d.token.clone()), *u))).collect()
}

/// The delay before try `attempt + 1` after `attempt` tries failed (1-based): 1 s
/// doubling, plus up to half again drawn from `jitter` (any `u64`, drawn by the worker
/// and recorded in the report's `next_attempt_at`), never above 10 min — so retries of
/// many items spread out instead of arriving together.
pub fn retry_delay_ms(attempt: u32, jitter: u64) -> u64 {
    let exp = attempt.saturating_sub(1).min(20);
    let base = FIRST_RETRY_MS.saturating_mul(1u64 << exp).min(MAX_RETRY_MS);
    (base + jitter % (base / 2 + 1)).min(MAX_RETRY_MS)
}

/// An item's key in the outbox's map: the counter it was made with, so the map keeps the
/// items in the order they were made and a batch's new items all land on its last leaf
/// (keyed by the mixed id, each insert landed on a random leaf, copied first wherever the
/// last published view still shared it). Stored as the id ([`notification_id`]; `serde`),
/// so checkpoints are the same bytes as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey(u64);

impl ItemKey {
    /// The key of the item `id`.
    pub fn of(id: NotificationId) -> Self {
        ItemKey(crate::id::unmix64(id.raw()))
    }

    /// The key of the `seq`-th item (made with that counter).
    pub(crate) fn from_seq(seq: u64) -> Self {
        ItemKey(seq)
    }
}

impl Serialize for ItemKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        notification_id(self.0).ok_or_else(|| serde::ser::Error::custom("no notification has this key"))?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ItemKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        NotificationId::deserialize(d).map(ItemKey::of)
    }
}

/// The id of the outbox's `seq`-th item: splitmix64's finaliser, a bijection on `u64`, so
/// distinct counters give distinct ids (`None` only for the one counter mapping to 0).
pub fn notification_id(seq: u64) -> Option<NotificationId> {
    NotificationId::from_raw(crate::id::mix64(seq))
}

/// Cuts an error text to [`MAX_ERROR_LEN`] characters, control characters replaced.
pub fn clip_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_LEN).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_ten_minutes_with_jitter_in_the_upper_half() {
        assert_eq!(retry_delay_ms(1, 0), 1_000);
        assert_eq!(retry_delay_ms(1, 500), 1_500);
        assert_eq!(retry_delay_ms(1, 501), 1_000);
        assert!((2_000..=3_000).contains(&retry_delay_ms(2, 12_345)));
        assert_eq!(retry_delay_ms(40, 0), MAX_RETRY_MS);
        assert_eq!(retry_delay_ms(40, u64::MAX), MAX_RETRY_MS);
    }

    #[test]
    fn an_item_key_is_stored_as_the_items_id_and_orders_items_as_they_were_made() {
        for seq in [0u64, 1, 2, 1_000, u64::MAX - 1] {
            let Some(id) = notification_id(seq) else { continue };
            let key = ItemKey::from_seq(seq);
            assert_eq!(ItemKey::of(id), key);
            let bytes = postcard::to_allocvec(&key).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&id).unwrap(), "checkpoints keep the same bytes");
            assert_eq!(postcard::from_bytes::<ItemKey>(&bytes).unwrap(), key);
        }
        assert!(ItemKey::from_seq(7) < ItemKey::from_seq(8), "made later, kept later");
    }

    #[test]
    fn ids_are_distinct_for_distinct_counters() {
        let ids: std::collections::BTreeSet<_> = (0..10_000u64).filter_map(notification_id).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn tokens_are_printable_ascii_within_bounds() {
        assert!(validate_token("abc:DEF_123").is_ok());
        assert!(validate_token("").is_err());
        assert!(validate_token("with space").is_err());
        assert!(validate_token("é").is_err());
        assert!(validate_token(&"a".repeat(MAX_TOKEN_LEN)).is_ok());
        assert!(validate_token(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}
