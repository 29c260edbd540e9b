//! Outbound webhooks: the endpoints integrators register, the events the engine
//! announces to them, and each delivery of an event to an endpoint.
//!
//! Owns [`Endpoint`] (a URL, the event patterns it wants, its signing secret),
//! [`HookEvent`] (what happened, with a snapshot of the object it happened to),
//! [`Delivery`] (one event to one endpoint, with its tries) and [`Hooks`], the state's
//! collection of them with the orders the delivery worker reads.
//!
//! Guarantees:
//! - deliveries are made by `apply` itself from the commands that cause them
//!   (`state/hooks.rs`), so a delivery exists — and its cause is in the log — before
//!   anything is sent, and a replay makes it again with the same event id;
//! - **ordered per subject**: the deliveries of one endpoint about one subject (a trip and
//!   everything about it — its payment, its SOS alerts) form a line; only the oldest
//!   pending delivery of a line is ever due ([`Hooks::is_head`]: a report about another
//!   is refused, and the worker's order takes heads only), so an endpoint hears a trip's
//!   events in the order they happened, and the next is sent only once the one before it
//!   was delivered or given up on;
//! - a delivery leaves `pending` for `delivered` (a 2xx) or `failed` (a refusal, or its
//!   3-day window over) once per series of tries; only an admin's resend starts a new
//!   series; a report names the attempt it is about, so a duplicate or stale report is
//!   refused and changes nothing;
//! - the secret is drawn by the writer (`State::stamp`) and shown once, in the answer to
//!   the endpoint's creation; nothing else renders it;
//! - bounded: finished deliveries leave the hot state [`KEPT_S`] after they finished, and
//!   a pending one lasts at most [`GIVE_UP_S`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{EndpointId, EventId};
use crate::trip::Trip;
use crate::user::User;

/// A delivery not made this long after its event is failed (API.md: 3 days).
pub const GIVE_UP_S: u32 = 3 * 24 * 60 * 60;
/// A finished delivery stays in the hot state (and the delivery log) this long.
pub const KEPT_S: u32 = 7 * 24 * 60 * 60;
/// Endpoints at most: each event is copied to every endpoint that wants it.
pub const MAX_ENDPOINTS: usize = 50;
/// Longest endpoint URL, bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest description, characters.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// Event patterns one endpoint may list.
pub const MAX_PATTERNS: usize = 32;
/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// What happened, as API.md names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// A trip was booked.
    TripCreated,
    /// A driver took it.
    TripAccepted,
    /// The driver is at the pickup.
    TripArrived,
    /// The ride began.
    TripStarted,
    /// The ride ended; the fare is final.
    TripCompleted,
    /// Cancelled, by anyone.
    TripCancelled,
    /// Nobody took it in time.
    TripExpired,
    /// The fare was taken.
    PaymentCaptured,
    /// The gateway declined.
    PaymentFailed,
    /// Part or all of a capture was given back.
    PaymentRefunded,
    /// A driver's payout was paid.
    PayoutPaid,
    /// A driver's payout failed.
    PayoutFailed,
    /// Someone raised an SOS.
    SosRaised,
    /// Staff suspended a driver.
    DriverSuspended,
    /// A driver applicant submitted an application.
    ApplicationSubmitted,
}

impl EventType {
    /// Every type, in API.md's order.
    pub const ALL: [EventType; 15] = [
        EventType::TripCreated,
        EventType::TripAccepted,
        EventType::TripArrived,
        EventType::TripStarted,
        EventType::TripCompleted,
        EventType::TripCancelled,
        EventType::TripExpired,
        EventType::PaymentCaptured,
        EventType::PaymentFailed,
        EventType::PaymentRefunded,
        EventType::PayoutPaid,
        EventType::PayoutFailed,
        EventType::SosRaised,
        EventType::DriverSuspended,
        EventType::ApplicationSubmitted,
    ];

    /// As API.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TripCreated => "trip.created",
            EventType::TripAccepted => "trip.accepted",
            EventType::TripArrived => "trip.arrived",
            EventType::TripStarted => "trip.started",
            EventType::TripCompleted => "trip.completed",
            EventType::TripCancelled => "trip.cancelled",
            EventType::TripExpired => "trip.expired",
            EventType::PaymentCaptured => "payment.captured",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PayoutPaid => "payout.paid",
            EventType::PayoutFailed => "payout.failed",
            EventType::SosRaised => "sos.raised",
            EventType::DriverSuspended => "driver.suspended",
            EventType::ApplicationSubmitted => "application.submitted",
        }
    }

    /// The part before the dot (`trip`, `payment`, …).
    fn group(self) -> &'static str {
        let s = self.as_str();
        s.split_once('.').map_or(s, |(g, _)| g)
    }
}

/// Whether `pattern` (a type, `group.*`, or `*`) names `t`.
pub fn pattern_matches(pattern: &str, t: EventType) -> bool {
    pattern == "*" || pattern == t.as_str() || pattern.strip_suffix(".*").is_some_and(|group| group == t.group())
}

/// Checks an endpoint's event patterns: 1 to [`MAX_PATTERNS`], each `*`, a type of
/// [`EventType::ALL`] or `group.*` for a group of them, none twice.
pub fn validate_patterns(patterns: &[String]) -> Result<()> {
    let bad = |message: String| Error::InvalidParam { param: "events", message };
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return Err(bad(format!("list 1 to {MAX_PATTERNS} event types")));
    }
    for (i, p) in patterns.iter().enumerate() {
        if !EventType::ALL.iter().any(|t| pattern_matches(p, *t)) || (p != "*" && p.contains('*') && !p.ends_with(".*"))
        {
            return Err(bad(format!(
                "`{}` is not an event type, `group.*` or `*`",
                p.chars().take(60).collect::<String>()
            )));
        }
        if patterns[..i].contains(p) {
            return Err(bad(format!("`{p}` is listed twice")));
        }
    }
    Ok(())
}

/// Checks a description: at most [`MAX_DESCRIPTION_LEN`] characters, no control
/// characters.
pub fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION_LEN || description.chars().any(char::is_control) {
        return Err(Error::InvalidParam {
            param: "description",
            message: format!("at most {MAX_DESCRIPTION_LEN} characters, without control characters"),
        });
    }
    Ok(())
}

/// Checks the shape of an endpoint URL: `https://` or `http://`, at most
/// [`MAX_URL_LEN`] bytes, printable ASCII. Which schemes and hosts a server accepts
/// (`http://` only to loopback, in development) is the server's rule: it checks the URL
/// before it submits the command.
pub fn validate_url(url: &str) -> Result<()> {
    let ok = url.len() <= MAX_URL_LEN
        && url.bytes().all(|b| (0x21..0x7f).contains(&b))
        && (url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))).is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParam { param: "url", message: format!("an https:// URL of at most {MAX_URL_LEN} bytes") })
    }
}

/// Checks a signing secret: [`SECRET_PREFIX`] and 64 lowercase hex digits.
pub fn validate_secret(secret: &str) -> Result<()> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => Ok(()),
        _ => Err(Error::Invalid("a webhook secret is `whsec_` and 64 hex digits".into())),
    }
}

/// A secret from 256 random bits.
pub fn secret_from(words: [u64; 4]) -> String {
    let mut s = String::with_capacity(SECRET_PREFIX.len() + 64);
    s.push_str(SECRET_PREFIX);
    for w in words {
        s.push_str(&format!("{w:016x}"));
    }
    s
}

/// An integrator's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The patterns of the event types it wants.
    pub events: Vec<String>,
    /// What the admin wrote about it.
    pub description: Option<String>,
    /// The HMAC-SHA256 key of its signatures (`whsec_…`): shown once, at creation.
    pub secret: String,
    /// When it was made.
    pub created_at: Timestamp,
}

impl Endpoint {
    /// Whether it wants events of type `t`.
    pub fn wants(&self, t: EventType) -> bool {
        self.events.iter().any(|p| pattern_matches(p, t))
    }
}

/// The object an event is about, as it was when the event happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventData {
    /// A trip (the `trip.*` and `payment.*` events).
    Trip(Arc<Trip>),
    /// An SOS alert.
    Alert(Arc<Alert>),
    /// A user (a suspended driver).
    User(Arc<User>),
    /// A driver's application (submitted).
    Application(Arc<crate::application::Application>),
    /// A driver's payout (paid or failed).
    Payout(Arc<crate::payout::Payout>),
}

/// Something that happened, to be announced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookEvent {
    /// Its id, the same at every endpoint (receivers deduplicate by it).
    pub id: EventId,
    /// Its type.
    pub kind: EventType,
    /// When it happened.
    pub created_at: Timestamp,
    /// The object, as it was then.
    pub data: EventData,
    /// What its line is about (the raw id of the trip, or of the user): deliveries of
    /// one subject to one endpoint go in order.
    pub subject: u64,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Waiting for its (next) try, or for the one before it in its line.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up on: a refusal, or 3 days without delivery.
    Failed,
}

impl DeliveryStatus {
    /// As API.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One event to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// To which endpoint.
    pub endpoint_id: EndpointId,
    /// The event (shared by the deliveries of every endpoint that wants it).
    pub event: Arc<HookEvent>,
    /// Pending, delivered or failed.
    pub status: DeliveryStatus,
    /// Tries reported so far (over every series: a resend adds to them).
    pub attempts: u32,
    /// The HTTP status of the last try that got an answer.
    pub last_status_code: Option<u16>,
    /// What the last failed try said.
    pub last_error: Option<String>,
    /// When it may be tried (again).
    pub next_attempt_at: Timestamp,
    /// Not delivered by then: failed.
    pub give_up_at: Timestamp,
    /// When it was delivered or failed.
    pub finished_at: Option<Timestamp>,
}

impl Delivery {
    /// Its key in [`Hooks`]: the endpoint, then the event's number (the order of events).
    pub fn key(&self) -> (EndpointId, u64) {
        (self.endpoint_id, event_seq(self.event.id))
    }

    /// Its line: the endpoint and the subject.
    fn line(&self) -> (EndpointId, u64, u64) {
        (self.endpoint_id, self.event.subject, event_seq(self.event.id))
    }
}

/// What one try of a delivery gave, as the worker reports it (`Command::WebhookAttempted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookOutcome {
    /// A 2xx answer.
    Delivered {
        /// Its status.
        status_code: u16,
    },
    /// Not now (a timeout, no connection, 429, 5xx): try again at `next_attempt_at`
    /// (backoff with jitter, or the endpoint's `Retry-After`), unless the window is over.
    Retry {
        /// The status, if an answer came.
        status_code: Option<u16>,
        /// What went wrong.
        error: String,
        /// When to try again.
        next_attempt_at: Timestamp,
    },
    /// Refused for good (another 4xx, a redirect): the delivery fails.
    Rejected {
        /// The status.
        status_code: Option<u16>,
        /// Why.
        error: String,
    },
}

type Key = (EndpointId, u64);

/// The endpoints and the deliveries, as the state keeps them (`State::hooks`) and as the
/// view publishes them ([`Hooks::for_readers`]). Only the endpoints, the deliveries and
/// the counter are stored; the orders are derived from the deliveries and rebuilt when
/// read back. The state's copy keeps the orders `apply` reads: the lines (which delivery
/// heads its line, for reports), the windows (`Tick`) and the finished order (pruning).
/// The readers' copy — followed entry by entry ([`Hooks::sync_from`]), not shared, so the
/// state's next write never copies a path the view holds — keeps the lines (the webhook
/// worker's order of the heads by next try, [`crate::schedule::HookSchedule`], reads
/// them), with the number of pending deliveries and the oldest one's time copied from the
/// state's at each batch. Equal when the endpoints, the deliveries and the counter are
/// (the rest is derived).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The endpoints (a few: in the state blob).
    pub(crate) endpoints: BTreeMap<EndpointId, Arc<Endpoint>>,
    /// Every delivery in the hot state (rows of their own checkpoint table).
    pub(crate) deliveries: imbl::OrdMap<Key, Arc<Delivery>>,
    /// Events ever made: the next event's number.
    pub(crate) seq: u64,
    /// Pending deliveries by line: (endpoint, subject, event number).
    pub(crate) lines: imbl::OrdSet<(EndpointId, u64, u64)>,
    /// Finished deliveries by when they finished (the state's copy only).
    done: imbl::OrdSet<(Timestamp, Key)>,
    /// Pending deliveries by the end of their window (the state's copy only).
    give_up: imbl::OrdSet<(Timestamp, Key)>,
    /// Whether this is the readers' copy (lines, no windows, no finished order).
    readers: bool,
    /// Pending deliveries, as the state's copy counts them (the readers' copy only:
    /// copied at each [`Hooks::sync_from`]).
    pending_count: usize,
    /// When the oldest pending delivery's event happened, as the state's copy says
    /// (readers' copy only).
    oldest_pending_at: Option<Timestamp>,
    /// Changes to which deliveries head their lines that the worker did not make itself
    /// (a resend, a window's end): counted, not stored, so its order knows to rebuild.
    pub(crate) wakes: u64,
}

impl PartialEq for Hooks {
    fn eq(&self, other: &Self) -> bool {
        self.endpoints == other.endpoints && self.deliveries == other.deliveries && self.seq == other.seq
    }
}

impl Serialize for Hooks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.endpoints, &self.deliveries, self.seq).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hooks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        type Stored = (BTreeMap<EndpointId, Arc<Endpoint>>, imbl::OrdMap<Key, Arc<Delivery>>, u64);
        let (endpoints, deliveries, seq) = Stored::deserialize(d)?;
        let mut hooks = Hooks { endpoints, seq, ..Hooks::default() };
        hooks.set_rows(deliveries);
        Ok(hooks)
    }
}

impl Hooks {
    /// An endpoint.
    pub fn endpoint(&self, id: EndpointId) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(&id)
    }

    /// Every endpoint, by id.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.endpoints.values()
    }

    /// A delivery.
    pub fn delivery(&self, endpoint: EndpointId, event: EventId) -> Option<&Arc<Delivery>> {
        self.deliveries.get(&(endpoint, event_seq(event)))
    }

    /// An endpoint's deliveries, newest event first, strictly older than `before` (a
    /// cursor: the last event of the previous page), at most `limit`.
    pub fn deliveries_of(&self, endpoint: EndpointId, before: Option<EventId>, limit: usize) -> Vec<Arc<Delivery>> {
        let end = before.map_or(u64::MAX, event_seq);
        let range = match before {
            Some(_) => self.deliveries.range((endpoint, 0)..(endpoint, end)),
            None => self.deliveries.range((endpoint, 0)..=(endpoint, end)),
        };
        range.rev().take(limit).map(|(_, d)| Arc::clone(d)).collect()
    }

    /// Pending deliveries (waiting for a try or for their line).
    pub fn pending(&self) -> usize {
        if self.readers { self.pending_count } else { self.give_up.len() }
    }

    /// When the oldest pending delivery's event happened.
    pub fn oldest_pending(&self) -> Option<Timestamp> {
        if self.readers {
            return self.oldest_pending_at;
        }
        self.give_up.get_min().and_then(|(_, k)| self.deliveries.get(k)).map(|d| d.event.created_at)
    }

    /// A copy for readers (the view): the same endpoints, deliveries and lines, without
    /// the windows and the finished order, with the number of pending deliveries and the
    /// oldest one's time (O(1): when the view is made; afterwards it follows the state's
    /// entry by entry, [`Hooks::sync_from`]).
    pub fn for_readers(&self) -> Hooks {
        if self.readers {
            return self.clone();
        }
        Hooks {
            endpoints: self.endpoints.clone(),
            deliveries: self.deliveries.clone(),
            seq: self.seq,
            lines: self.lines.clone(),
            done: imbl::OrdSet::new(),
            give_up: imbl::OrdSet::new(),
            wakes: self.wakes,
            readers: true,
            pending_count: self.pending(),
            oldest_pending_at: self.oldest_pending(),
        }
    }

    /// Copies from `from` (the state's) the deliveries `keys` changed, entry by entry, and
    /// the endpoints when `endpoints` changed: how the readers' copy (the view's) follows
    /// the state's without sharing its trees, so that neither copies a path on the other's
    /// account (a tree shared with the view would be copied, root to leaf, at the state's
    /// first write of every batch).
    pub fn sync_from(&mut self, from: &Hooks, keys: &[Key], endpoints: bool) {
        debug_assert!(self.readers && !from.readers, "sync_from copies the state's into the readers'");
        if endpoints {
            self.endpoints = from.endpoints.clone();
        }
        for key in keys {
            let old = self.deliveries.get(key).cloned();
            if let Some(old) = &old
                && old.finished_at.is_none()
            {
                self.lines.remove(&old.line());
            }
            match from.deliveries.get(key) {
                Some(d) => {
                    if d.finished_at.is_none() {
                        self.lines.insert(d.line());
                    }
                    if !old.as_ref().is_some_and(|o| Arc::ptr_eq(o, d)) {
                        self.deliveries.insert(*key, Arc::clone(d));
                    }
                }
                None => {
                    self.deliveries.remove(key);
                }
            }
        }
        self.seq = from.seq;
        self.wakes = from.wakes;
        self.pending_count = from.pending();
        self.oldest_pending_at = from.oldest_pending();
    }

    /// The oldest pending delivery of the line of `endpoint` and `subject`, if any.
    pub fn head_of(&self, endpoint: EndpointId, subject: u64) -> Option<&Arc<Delivery>> {
        let &(e, _, n) = self.lines.range((endpoint, subject, 0)..=(endpoint, subject, u64::MAX)).next()?;
        self.deliveries.get(&(e, n))
    }

    /// The head of every line (its oldest pending delivery), line by line.
    pub fn heads(&self) -> impl Iterator<Item = &Arc<Delivery>> + '_ {
        let mut last = None;
        self.lines.iter().filter_map(move |&(e, s, n)| {
            if last == Some((e, s)) {
                return None;
            }
            last = Some((e, s));
            self.deliveries.get(&(e, n))
        })
    }

    /// The end of the first pending delivery's window (a deadline of the writer's `Tick`).
    pub(crate) fn next_give_up(&self) -> Option<Timestamp> {
        self.give_up.get_min().map(|(t, _)| *t)
    }

    /// The first finished delivery to leave, when it leaves.
    pub(crate) fn next_prune(&self) -> Option<Timestamp> {
        self.done.get_min().map(|(t, _)| t.plus_secs(KEPT_S))
    }

    /// The pending delivery whose window ends first, and when.
    pub(crate) fn first_give_up(&self) -> Option<(Timestamp, Key)> {
        self.give_up.get_min().copied()
    }

    /// The delivery that finished first.
    pub(crate) fn first_done(&self) -> Option<Key> {
        self.done.get_min().map(|(_, k)| *k)
    }

    /// The deliveries as a checkpoint keeps them (rows of their own table).
    pub(crate) fn rows(&self) -> imbl::OrdMap<Key, Arc<Delivery>> {
        self.deliveries.clone()
    }

    /// Puts back the deliveries of a checkpoint's rows (or none: a state taken apart for
    /// its blob) into the state's copy, its orders rebuilt from them: O(n log n), at start
    /// only.
    pub(crate) fn set_rows(&mut self, deliveries: imbl::OrdMap<Key, Arc<Delivery>>) {
        debug_assert!(!self.readers, "Hooks::set_rows on a readers' copy: for_readers makes those");
        self.lines = imbl::OrdSet::new();
        self.give_up = imbl::OrdSet::new();
        self.done = imbl::OrdSet::new();
        for d in deliveries.values() {
            match d.finished_at {
                None => {
                    self.give_up.insert((d.give_up_at, d.key()));
                    self.lines.insert(d.line());
                }
                Some(f) => {
                    self.done.insert((f, d.key()));
                }
            }
        }
        self.deliveries = deliveries;
    }

    /// Whether `d` (pending) is the oldest pending delivery of its line.
    pub fn is_head(&self, d: &Delivery) -> bool {
        let (e, s, n) = d.line();
        self.lines.range((e, s, 0)..(e, s, n)).next().is_none()
    }

    /// Adds a new pending delivery to the state's copy.
    pub(crate) fn insert_pending(&mut self, d: Delivery) {
        self.lines.insert(d.line());
        self.give_up.insert((d.give_up_at, d.key()));
        self.deliveries.insert(d.key(), Arc::new(d));
    }

    /// Replaces `old` by `new` (same key): a retry moves its window, a finish leaves the
    /// line (the next of the line becomes its head), a resend comes back into its line
    /// (before any later delivery of it).
    pub(crate) fn replace(&mut self, old: &Delivery, new: Delivery) {
        let key = new.key();
        match (old.finished_at, new.finished_at) {
            (None, None) => {
                self.give_up.remove(&(old.give_up_at, key));
                self.give_up.insert((new.give_up_at, key));
            }
            (None, Some(f)) => {
                self.give_up.remove(&(old.give_up_at, key));
                self.lines.remove(&old.line());
                self.done.insert((f, key));
            }
            (Some(f), None) => {
                self.done.remove(&(f, key));
                self.lines.insert(new.line());
                self.give_up.insert((new.give_up_at, key));
            }
            (Some(f), Some(g)) => {
                self.done.remove(&(f, key));
                self.done.insert((g, key));
            }
        }
        self.deliveries.insert(key, Arc::new(new));
    }

    /// Removes a finished delivery (pruned) from the state's copy.
    pub(crate) fn remove_finished(&mut self, key: Key) {
        if let Some(d) = self.deliveries.remove(&key)
            && let Some(f) = d.finished_at
        {
            self.done.remove(&(f, key));
        }
    }

    /// Removes an endpoint and every delivery of it from the state's copy. Returns the
    /// keys removed.
    pub(crate) fn remove_endpoint(&mut self, id: EndpointId) -> Vec<Key> {
        self.endpoints.remove(&id);
        let keys: Vec<Key> = self.deliveries.range((id, 0)..=(id, u64::MAX)).map(|(k, _)| *k).collect();
        for k in &keys {
            if let Some(d) = self.deliveries.remove(k) {
                match d.finished_at {
                    None => {
                        self.give_up.remove(&(d.give_up_at, *k));
                        self.lines.remove(&d.line());
                    }
                    Some(f) => {
                        self.done.remove(&(f, *k));
                    }
                }
            }
        }
        keys
    }

    /// The orders agree with the deliveries; every delivery's endpoint exists; no more
    /// than [`MAX_ENDPOINTS`] endpoints.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(format!("{} webhook endpoints", self.endpoints.len()));
        }
        let pending = self.deliveries.values().filter(|d| d.status == DeliveryStatus::Pending).count();
        let (windows, done) = if self.readers { (0, 0) } else { (pending, self.deliveries.len() - pending) };
        if self.give_up.len() != windows {
            return Err(format!("{pending} pending deliveries, {} windows", self.give_up.len()));
        }
        if self.readers {
            let oldest = self
                .deliveries
                .values()
                .filter(|d| d.status == DeliveryStatus::Pending)
                .min_by_key(|d| (d.give_up_at, d.key()))
                .map(|d| d.event.created_at);
            if (self.pending_count, self.oldest_pending_at) != (pending, oldest) {
                return Err(format!(
                    "the readers' copy counts {} pending, the oldest at {:?}; the deliveries say {pending}, {oldest:?}",
                    self.pending_count, self.oldest_pending_at
                ));
            }
        }
        if self.lines.len() != pending || self.done.len() != done {
            return Err(format!("{} in lines, {} finished in done", self.lines.len(), self.done.len()));
        }
        let mut heads = std::collections::HashSet::new();
        for d in self.deliveries.values() {
            if !self.endpoints.contains_key(&d.endpoint_id) {
                return Err(format!("delivery of {} to unknown endpoint {}", d.event.id, d.endpoint_id));
            }
            let ok = match d.status {
                DeliveryStatus::Pending => {
                    let head = heads.insert((d.endpoint_id, d.event.subject));
                    d.finished_at.is_none()
                        && (self.readers || self.give_up.contains(&(d.give_up_at, d.key())))
                        && self.lines.contains(&d.line())
                        && self.is_head(d) == head
                }
                _ => d.finished_at.is_some_and(|f| self.readers || self.done.contains(&(f, d.key()))),
            };
            if !ok {
                return Err(format!(
                    "delivery of {} to {} is not indexed as {}",
                    d.event.id,
                    d.endpoint_id,
                    d.status.as_str()
                ));
            }
        }
        Ok(())
    }
}

/// The id of the `seq`-th event: splitmix64's finaliser, a bijection on `u64` (so ids
/// are distinct and look alike to readers); `None` only for the counter that maps to 0.
pub fn event_id(seq: u64) -> Option<EventId> {
    EventId::from_raw(crate::id::mix64(seq))
}

/// The counter an event id was made from: [`event_id`] undone.
pub fn event_seq(id: EventId) -> u64 {
    crate::id::unmix64(id.raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_undo_to_their_counter() {
        for seq in (0..5_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 63, 0x1234_5678_9abc_def0]) {
            if let Some(id) = event_id(seq) {
                assert_eq!(event_seq(id), seq, "seq {seq}");
            }
        }
    }

    #[test]
    fn patterns_name_types_groups_or_everything() {
        assert!(pattern_matches("*", EventType::PayoutPaid));
        assert!(pattern_matches("trip.completed", EventType::TripCompleted));
        assert!(!pattern_matches("trip.completed", EventType::TripCreated));
        assert!(pattern_matches("payment.*", EventType::PaymentRefunded));
        assert!(!pattern_matches("payment.*", EventType::PayoutPaid));
        assert!(!pattern_matches("pay*", EventType::PaymentRefunded));
        let ok = |v: &[&str]| validate_patterns(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["trip.completed", "payment.*"]).is_ok());
        assert!(ok(&["*"]).is_ok());
        assert!(ok(&[]).is_err());
        assert!(ok(&["trip.nope"]).is_err());
        assert!(ok(&["nope.*"]).is_err());
        assert!(ok(&["trip*"]).is_err());
        assert!(ok(&["trip.*", "trip.*"]).is_err());
    }

    #[test]
    fn urls_and_secrets_have_their_shapes() {
        assert!(validate_url("https://hooks.example.com/dispatch").is_ok());
        assert!(validate_url("http://127.0.0.1:9000/x").is_ok());
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("https://").is_err());
        assert!(validate_url("https://a b").is_err());
        assert!(validate_url(&format!("https://{}", "a".repeat(MAX_URL_LEN))).is_err());
        let s = secret_from([1, 2, 3, u64::MAX]);
        assert!(validate_secret(&s).is_ok());
        assert_eq!(s.len(), SECRET_PREFIX.len() + 64);
        assert!(validate_secret("whsec_00").is_err());
    }
}
