//! The JetStream implementations of [`LogStream`] ([`JsStream`]) and [`LeaseKv`]
//! ([`JsKv`]), blocking on the cluster's own tokio runtime.
//!
//! Owns the message format on the wire: headers `Dispatch-Lsn` (first LSN),
//! `Dispatch-Count` (records), `Dispatch-Node`, `Dispatch-Term`, `Dispatch-Claim: <term>`
//! (claim markers only), `Nats-Msg-Id` and `Nats-Expected-Last-Sequence`; payload the
//! postcard of the records. Guarantees: every call is bounded by [`REQUEST_TIMEOUT`] and
//! ends as `Unavailable` when the servers do not answer; a message without the log's
//! headers is reported `Malformed`, never guessed at; nothing here panics on what the
//! servers send.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use tokio::runtime::Handle;

use crate::election::{LeaseValue, Observed, WriteResult};
use crate::kv::LeaseKv;
use crate::stream::{Bounds, LogMessage, LogStream, Published, StreamError};

/// The longest any one request to the servers may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Gets a range read keeps in flight.
const GETS_IN_FLIGHT: usize = 32;

/// The lease's key in its bucket.
pub const LEASE_KEY: &str = "leader";

const H_LSN: &str = "Dispatch-Lsn";
const H_COUNT: &str = "Dispatch-Count";
const H_NODE: &str = "Dispatch-Node";
const H_TERM: &str = "Dispatch-Term";
const H_CLAIM: &str = "Dispatch-Claim";
const H_MSG_ID: &str = "Nats-Msg-Id";

/// Runs `future` on the cluster's runtime and waits for it from any thread, a runtime
/// thread of another runtime included (`Handle::block_on` would panic there). `None`:
/// the runtime is gone or the time ran out.
pub(crate) fn block<F>(handle: &Handle, future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_for(handle, REQUEST_TIMEOUT, future)
}

/// [`block`] with another time limit.
pub(crate) fn block_for<F>(handle: &Handle, limit: Duration, future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    handle.spawn(async move {
        if let Ok(output) = tokio::time::timeout(limit, future).await {
            let _ = tx.send(output);
        }
    });
    rx.recv().ok()
}

/// The command log's stream on JetStream.
#[derive(Clone)]
pub struct JsStream {
    handle: Handle,
    context: Context,
    stream: Stream,
    subject: String,
}

impl JsStream {
    pub(crate) fn new(handle: Handle, context: Context, stream: Stream, subject: String) -> Self {
        JsStream { handle, context, stream, subject }
    }
}

fn unavailable(what: &str) -> StreamError {
    StreamError::Unavailable(format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

fn parse_message(seq: u64, headers: &HeaderMap, payload: &[u8]) -> Result<LogMessage, StreamError> {
    let malformed = |reason: String| StreamError::Malformed { seq, reason };
    let number = |name: &str| -> Result<u64, StreamError> {
        let text = header(headers, name).ok_or_else(|| malformed(format!("no {name} header")))?;
        text.trim().parse::<u64>().map_err(|_| malformed(format!("{name} is not a number: {text:?}")))
    };
    let first_lsn = number(H_LSN)?;
    let count = number(H_COUNT)?;
    let term = number(H_TERM)?;
    if first_lsn == 0 {
        return Err(malformed("Dispatch-Lsn 0".into()));
    }
    Ok(LogMessage {
        first_lsn,
        count,
        node: header(headers, H_NODE).unwrap_or_default().to_string(),
        term,
        claim: header(headers, H_CLAIM).is_some(),
        msg_id: header(headers, H_MSG_ID).unwrap_or_default().to_string(),
        payload: payload.to_vec(),
    })
}

impl LogStream for JsStream {
    fn publish(&self, message: &LogMessage, expected_last: u64) -> Result<Published, StreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(H_LSN, message.first_lsn.to_string().as_str());
        headers.insert(H_COUNT, message.count.to_string().as_str());
        headers.insert(H_NODE, message.node.as_str());
        headers.insert(H_TERM, message.term.to_string().as_str());
        if message.claim {
            headers.insert(H_CLAIM, message.term.to_string().as_str());
        }
        let publish = PublishMessage::build()
            .headers(headers)
            .payload(Bytes::from(message.payload.clone()))
            .message_id(&message.msg_id)
            .expected_last_sequence(expected_last);
        let context = self.context.clone();
        let subject = self.subject.clone();
        let outcome = block(&self.handle, async move {
            let ack = context.send_publish(subject, publish).await?;
            ack.await
        });
        let ack = match outcome {
            None => return Err(unavailable("publish")),
            Some(Ok(ack)) => ack,
            Some(Err(e)) => {
                return Err(match e.kind() {
                    PublishErrorKind::WrongLastSequence => StreamError::WrongLastSequence(e.to_string()),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound => {
                        StreamError::Unavailable(e.to_string())
                    }
                    PublishErrorKind::MaxPayloadExceeded => StreamError::Nats(e.to_string()),
                    // No responders (no JetStream reachable) and the rest: unknown outcome.
                    _ => StreamError::Unavailable(e.to_string()),
                });
            }
        };
        Ok(if ack.duplicate { Published::Duplicate(ack.sequence) } else { Published::Stored(ack.sequence) })
    }

    fn get(&self, seq: u64) -> Result<Option<LogMessage>, StreamError> {
        let stream = self.stream.clone();
        match block(&self.handle, async move { stream.get_raw_message(seq).await }) {
            None => Err(unavailable("get")),
            Some(Ok(message)) => parse_message(seq, &message.headers, &message.payload).map(Some),
            Some(Err(e)) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                // 10037: "no message found".
                LastRawMessageErrorKind::JetStream(js) if js.error_code().0 == 10037 => Ok(None),
                _ => Err(StreamError::Unavailable(format!("get {seq}: {e}"))),
            },
        }
    }

    fn get_range(&self, from: u64, to: u64) -> Result<Vec<Option<LogMessage>>, StreamError> {
        use futures_util::StreamExt;
        if from > to {
            return Ok(Vec::new());
        }
        let stream = self.stream.clone();
        let answers = block(&self.handle, async move {
            futures_util::stream::iter(from..=to)
                .map(|seq| {
                    let stream = stream.clone();
                    async move { (seq, stream.get_raw_message(seq).await) }
                })
                .buffered(GETS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        })
        .ok_or_else(|| unavailable("get"))?;
        answers
            .into_iter()
            .map(|(seq, answer)| match answer {
                Ok(message) => parse_message(seq, &message.headers, &message.payload).map(Some),
                Err(e) => match e.kind() {
                    LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    LastRawMessageErrorKind::JetStream(js) if js.error_code().0 == 10037 => Ok(None),
                    _ => Err(StreamError::Unavailable(format!("get {seq}: {e}"))),
                },
            })
            .collect()
    }

    fn bounds(&self) -> Result<Bounds, StreamError> {
        let stream = self.stream.clone();
        match block(&self.handle, async move { stream.get_info().await }) {
            None => Err(unavailable("stream info")),
            Some(Err(e)) => Err(StreamError::Unavailable(format!("stream info: {e}"))),
            Some(Ok(info)) => {
                let state = info.state;
                let first = if state.messages == 0 { state.last_sequence + 1 } else { state.first_sequence };
                Ok(Bounds { first, last: state.last_sequence })
            }
        }
    }

    fn purge_below(&self, seq: u64) -> Result<(), StreamError> {
        let stream = self.stream.clone();
        match block(&self.handle, async move { stream.purge().sequence(seq).await }) {
            None => Err(unavailable("purge")),
            Some(Err(e)) => Err(StreamError::Unavailable(format!("purge below {seq}: {e}"))),
            Some(Ok(_)) => Ok(()),
        }
    }
}

/// The lease bucket on JetStream's key-value store.
#[derive(Clone)]
pub struct JsKv {
    handle: Handle,
    store: Store,
    /// A lease request's time limit: a quarter of the lease (a renewal that takes longer
    /// is as good as failed).
    limit: Duration,
}

impl JsKv {
    pub(crate) fn new(handle: Handle, store: Store, lease: Duration) -> Self {
        JsKv { handle, store, limit: (lease / 4).max(Duration::from_millis(50)) }
    }
}

impl LeaseKv for JsKv {
    fn read(&self) -> Observed {
        let store = self.store.clone();
        match block_for(&self.handle, self.limit, async move { store.entry(LEASE_KEY).await }) {
            Some(Ok(None)) => Observed::Absent,
            Some(Ok(Some(entry))) => match entry.operation {
                Operation::Put => {
                    // A value that is not ours still names a holder: it lapses like any lease.
                    let value = serde_json::from_slice::<LeaseValue>(&entry.value).unwrap_or(LeaseValue {
                        node_id: String::new(),
                        url: String::new(),
                        term: 0,
                    });
                    Observed::Held { revision: entry.revision, value }
                }
                Operation::Delete | Operation::Purge => Observed::Deleted { revision: entry.revision },
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the lease failed");
                Observed::Unknown
            }
            None => Observed::Unknown,
        }
    }

    fn write(&self, expected: Option<u64>, value: &LeaseValue) -> WriteResult {
        let Ok(json) = serde_json::to_vec(value) else { return WriteResult::Failed };
        let store = self.store.clone();
        let json = Bytes::from(json);
        match expected {
            None => match block_for(&self.handle, self.limit, async move { store.create(LEASE_KEY, json).await }) {
                Some(Ok(revision)) => WriteResult::Written(revision),
                Some(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => WriteResult::Refused,
                _ => WriteResult::Failed,
            },
            Some(revision) => {
                match block_for(&self.handle, self.limit, async move { store.update(LEASE_KEY, json, revision).await })
                {
                    Some(Ok(revision)) => WriteResult::Written(revision),
                    Some(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => WriteResult::Refused,
                    _ => WriteResult::Failed,
                }
            }
        }
    }

    fn delete(&self, expected: u64) -> WriteResult {
        let store = self.store.clone();
        match block_for(&self.handle, self.limit, async move {
            store.delete_expect_revision(LEASE_KEY, Some(expected)).await
        }) {
            Some(Ok(())) => WriteResult::Written(0),
            Some(Err(_)) => WriteResult::Refused,
            None => WriteResult::Failed,
        }
    }
}
