//! One socket's outbox: the bounded queue of frames waiting to be written to it.
//!
//! Guarantees: an outbox holds at most [`OUTBOX_CAP`] frames; location frames of the same
//! trip coalesce (the newest wins) and are the first dropped when it is full; a frame
//! that must arrive (a trip event, a reply) is never dropped: when it cannot fit, the
//! outbox is marked overflowed and its writer closes the socket (the client then
//! resynchronises over HTTP). Pushing never waits on the socket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use dispatch_core::TripId;
use parking_lot::Mutex;
use tokio::sync::Notify;
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;

/// Most frames waiting in one socket's outbox.
pub const OUTBOX_CAP: usize = 256;

/// A frame waiting in an outbox. Its text is shared, not copied: one event rendered once
/// goes to every socket that should hear it (a trip's change to a thousand staff sockets,
/// an ops snapshot to every operator watching the same box) as a reference each.
pub(crate) enum OutFrame {
    /// A frame that must arrive (trip events, replies).
    Event(Utf8Bytes),
    /// A driver position for a trip: may coalesce or be dropped.
    Location(TripId, Utf8Bytes),
}

/// One socket's bounded queue of frames to write.
pub struct Outbox {
    queue: Mutex<VecDeque<OutFrame>>,
    /// Woken on every push (and on an overflow): the writer waits on it.
    pub(crate) notify: Notify,
    /// Set when a frame that must arrive did not fit: the writer closes the socket.
    pub(crate) overflowed: AtomicBool,
}

impl Outbox {
    /// An empty outbox.
    pub(crate) fn new() -> Self {
        Outbox { queue: Mutex::new(VecDeque::new()), notify: Notify::new(), overflowed: AtomicBool::new(false) }
    }

    /// Queues `frame`: a position replaces the same trip's waiting one, and gives way first
    /// when the outbox is full; a frame that must arrive and cannot marks it overflowed.
    pub(crate) fn push(&self, frame: OutFrame, metrics: &Metrics) {
        {
            let mut q = self.queue.lock();
            if let OutFrame::Location(trip, _) = &frame {
                let trip = *trip;
                if let Some(slot) = q.iter_mut().find(|f| matches!(f, OutFrame::Location(t, _) if *t == trip)) {
                    *slot = frame; // the newest position wins
                    drop(q);
                    self.notify.notify_one();
                    return;
                }
            }
            if q.len() >= OUTBOX_CAP {
                if let Some(i) = q.iter().position(|f| matches!(f, OutFrame::Location(..))) {
                    q.remove(i);
                    metrics.location_frames_dropped.fetch_add(1, Ordering::Relaxed);
                } else if matches!(frame, OutFrame::Location(..)) {
                    metrics.location_frames_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                } else {
                    self.overflowed.store(true, Ordering::Relaxed);
                    drop(q);
                    self.notify.notify_one();
                    return;
                }
            }
            q.push_back(frame);
        }
        self.notify.notify_one();
    }

    /// The oldest waiting frame's text.
    pub(crate) fn pop(&self) -> Option<Utf8Bytes> {
        self.queue.lock().pop_front().map(|f| match f {
            OutFrame::Event(s) | OutFrame::Location(_, s) => s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_drops_locations_first_and_never_trip_events() {
        let m = Metrics::default();
        let o = Outbox::new();
        let trip = TripId::from_raw(1).unwrap();
        o.push(OutFrame::Location(trip, "l1".into()), &m);
        o.push(OutFrame::Location(trip, "l2".into()), &m);
        assert_eq!(o.queue.lock().len(), 1, "positions of one trip coalesce");
        for i in 0..OUTBOX_CAP - 1 {
            o.push(OutFrame::Event(format!("e{i}").into()), &m);
        }
        o.push(OutFrame::Event("last".into()), &m);
        assert!(!o.overflowed.load(Ordering::Relaxed), "the location frame made room");
        assert_eq!(o.pop().as_deref(), Some("e0"));
        o.push(OutFrame::Event("a".into()), &m);
        o.push(OutFrame::Event("b".into()), &m);
        assert!(o.overflowed.load(Ordering::Relaxed), "a trip event that cannot fit closes the socket");
    }
}
