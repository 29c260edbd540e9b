//! Presence reports: a driver's socket connected or dropped, told to the engine, and
//! kept until the engine has taken it.
//!
//! Guarantees: a report is sent without waiting on the writer (`submit_with`), so it may
//! be sent under the hub's lock; a report the engine could not take (its queue full,
//! read-only) is kept, one per driver (the newest replaces an older one, and a late
//! answer to the older one settles nothing), and sent again on every tick until it is
//! taken ([`retry_presence`], at most [`PRESENCE_RETRIES_PER_TICK`] a tick); a report
//! refused for good (the driver is gone) is dropped. A lost disconnect would leave the
//! engine offering trips to a driver without a socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dispatch_core::{Actor, Command, UserId};
use parking_lot::Mutex;

/// Sends report `seq` (`connected` or not) of `driver` to the engine; its answer settles
/// the report in `pending`.
pub(crate) fn submit_presence(
    engine: &dispatch_core::Engine,
    pending: &Arc<PendingPresence>,
    driver: UserId,
    connected: bool,
    seq: u64,
) {
    let marks = Arc::clone(pending);
    let sent = engine.submit_with(Actor::User(driver), Command::SetPresence { connected }, move |r| {
        marks.settle(driver, seq, r.map(|_| ()));
    });
    if let Err(e) = sent {
        // The reply closure was dropped unanswered: settle here.
        pending.settle(driver, seq, Err(e));
    }
}

/// Sends again every presence report the engine has not taken (called on the 1 s tick);
/// at most [`PRESENCE_RETRIES_PER_TICK`] a tick. Returns how many were sent.
pub fn retry_presence(engine: &dispatch_core::Engine, pending: &Arc<PendingPresence>) -> usize {
    let due = pending.due(PRESENCE_RETRIES_PER_TICK);
    for &(driver, connected, seq) in &due {
        submit_presence(engine, pending, driver, connected, seq);
    }
    due.len()
}

/// Most presence reports sent again on one tick (an overloaded engine is not flooded).
pub const PRESENCE_RETRIES_PER_TICK: usize = 4096;

/// Presence reports not yet taken by the engine: at most one per driver (the newest
/// report replaces an older one), so bounded by the drivers that have had a socket.
#[derive(Default)]
pub struct PendingPresence {
    marks: Mutex<HashMap<UserId, PresenceMark>>,
    seq: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PresenceMark {
    connected: bool,
    /// Which report this is (a reply for an older one settles nothing).
    seq: u64,
    /// Sent and not answered yet: not sent again until answered.
    in_flight: bool,
}

impl PendingPresence {
    /// Notes a report about to be sent; its sequence number.
    pub(crate) fn record(&self, driver: UserId, connected: bool) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.marks.lock().insert(driver, PresenceMark { connected, seq, in_flight: true });
        seq
    }

    /// The engine's answer to report `seq`: taken (applied, or refused for good: the
    /// driver is gone), or to be sent again (`Overloaded`, `ReadOnly`, `NotLeader`).
    pub(crate) fn settle(&self, driver: UserId, seq: u64, result: Result<(), dispatch_core::Error>) {
        // A node of a cluster that does not lead (issue 21) keeps it until a leader takes it.
        let retry = matches!(
            result,
            Err(dispatch_core::Error::Overloaded
                | dispatch_core::Error::ReadOnly(_)
                | dispatch_core::Error::NotLeader(_))
        );
        let mut marks = self.marks.lock();
        match marks.get_mut(&driver) {
            Some(m) if m.seq == seq && retry => m.in_flight = false,
            Some(m) if m.seq == seq => {
                marks.remove(&driver);
            }
            _ => {} // a newer report replaced this one
        }
    }

    /// Up to `max` reports to send again, marked in flight.
    pub(crate) fn due(&self, max: usize) -> Vec<(UserId, bool, u64)> {
        let mut marks = self.marks.lock();
        marks
            .iter_mut()
            .filter(|(_, m)| !m.in_flight)
            .take(max)
            .map(|(d, m)| {
                m.in_flight = true;
                (*d, m.connected, m.seq)
            })
            .collect()
    }

    /// Reports not yet taken.
    pub fn len(&self) -> usize {
        self.marks.lock().len()
    }

    /// Whether every report was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dispatch_core::Role;

    use super::*;

    #[test]
    fn a_presence_report_the_engine_could_not_take_is_kept_until_it_is_taken() {
        let p = PendingPresence::default();
        let d = UserId::from_raw(7).unwrap();
        let first = p.record(d, false);
        assert!(p.due(10).is_empty(), "in flight: not sent twice");
        p.settle(d, first, Err(dispatch_core::Error::Overloaded));
        assert_eq!(p.due(10), vec![(d, false, first)]);
        assert!(p.due(10).is_empty(), "sent again: in flight");
        p.settle(d, first, Err(dispatch_core::Error::ReadOnly("disk full".into())));
        // The driver came back meanwhile: the newer report replaces the older one, and a
        // late answer to the older one changes nothing.
        let second = p.record(d, true);
        p.settle(d, first, Ok(()));
        assert_eq!(p.len(), 1);
        p.settle(d, second, Err(dispatch_core::Error::Overloaded));
        assert_eq!(p.due(10), vec![(d, true, second)]);
        p.settle(d, second, Ok(()));
        assert!(p.is_empty(), "taken");
        // A refusal for good (the driver is gone) is not retried.
        let third = p.record(d, false);
        p.settle(
            d,
            third,
            Err(dispatch_core::Error::Domain(dispatch_core::DomainError::NotFound {
                what: "driver",
                id: d.to_string(),
            })),
        );
        assert!(p.is_empty());
        // At most `max` a round.
        for i in 1..=5 {
            let u = UserId::from_raw(100 + i).unwrap();
            let seq = p.record(u, false);
            p.settle(u, seq, Err(dispatch_core::Error::Overloaded));
        }
        assert_eq!(p.due(3).len(), 3);
        assert_eq!(p.due(3).len(), 2);
    }

    #[test]
    fn a_disconnect_lost_to_a_read_only_engine_reaches_it_once_it_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let fault = dir.path().join("disk-full");
        let log = crate::fault::FaultFileLog::new(Box::new(dispatch_storage::MemLog::new()), fault.clone());
        let config = dispatch_core::EngineConfig { read_only_retry: Duration::from_millis(10), ..Default::default() };
        let engine =
            dispatch_core::Engine::open_with_log(config, Box::new(log), dispatch_core::State::default()).unwrap();
        engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
        let car = dispatch_core::Vehicle::new(dispatch_core::Category::new("economy").unwrap(), "A 1");
        let new = dispatch_core::NewUser {
            id: None,
            role: Role::Driver,
            name: "Omar".into(),
            phone: "+201000000001".into(),
            vehicle: Some(car),
        };
        let driver = engine.create_user(Actor::Admin, new).unwrap().id;
        let pending = Arc::new(PendingPresence::default());
        std::fs::write(&fault, b"").unwrap();
        let seq = pending.record(driver, false);
        submit_presence(&engine, &pending, driver, false, seq);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The write fails: the report is kept, not lost.
        while !(engine.is_read_only() && pending.due(1).len() == 1) {
            assert!(std::time::Instant::now() < deadline, "the report was never refused");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pending.len(), 1);
        pending.settle(driver, seq, Err(dispatch_core::Error::Overloaded)); // `due` marked it in flight
        std::fs::remove_file(&fault).unwrap();
        // The 1 s tick sends it again until the engine takes it.
        loop {
            retry_presence(&engine, &pending);
            let connected = engine.read(|v| v.driver(driver).and_then(|d| d.connected).map(|(c, _)| c));
            if pending.is_empty() && connected == Some(false) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the disconnect never reached the engine");
            std::thread::sleep(Duration::from_millis(10));
        }
        engine.shutdown().unwrap();
    }
}
