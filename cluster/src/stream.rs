//! The few operations the shared command log needs from a stream, as a trait
//! ([`LogStream`]), and an in-memory stream ([`MemStream`]) with JetStream's semantics
//! for the model test.
//!
//! Owns [`LogMessage`] (one message of the log: a group commit or a claim marker). Its
//! operations fail with the crate's [`ClusterError`](crate::ClusterError) (`WrongLastSequence`,
//! `Unavailable`, `Malformed`, `Nats`). Guarantees of every implementation, as JetStream gives them: sequences
//! start at 1 and increase by one per stored message; a publish with an expected last
//! sequence other than the stream's last is refused and stores nothing; a publish whose
//! message id was stored before (within the duplicate window) stores nothing and is
//! answered with the first copy's sequence; a purge removes a prefix only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use dispatch_storage::Lsn;

pub use crate::ClusterError as StreamError;

/// One message of the log, as the log writes and reads it. JetStream carries the fields in
/// headers (`Dispatch-Lsn`, `Dispatch-Count`, `Dispatch-Node`, `Dispatch-Term`,
/// `Dispatch-Claim`, `Nats-Msg-Id`) and the records in the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    /// The LSN of its first record (for a claim marker: the LSN the next record will take).
    pub first_lsn: Lsn,
    /// Records it holds (0 for a claim marker).
    pub count: u64,
    /// The node that published it.
    pub node: String,
    /// That node's term when it published it.
    pub term: u64,
    /// A claim marker (no records): the node made itself the log's only writer.
    pub claim: bool,
    /// JetStream's `Nats-Msg-Id`: makes a retried publish idempotent.
    pub msg_id: String,
    /// The records: postcard of a `Vec` of byte strings (empty for a claim marker).
    pub payload: Vec<u8>,
}

impl LogMessage {
    /// The records of a message, checked against `count`.
    pub fn records(&self) -> Result<Vec<Vec<u8>>, String> {
        if self.claim {
            return if self.count == 0 { Ok(Vec::new()) } else { Err("a claim marker with records".into()) };
        }
        let records: Vec<Vec<u8>> =
            postcard::from_bytes(&self.payload).map_err(|e| format!("undecodable payload: {e}"))?;
        if records.len() as u64 != self.count {
            return Err(format!("{} records in a message that says {}", records.len(), self.count));
        }
        Ok(records)
    }

    /// The last LSN the log holds once this message is in it.
    pub fn last_lsn(&self) -> Lsn {
        (self.first_lsn + self.count).saturating_sub(1)
    }
}

/// What a stored publish answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored at this sequence.
    Stored(u64),
    /// A message with the same id was stored before, at this sequence; nothing new stored.
    Duplicate(u64),
}

/// The first and last sequence a stream holds; `first == last + 1` when it holds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The lowest stored sequence.
    pub first: u64,
    /// The highest sequence ever stored (0: none ever was).
    pub last: u64,
}

impl Bounds {
    /// Whether no message is stored.
    pub fn is_empty(&self) -> bool {
        self.first > self.last
    }
}

/// A stream of [`LogMessage`]s (JetStream, or [`MemStream`] in tests). Blocking: the
/// engine's writer is a plain thread.
pub trait LogStream: Send + Sync + 'static {
    /// Publishes `message` if the stream's last sequence is `expected_last`.
    fn publish(&self, message: &LogMessage, expected_last: u64) -> Result<Published, StreamError>;
    /// The message stored at `seq` (`None`: purged, or never stored).
    fn get(&self, seq: u64) -> Result<Option<LogMessage>, StreamError>;
    /// The messages at `from..=to` in order (`None` where there is none): what a reader
    /// asks for when it has many to read. JetStream's implementation asks for them
    /// concurrently.
    fn get_range(&self, from: u64, to: u64) -> Result<Vec<Option<LogMessage>>, StreamError> {
        (from..=to).map(|seq| self.get(seq)).collect()
    }
    /// The stream's bounds now.
    fn bounds(&self) -> Result<Bounds, StreamError>;
    /// Removes every message below `seq` (keeps `seq` and after).
    fn purge_below(&self, seq: u64) -> Result<(), StreamError>;
}

/// An in-memory stream with JetStream's publish, dedup and purge rules (no duplicate
/// window: ids are remembered for ever, which the log's use never tells apart).
#[derive(Debug, Default)]
pub struct MemStream {
    inner: Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    messages: BTreeMap<u64, LogMessage>,
    last: u64,
    ids: BTreeMap<String, u64>,
    /// When set, the next publish is stored but answered `Unavailable` (a lost ack).
    lose_next_ack: bool,
    /// Check the expected last sequence before the message id (JetStream 2.9 checks the
    /// id first; the log must be right either way).
    sequence_first: bool,
}

impl MemStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored message with its sequence, in order (for checks).
    pub fn messages(&self) -> Vec<(u64, LogMessage)> {
        let inner = self.lock();
        inner.messages.iter().map(|(s, m)| (*s, m.clone())).collect()
    }

    /// The next publish is stored but its ack is lost (the publisher sees `Unavailable`).
    pub fn lose_next_ack(&self) {
        self.lock().lose_next_ack = true;
    }

    /// Check the expected last sequence before the message id.
    pub fn check_sequence_first(&self) {
        self.lock().sequence_first = true;
    }

    /// Stores `message` as it is, without any check (to build broken streams in tests).
    pub fn force(&self, message: LogMessage) -> u64 {
        let mut inner = self.lock();
        inner.last += 1;
        let seq = inner.last;
        inner.messages.insert(seq, message);
        seq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A panic while holding this lock can only come from a failing test.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LogStream for MemStream {
    fn publish(&self, message: &LogMessage, expected_last: u64) -> Result<Published, StreamError> {
        let mut inner = self.lock();
        // JetStream checks the message id before the expected last sequence (see the
        // server test in tests/jetstream.rs); the log handles either order.
        let wrong = inner.last != expected_last;
        if wrong && inner.sequence_first {
            return Err(StreamError::WrongLastSequence(format!("last is {}, not {expected_last}", inner.last)));
        }
        if let Some(seq) = inner.ids.get(&message.msg_id) {
            return Ok(Published::Duplicate(*seq));
        }
        if wrong {
            return Err(StreamError::WrongLastSequence(format!("last is {}, not {expected_last}", inner.last)));
        }
        inner.last += 1;
        let seq = inner.last;
        inner.messages.insert(seq, message.clone());
        inner.ids.insert(message.msg_id.clone(), seq);
        if std::mem::take(&mut inner.lose_next_ack) {
            return Err(StreamError::Unavailable("ack lost".into()));
        }
        Ok(Published::Stored(seq))
    }

    fn get(&self, seq: u64) -> Result<Option<LogMessage>, StreamError> {
        Ok(self.lock().messages.get(&seq).cloned())
    }

    fn bounds(&self) -> Result<Bounds, StreamError> {
        let inner = self.lock();
        let first = inner.messages.keys().next().copied().unwrap_or(inner.last + 1);
        Ok(Bounds { first, last: inner.last })
    }

    fn purge_below(&self, seq: u64) -> Result<(), StreamError> {
        let mut inner = self.lock();
        inner.messages = inner.messages.split_off(&seq);
        Ok(())
    }
}

impl<T: LogStream> LogStream for std::sync::Arc<T> {
    fn publish(&self, message: &LogMessage, expected_last: u64) -> Result<Published, StreamError> {
        (**self).publish(message, expected_last)
    }
    fn get(&self, seq: u64) -> Result<Option<LogMessage>, StreamError> {
        (**self).get(seq)
    }
    fn get_range(&self, from: u64, to: u64) -> Result<Vec<Option<LogMessage>>, StreamError> {
        (**self).get_range(from, to)
    }
    fn bounds(&self) -> Result<Bounds, StreamError> {
        (**self).bounds()
    }
    fn purge_below(&self, seq: u64) -> Result<(), StreamError> {
        (**self).purge_below(seq)
    }
}
