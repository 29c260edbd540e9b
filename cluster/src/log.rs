//! The command log on a shared stream: [`SharedLog`], a [`CommandLog`] over any
//! [`LogStream`] (JetStream in production: [`JetStreamLog`](crate::JetStreamLog); the
//! in-memory stream in the model test).
//!
//! Owns the mapping between LSNs (dense from 1) and stream sequences (not dense: claim
//! markers, batches split over several messages), and the fence. Guarantees:
//! - `sync` returns only once the stream acknowledged every message of the batch; each is
//!   published with the stream sequence this log last saw as the expected last sequence,
//!   so an append by a writer that is not the last to have claimed (or appended) is
//!   refused ([`StorageError::Fenced`]) and stores nothing;
//! - a publish retried after a lost ack is idempotent: by its `Nats-Msg-Id`
//!   (`<node>-<term>-<first lsn>`) when the stream answers "duplicate", and by looking at
//!   the message after the expected sequence when it answers "wrong last sequence";
//! - what `read_from` and `follow` return continues the LSNs densely; a gap or an overlap
//!   in the stream is reported ([`StorageError::Corrupt`]), never skipped;
//! - `read_from` streams the log in bounded memory: it fetches `READ_AHEAD` (64) messages at a
//!   time (JetStream: concurrent direct gets by sequence, no consumer to clean up), from
//!   the message that holds the LSN asked for (binary search on `Dispatch-Lsn`);
//! - `follow` reads the same way from the message after the last one consumed, and while
//!   nothing is new polls the stream's last sequence every 10 ms until its timeout (a
//!   stream-info request per poll: simple and stateless; an ordered consumer would push
//!   instead, at the price of a consumer to keep alive);
//! - `release_below` purges only while this log holds its claim, and keeps the last
//!   [`RETAIN_RECORDS`] records (or what [`SharedLog::with_retain`] set): followers and
//!   restarting nodes catch up from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dispatch_storage::{BATCH_RECORDS_MAX, CommandLog, Lsn, Record, Records, StorageError};

use crate::stream::{LogMessage, LogStream, Published, StreamError};

/// Messages `read_from` and `follow` fetch at once (the memory a read holds is bounded by
/// this many messages of at most [`MESSAGE_BYTES_MAX`]).
const READ_AHEAD: u64 = 64;

/// Records `release_below` always keeps in the stream, below the checkpoint's LSN: a
/// follower that lags (or a node that restarts with an older checkpoint) catches up from
/// the stream as long as it is less than this far behind; further behind, it needs a newer
/// checkpoint (API.md "Cluster": fetched from a peer). A million records of a few hundred
/// bytes are a few hundred MiB of stream per replica.
pub const RETAIN_RECORDS: u64 = 1_000_000;

/// Most payload bytes in one message: the server's default `max_payload` is 1 MiB, and
/// headers and postcard's length prefixes need some room. A batch above it is split over
/// several consecutive messages; a single record above it is refused by `append`.
pub const MESSAGE_BYTES_MAX: usize = 800 * 1024;

/// How often `follow` looks for new messages while it waits.
const FOLLOW_POLL: Duration = Duration::from_millis(10);

/// Publishes of one message tried when the ack is lost, before `Unavailable`.
const PUBLISH_ATTEMPTS: u32 = 3;

/// What the log and the lease keeper share: the term to publish under (set by the keeper
/// on a grant) and how far the log has seen the stream (read by the keeper before it bids,
/// and by [`Cluster::stream_last_lsn`](crate::Cluster::stream_last_lsn)).
#[derive(Debug, Default)]
pub struct LogShared {
    /// The term of this node's current grant.
    pub term: AtomicU64,
    /// The last stream sequence the log consumed (appended, claimed or followed).
    pub end_seq: AtomicU64,
    /// The last LSN the log holds durably as last seen.
    pub durable_lsn: AtomicU64,
    /// The highest term seen in the stream's messages (claim markers and appends).
    pub known_term: AtomicU64,
    /// Since when (Unix ms) this node has had records in the stream it has not applied:
    /// set when a follow sees new messages, cleared when the writer follows again after
    /// applying them (unless a backlog remains). `status`'s `lag_ms` is its age: a
    /// follower that keeps up shows the time it takes to apply a chunk, one that falls
    /// behind a growing lag.
    pub behind_since_ms: AtomicU64,
}

/// The wall clock in Unix milliseconds (the lag's only use of it; never a state input).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A [`CommandLog`] on a shared stream. See the module documentation.
pub struct SharedLog<S: LogStream> {
    stream: S,
    name: String,
    node: String,
    shared: Arc<LogShared>,
    /// The last stream sequence consumed.
    end_seq: u64,
    /// The last LSN durable in the stream, as consumed.
    durable: Lsn,
    /// Records appended, not yet published.
    pending: Vec<Vec<u8>>,
    /// This log claimed the stream and no append was refused since.
    claimed: bool,
    /// The last follow stopped before the stream's end (more than one follow reads).
    backlog: bool,
    /// Records `release_below` keeps below the LSN it is given.
    retain: u64,
}

impl<S: LogStream> SharedLog<S> {
    /// Opens the log on `stream` at its end, after checking that the record after
    /// `checkpoint` can still be read (else [`StorageError::Released`]).
    pub fn open(
        stream: S,
        name: &str,
        node: &str,
        shared: Arc<LogShared>,
        checkpoint: Lsn,
    ) -> Result<Self, StorageError> {
        let mut log = SharedLog {
            stream,
            name: name.to_string(),
            node: node.to_string(),
            shared,
            end_seq: 0,
            durable: 0,
            pending: Vec::new(),
            claimed: false,
            backlog: false,
            retain: RETAIN_RECORDS,
        };
        log.resync()?;
        if checkpoint > log.durable {
            return Err(StorageError::InvalidLsn {
                lsn: checkpoint,
                reason: "the data directory's checkpoint is ahead of the shared stream",
            });
        }
        if checkpoint < log.durable {
            log.locate(checkpoint + 1)?;
        }
        Ok(log)
    }

    /// This log, keeping `retain` records below the LSN `release_below` is given instead
    /// of [`RETAIN_RECORDS`] (`ClusterConfig::retain_records`; 0 purges everything the
    /// checkpoint covers).
    #[must_use]
    pub fn with_retain(mut self, retain: u64) -> Self {
        self.retain = retain;
        self
    }

    /// Whether this log holds its claim (it may append).
    pub fn is_claimed(&self) -> bool {
        self.claimed
    }

    /// The last stream sequence this log consumed.
    pub fn end_seq(&self) -> u64 {
        self.end_seq
    }

    /// The stream under the log.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    fn corrupt(&self, seq: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt { path: PathBuf::from(format!("nats:{}", self.name)), offset: seq, reason: reason.into() }
    }

    fn stream_error(&self, e: StreamError) -> StorageError {
        match e {
            StreamError::WrongLastSequence(reason) => StorageError::Fenced { reason },
            StreamError::Unavailable(reason) | StreamError::Nats(reason) | StreamError::Setting(reason) => {
                StorageError::Unavailable { reason }
            }
            StreamError::Malformed { seq, reason } => self.corrupt(seq, reason),
        }
    }

    fn get(&self, seq: u64) -> Result<Option<LogMessage>, StorageError> {
        self.stream.get(seq).map_err(|e| self.stream_error(e))
    }

    /// The first LSN the stream still holds (best effort, for error messages).
    fn first_available(&self) -> Lsn {
        let first = self.stream.bounds().map(|b| b.first).unwrap_or(0);
        self.stream.get(first).ok().flatten().map_or(0, |m| m.first_lsn)
    }

    fn publish_state(&self) {
        self.shared.end_seq.store(self.end_seq, Ordering::SeqCst);
        self.shared.durable_lsn.store(self.durable, Ordering::SeqCst);
    }

    fn note_term(&self, term: u64) {
        self.shared.known_term.fetch_max(term, Ordering::SeqCst);
    }

    /// Moves the view to the stream's end (the last message's last LSN).
    fn resync(&mut self) -> Result<(), StorageError> {
        let bounds = self.stream.bounds().map_err(|e| self.stream_error(e))?;
        self.pending.clear();
        if bounds.last == 0 {
            self.end_seq = 0;
            self.durable = 0;
        } else {
            let Some(last) = self.get(bounds.last)? else {
                return Err(self.corrupt(bounds.last, "the stream's last message is gone (purged entirely?)"));
            };
            self.note_term(last.term);
            self.end_seq = bounds.last;
            self.durable = last.last_lsn();
        }
        self.publish_state();
        Ok(())
    }

    /// The sequence of the message that holds `lsn` (or, for `lsn` after every record, the
    /// message after which it would come): the last message whose first LSN is at most
    /// `lsn`. Binary search over the stored messages up to the consumed end.
    fn locate(&self, lsn: Lsn) -> Result<u64, StorageError> {
        let bounds = self.stream.bounds().map_err(|e| self.stream_error(e))?;
        let first_msg = if bounds.is_empty() { None } else { self.get(bounds.first)? };
        let Some(first_msg) = first_msg else {
            return Err(StorageError::Released { from: lsn, first_available: self.durable + 1 });
        };
        if first_msg.first_lsn > lsn {
            return Err(StorageError::Released { from: lsn, first_available: first_msg.first_lsn });
        }
        let (mut lo, mut hi) = (bounds.first, self.end_seq.max(bounds.first));
        // Invariant: the message at `lo` starts at or before `lsn`; the answer is in lo..=hi.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let Some(message) = self.get(mid)? else {
                return Err(self.corrupt(mid, "a message inside the stream's bounds is missing"));
            };
            if message.first_lsn <= lsn { lo = mid } else { hi = mid - 1 }
        }
        Ok(lo)
    }

    /// Publishes one message with the fence; on a lost ack, retries with the same id.
    /// Returns the sequence it is stored at.
    fn publish(&mut self, message: &LogMessage) -> Result<u64, StorageError> {
        let expected = self.end_seq;
        let mut last_error = String::new();
        for _ in 0..PUBLISH_ATTEMPTS {
            match self.stream.publish(message, expected) {
                Ok(Published::Stored(seq)) => return Ok(seq),
                // Ours, stored by an earlier attempt, right after the fence: success. A
                // duplicate anywhere else (an old message of ours, with the same id) means
                // the stream moved on without us.
                Ok(Published::Duplicate(seq)) if seq == expected + 1 => return Ok(seq),
                Ok(Published::Duplicate(seq)) => {
                    return Err(StorageError::Fenced {
                        reason: format!("message {} was stored before, at {seq}", message.msg_id),
                    });
                }
                Err(StreamError::WrongLastSequence(reason)) => {
                    // An earlier attempt may have stored it (the stream checked the fence
                    // before the id): then the message after the fence is ours.
                    if let Some(stored) = self.get(expected + 1)?
                        && stored.msg_id == message.msg_id
                    {
                        return Ok(expected + 1);
                    }
                    return Err(StorageError::Fenced { reason });
                }
                Err(StreamError::Unavailable(reason)) => last_error = reason,
                Err(e) => return Err(self.stream_error(e)),
            }
        }
        Err(StorageError::Unavailable { reason: last_error })
    }

    /// The next messages after the consumed end, for `follow`: stops at the stream's end
    /// or before [`BATCH_RECORDS_MAX`] records would be exceeded (at least one message).
    /// Each must start at `expected`, the LSN after the last consumed.
    fn consume(&mut self, mut expected: Lsn) -> Result<Vec<Record>, StorageError> {
        let mut out = Vec::new();
        let bounds = self.stream.bounds().map_err(|e| self.stream_error(e))?;
        let mut seq = self.end_seq;
        let mut ahead = std::collections::VecDeque::new();
        // The writer follows again only once it applied what the last follow returned: that
        // is caught up, unless the last follow left a backlog behind (then the lag keeps
        // counting from when it was first seen).
        if !self.backlog {
            self.shared.behind_since_ms.store(0, Ordering::SeqCst);
        }
        if bounds.last > seq && self.shared.behind_since_ms.load(Ordering::SeqCst) == 0 {
            self.shared.behind_since_ms.store(unix_ms(), Ordering::SeqCst);
        }
        if seq + 1 < bounds.first {
            return Err(StorageError::Released { from: expected, first_available: self.first_available() });
        }
        while seq < bounds.last {
            let next = seq + 1;
            if ahead.is_empty() {
                let to = bounds.last.min(next + READ_AHEAD - 1);
                ahead = self.stream.get_range(next, to).map_err(|e| self.stream_error(e))?.into();
            }
            let Some(message) = ahead.pop_front().flatten() else {
                return Err(self.corrupt(next, "a message inside the stream's bounds is missing"));
            };
            if !out.is_empty() && out.len() as u64 + message.count > BATCH_RECORDS_MAX as u64 {
                break;
            }
            if message.first_lsn > expected {
                return Err(self.corrupt(
                    next,
                    format!("gap in the log: message starts at lsn {}, lsn {expected} expected", message.first_lsn),
                ));
            }
            if message.first_lsn < expected {
                return Err(self.corrupt(
                    next,
                    format!("overlap in the log: message starts at lsn {}, lsn {expected} expected", message.first_lsn),
                ));
            }
            let records = message.records().map_err(|reason| self.corrupt(next, reason))?;
            self.note_term(message.term);
            for payload in records {
                out.push(Record { lsn: expected, payload });
                expected += 1;
            }
            seq = next;
            self.end_seq = seq;
            self.durable = expected - 1;
        }
        self.backlog = seq < bounds.last;
        self.publish_state();
        Ok(out)
    }
}

impl<S: LogStream> CommandLog for SharedLog<S> {
    fn append(&mut self, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
        // A record travels whole in one message: at most MESSAGE_BYTES_MAX.
        if let Some(big) = payloads.iter().find(|p| p.len() > MESSAGE_BYTES_MAX) {
            return Err(StorageError::RecordTooLarge { bytes: big.len(), max: MESSAGE_BYTES_MAX });
        }
        let bytes = dispatch_storage::check_batch(payloads)?;
        if payloads.len() + self.pending.len() > BATCH_RECORDS_MAX {
            let reason = "more records than BATCH_RECORDS_MAX, with those appended before";
            return Err(StorageError::InvalidBatch { records: payloads.len(), bytes, reason });
        }
        if !self.claimed {
            return Err(StorageError::Fenced { reason: "this node has not claimed the shared log".into() });
        }
        let first = self.durable + self.pending.len() as u64 + 1;
        self.pending.extend(payloads.iter().map(|p| p.to_vec()));
        Ok(first)
    }

    fn sync(&mut self) -> Result<Lsn, StorageError> {
        let pending = std::mem::take(&mut self.pending);
        let term = self.shared.term.load(Ordering::SeqCst);
        let mut start = 0;
        while start < pending.len() {
            // One message per group commit, split where it would exceed MESSAGE_BYTES_MAX
            // (postcard adds at most 5 bytes of length per record, and a few for the count).
            let mut end = start;
            let mut size = 8;
            while end < pending.len() && (end == start || size + pending[end].len() + 5 <= MESSAGE_BYTES_MAX) {
                size += pending[end].len() + 5;
                end += 1;
            }
            let chunk = &pending[start..end];
            let first_lsn = self.durable + 1;
            let payload = postcard::to_allocvec(chunk)
                .map_err(|e| StorageError::Unavailable { reason: format!("encoding a batch: {e}") })?;
            let message = LogMessage {
                first_lsn,
                count: chunk.len() as u64,
                node: self.node.clone(),
                term,
                claim: false,
                msg_id: format!("{}-{term}-{first_lsn}", self.node),
                payload,
            };
            match self.publish(&message) {
                Ok(seq) => {
                    self.end_seq = seq;
                    self.durable = message.last_lsn();
                    self.publish_state();
                }
                Err(e) => {
                    if e.is_fenced() {
                        self.claimed = false;
                        tracing::warn!(node = %self.node, term, lsn = first_lsn, "append fenced: another writer appended");
                    }
                    return Err(e);
                }
            }
            start = end;
        }
        Ok(self.durable)
    }

    fn read_from(&self, from: Lsn) -> Result<Records<'_>, StorageError> {
        let from = from.max(1);
        if from > self.durable {
            return Ok(Box::new(std::iter::empty()));
        }
        let seq = self.locate(from)?;
        Ok(Box::new(Reader {
            log: self,
            next_seq: seq,
            ahead: Default::default(),
            from,
            expected: None,
            buffer: Vec::new().into_iter(),
            done: false,
        }))
    }

    fn last_lsn(&self) -> Lsn {
        self.durable + self.pending.len() as u64
    }

    fn durable_lsn(&self) -> Lsn {
        self.durable
    }

    fn release_below(&mut self, lsn: Lsn) -> Result<(), StorageError> {
        if lsn > self.durable + 1 {
            return Err(StorageError::InvalidLsn { lsn, reason: "beyond the durable end of the log" });
        }
        // Only the writer purges (one purger, and only one that knows its checkpoint is
        // current); a follower keeps everything.
        if !self.claimed || lsn <= self.retain.saturating_add(1) {
            return Ok(());
        }
        // The record at `lsn` may not be written yet (`lsn` = end + 1): keep the last one.
        let keep_from = self.locate((lsn - self.retain).min(self.durable))?;
        self.stream.purge_below(keep_from).map_err(|e| self.stream_error(e))
    }

    fn reopen(&mut self) -> Result<(), StorageError> {
        let before = self.end_seq;
        self.resync()?;
        if self.end_seq != before {
            // Something landed after what we saw (perhaps our own lost ack): claim again.
            self.claimed = false;
        }
        Ok(())
    }

    fn follow(&mut self, after: Lsn, timeout: Duration) -> Result<Vec<Record>, StorageError> {
        self.pending.clear();
        if after > self.durable {
            return Err(StorageError::InvalidLsn { lsn: after, reason: "follow after the log's end" });
        }
        let mut skip = None;
        if after < self.durable {
            // The caller is behind this log's view: restart from the message holding
            // `after + 1` and drop what comes before it.
            let seq = self.locate(after + 1)?;
            let Some(message) = self.get(seq)? else {
                return Err(self.corrupt(seq, "a located message is missing"));
            };
            self.end_seq = seq - 1;
            self.durable = message.first_lsn - 1;
            skip = Some(after + 1);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut records = self.consume(self.durable + 1)?;
            if let Some(skip) = skip {
                records.retain(|r| r.lsn >= skip);
            }
            let now = Instant::now();
            if !records.is_empty() || now >= deadline {
                return Ok(records);
            }
            std::thread::sleep(FOLLOW_POLL.min(deadline - now));
        }
    }

    fn claim(&mut self) -> Result<(), StorageError> {
        self.pending.clear();
        let term = self.shared.term.load(Ordering::SeqCst);
        let first_lsn = self.durable + 1;
        let message = LogMessage {
            first_lsn,
            count: 0,
            node: self.node.clone(),
            term,
            claim: true,
            msg_id: format!("{}-{term}-claim-{first_lsn}-{}", self.node, self.end_seq),
            payload: Vec::new(),
        };
        let seq = self.publish(&message)?;
        self.end_seq = seq;
        self.claimed = true;
        self.note_term(term);
        self.publish_state();
        tracing::info!(node = %self.node, term, lsn = first_lsn, seq, "claimed the log");
        Ok(())
    }
}

/// `read_from`'s iterator: one message at a time, from the one holding `from` to the
/// log's durable end when it was created.
struct Reader<'a, S: LogStream> {
    log: &'a SharedLog<S>,
    next_seq: u64,
    /// Messages fetched ahead (at most READ_AHEAD): bounded memory.
    ahead: std::collections::VecDeque<Option<LogMessage>>,
    from: Lsn,
    /// The LSN the next message must start at (`None` before the first).
    expected: Option<Lsn>,
    buffer: std::vec::IntoIter<Record>,
    done: bool,
}

impl<S: LogStream> Reader<'_, S> {
    fn fill(&mut self) -> Result<(), StorageError> {
        while self.buffer.len() == 0 && self.next_seq <= self.log.end_seq {
            let seq = self.next_seq;
            if self.ahead.is_empty() {
                let to = self.log.end_seq.min(seq + READ_AHEAD - 1);
                self.ahead = self.log.stream.get_range(seq, to).map_err(|e| self.log.stream_error(e))?.into();
            }
            self.next_seq += 1;
            let Some(message) = self.ahead.pop_front().flatten() else {
                let first = self.log.stream.bounds().map_err(|e| self.log.stream_error(e))?.first;
                if seq < first {
                    return Err(StorageError::Released {
                        from: self.from,
                        first_available: self.log.first_available(),
                    });
                }
                return Err(self.log.corrupt(seq, "a message inside the stream's bounds is missing"));
            };
            let expected = self.expected.unwrap_or(message.first_lsn);
            if message.first_lsn != expected {
                return Err(self
                    .log
                    .corrupt(seq, format!("message starts at lsn {}, lsn {expected} expected", message.first_lsn)));
            }
            let records = message.records().map_err(|reason| self.log.corrupt(seq, reason))?;
            let mut lsn = message.first_lsn;
            let mut out = Vec::new();
            for payload in records {
                if lsn >= self.from && lsn <= self.log.durable {
                    out.push(Record { lsn, payload });
                }
                lsn += 1;
            }
            self.expected = Some(lsn);
            self.buffer = out.into_iter();
        }
        Ok(())
    }
}

impl<S: LogStream> Iterator for Reader<'_, S> {
    type Item = Result<Record, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.fill() {
            self.done = true;
            return Some(Err(e));
        }
        let next = self.buffer.next();
        if next.is_none() {
            self.done = true;
        }
        next.map(Ok)
    }
}

#[cfg(test)]
mod tests;
