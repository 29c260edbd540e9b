//! The delivery workers' orders of next tries: which pending notification ([`Schedule`])
//! or webhook delivery ([`HookSchedule`]: only the head of each line) to try next, and
//! when.
//!
//! The writer keeps no such order. It would cost two more inserts for every item made and
//! two more at every try, on the thread every command waits for, and for readers only.
//! Each worker keeps its own beside the published state (the view shares the state's
//! maps), and follows it three ways:
//! - what was made since it last looked: items and events are keyed by counters, so the
//!   new ones are a range at the end of a map, found without a walk;
//! - what it did itself: an item it takes leaves the order and is put back after its try,
//!   at the retry's time (a webhook delivery's line is looked at again: its next delivery
//!   may head it now);
//! - what others did to which delivery heads its line (a resend, a window's end) is
//!   counted by the state (`Hooks::wakes`), and the order is rebuilt when it moves.
//!
//! Guarantee (each type's `check`, property-tested with the state in `state/tests`): every
//! pending item the worker has not taken has an entry no later than its next try (a
//! webhook line may instead be marked for a look) — none waits past its time and none is
//! lost. An entry is checked against the state when it comes due, so a stale one (the item
//! finished, or its next try moved later) costs one look and is dropped or moved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::hooks::{Delivery, DeliveryStatus, Hooks};
use crate::id::{EndpointId, EventId, NotificationId};
use crate::outbox::{ItemKey, Notification, Outbox, Status};

/// Entries by time, at most one per key: the part both orders share.
#[derive(Debug, Clone)]
struct Order<K> {
    /// The entries, soonest first…
    due: BTreeSet<(Timestamp, K)>,
    /// …and each key's.
    at: BTreeMap<K, Timestamp>,
}

impl<K> Default for Order<K> {
    fn default() -> Self {
        Order { due: BTreeSet::new(), at: BTreeMap::new() }
    }
}

impl<K: Ord + Copy + std::fmt::Debug> Order<K> {
    /// Puts `key` at `at`, replacing its entry if it has one.
    fn put(&mut self, key: K, at: Timestamp) {
        if let Some(old) = self.at.insert(key, at) {
            self.due.remove(&(old, key));
        }
        self.due.insert((at, key));
    }

    /// Takes out the entries due at `now`, soonest first, until `limit` of them are taken:
    /// `look` says of each whether its item is taken, due later (moved to that time) or
    /// gone from the order.
    fn take_due<T>(&mut self, now: Timestamp, limit: usize, mut look: impl FnMut(K) -> Look<T>) -> Vec<T> {
        let mut taken = Vec::new();
        let mut later = Vec::new();
        while taken.len() < limit {
            let Some(&(at, key)) = self.due.first() else { break };
            if at > now {
                break;
            }
            self.due.pop_first();
            self.at.remove(&key);
            match look(key) {
                Look::Take(item) => taken.push(item),
                Look::Later(at) => later.push((key, at)),
                Look::Drop => {}
            }
        }
        for (key, at) in later {
            self.put(key, at);
        }
        taken
    }

    /// The entry of `key`.
    fn get(&self, key: &K) -> Option<Timestamp> {
        self.at.get(key).copied()
    }

    /// The two halves agree.
    fn check(&self) -> Result<(), String> {
        if self.due.len() != self.at.len() || self.due.iter().any(|(t, k)| self.at.get(k) != Some(t)) {
            return Err(format!("{} entries by time, {} by key", self.due.len(), self.at.len()));
        }
        Ok(())
    }
}

/// What an entry come due finds of its item.
enum Look<T> {
    /// Due: taken out for a try.
    Take(T),
    /// Pending, due later than the entry said: the entry moves there.
    Later(Timestamp),
    /// Finished, gone, or not the one to try: the entry goes.
    Drop,
}

/// Checks one pending item's entry: `at` no later than its next try `next`.
fn entry_ok(what: impl std::fmt::Display, at: Option<Timestamp>, next: Timestamp) -> Result<(), String> {
    match at {
        Some(at) if at <= next => Ok(()),
        Some(at) => Err(format!("{what} is due at {next:?} and scheduled at {at:?}")),
        None => Err(format!("pending {what} has no entry")),
    }
}

/// The notification worker's order of the pending items by their next try (see the
/// module).
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Items made with a counter below this were looked at.
    next: u64,
    order: Order<ItemKey>,
}

impl Schedule {
    /// The order of every pending item of `outbox`: O(p log p), when a worker starts (or
    /// starts leading again).
    pub fn of(outbox: &Outbox) -> Schedule {
        let mut schedule = Schedule { next: outbox.seq, ..Schedule::default() };
        for n in outbox.pending_items() {
            schedule.order.put(ItemKey::of(n.id), n.next_attempt_at);
        }
        schedule
    }

    /// Takes in the items `outbox` made since the last look (a newer copy of the same
    /// outbox; an older one — a state read back from further behind — is taken whole).
    pub fn follow(&mut self, outbox: &Outbox) {
        if outbox.seq < self.next {
            *self = Schedule::of(outbox);
            return;
        }
        for (key, n) in outbox.items.range(ItemKey::from_seq(self.next)..) {
            if n.status == Status::Pending {
                self.order.put(*key, n.next_attempt_at);
            }
        }
        self.next = outbox.seq;
    }

    /// Puts item `id` in the order at `at` (replacing its entry, if it has one): after
    /// a try, at the retry's time.
    pub fn put(&mut self, id: NotificationId, at: Timestamp) {
        self.order.put(ItemKey::of(id), at);
    }

    /// Takes out up to `limit` pending items of `outbox` due at `now`, soonest first; the
    /// worker puts each back after its try. Entries of finished items are dropped on the
    /// way, and those of items whose next try moved later are moved to it.
    pub fn take_due(&mut self, outbox: &Outbox, now: Timestamp, limit: usize) -> Vec<Arc<Notification>> {
        self.order.take_due(now, limit, |key| match outbox.items.get(&key) {
            Some(n) if n.status == Status::Pending && n.next_attempt_at <= now => Look::Take(Arc::clone(n)),
            Some(n) if n.status == Status::Pending => Look::Later(n.next_attempt_at),
            _ => Look::Drop,
        })
    }

    /// The guarantee, against `outbox` (as new as the last [`Schedule::follow`]), for items
    /// not `taken`: each pending one has an entry no later than its next try.
    pub fn check(&self, outbox: &Outbox, taken: impl Fn(NotificationId) -> bool) -> Result<(), String> {
        self.order.check()?;
        for n in outbox.pending_items().filter(|n| !taken(n.id)) {
            entry_ok(n.id, self.order.get(&ItemKey::of(n.id)), n.next_attempt_at)?;
        }
        Ok(())
    }
}

/// A webhook delivery's key: its endpoint and its event's counter.
type HookKey = (EndpointId, u64);

/// The webhook worker's order of the heads of the lines (each endpoint's oldest pending
/// delivery of a subject: the only one that may be tried) by their next try (see the
/// module).
#[derive(Debug, Clone, Default)]
pub struct HookSchedule {
    /// Events made with a counter below this were looked at.
    next: u64,
    /// `Hooks::wakes` when this order was built.
    wakes: u64,
    order: Order<HookKey>,
    /// Lines whose head is to be looked up at the next [`HookSchedule::follow`]: a try
    /// of their head ended, or an entry of theirs found its delivery finished.
    lines: BTreeSet<(EndpointId, u64)>,
}

impl HookSchedule {
    /// The order of every line's head in `hooks`: O(p log p), when a worker starts (or
    /// starts leading again), and when another hand changed which delivery heads a line.
    pub fn of(hooks: &Hooks) -> HookSchedule {
        let mut schedule = HookSchedule { next: hooks.seq, wakes: hooks.wakes, ..HookSchedule::default() };
        for d in hooks.heads() {
            schedule.order.put(d.key(), d.next_attempt_at);
        }
        schedule
    }

    /// Takes in what changed in `hooks` since the last look: the deliveries of the events
    /// made since (those heading their lines), the heads of the lines marked, or — when
    /// another hand changed which delivery heads a line, or `hooks` is older — everything.
    pub fn follow(&mut self, hooks: &Hooks) {
        if hooks.seq < self.next || hooks.wakes != self.wakes {
            *self = HookSchedule::of(hooks);
            return;
        }
        for (endpoint, subject) in std::mem::take(&mut self.lines) {
            if let Some(d) = hooks.head_of(endpoint, subject) {
                self.order.put(d.key(), d.next_attempt_at);
            }
        }
        for endpoint in hooks.endpoints().map(|e| e.id) {
            for (key, d) in hooks.deliveries.range((endpoint, self.next)..=(endpoint, u64::MAX)) {
                if d.status == DeliveryStatus::Pending && hooks.is_head(d) {
                    self.order.put(*key, d.next_attempt_at);
                }
            }
        }
        self.next = hooks.seq;
    }

    /// After a try of `d`: its line is looked at again at the next
    /// [`HookSchedule::follow`] (`d` itself, if still pending, at its next try; else the
    /// next of its line).
    pub fn tried(&mut self, d: &Delivery) {
        self.lines.insert((d.endpoint_id, d.event.subject));
    }

    /// Puts the delivery of `event` to `endpoint` in the order at `at` (replacing its
    /// entry, if it has one).
    pub fn put(&mut self, endpoint: EndpointId, event: EventId, at: Timestamp) {
        self.order.put((endpoint, crate::hooks::event_seq(event)), at);
    }

    /// Takes out up to `limit` heads of lines due at `now`, soonest first. Entries of
    /// finished deliveries mark their line for a look; those of deliveries no longer
    /// heading their line (a resend went ahead) are dropped, as the head has its own; those
    /// whose next try moved later are moved to it.
    pub fn take_due(&mut self, hooks: &Hooks, now: Timestamp, limit: usize) -> Vec<Arc<Delivery>> {
        let lines = &mut self.lines;
        self.order.take_due(now, limit, |key| match hooks.deliveries.get(&key) {
            None => Look::Drop,
            Some(d) if d.status != DeliveryStatus::Pending => {
                lines.insert((d.endpoint_id, d.event.subject));
                Look::Drop
            }
            // Behind its line's head, which has its own entry.
            Some(d) if !hooks.is_head(d) => Look::Drop,
            Some(d) if d.next_attempt_at > now => Look::Later(d.next_attempt_at),
            Some(d) => Look::Take(Arc::clone(d)),
        })
    }

    /// The guarantee, against `hooks` (as new as the last [`HookSchedule::follow`] and
    /// with the same wakes), for deliveries not `taken`: each line's head has an entry no
    /// later than its next try, or its line is marked for a look.
    pub fn check(&self, hooks: &Hooks, taken: impl Fn(&Delivery) -> bool) -> Result<(), String> {
        self.order.check()?;
        if hooks.wakes != self.wakes {
            return Err("the order is older than the last wake: follow first".into());
        }
        for d in hooks.heads().filter(|d| !taken(d)) {
            if self.lines.contains(&(d.endpoint_id, d.event.subject)) {
                continue;
            }
            entry_ok(
                format_args!("the delivery of {} to {}", d.event.id, d.endpoint_id),
                self.order.get(&d.key()),
                d.next_attempt_at,
            )?;
        }
        Ok(())
    }
}
