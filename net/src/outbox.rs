//! The delivery worker: sends the notification outbox's due items through the providers
//! and reports every try to the engine as a logged command.
//!
//! Owns the loop (like the payment worker's, in the process that writes — today the only
//! one) and the order of next tries (`schedule::Schedule`: the writer keeps none, so an item
//! costs it no more than its own inserts): every `interval` it takes in the items made
//! since its last look from the view, takes the ones whose `next_attempt_at` has come,
//! renders each (`dispatch_core::templates`, in the recipient's language, with
//! what the server knows at send time and the state does not: a [`LiveHook`]), finds
//! its provider through a [`Route`], sends, and submits
//! `Command::NotificationAttempted` with the answer — for a retry, with the next try's
//! time it chose (backoff from 1 s doubling to 10 min with jitter drawn here, or the
//! provider's `Retry-After`), so the log holds the choice and replay draws nothing.
//!
//! Guarantees:
//! - at least once: an item stays pending until a report says otherwise, so a crash
//!   between the send and the report sends it again after the restart; the provider's
//!   idempotency key is the item's id (`Message::id`), where the provider takes one;
//! - an item is in flight at most once in this process (a set of ids in flight), and the
//!   engine refuses a second report for the same attempt;
//! - none is forgotten: an item taken from the order is put back after its try (at the
//!   retry's time, or at once when the engine did not take the report), and the order is
//!   rebuilt from the view whenever this process starts leading again;
//! - bounded: at most `concurrency` sends at once and `batch` items read per pass;
//! - a channel without a provider fails its items at once (`Rejected`, "not
//!   configured"), as does a push whose device was removed since the item was made.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Semaphore, oneshot, watch};

use dispatch_core::clock::{Clock, SystemClock, Timestamp};
use dispatch_core::id::NotificationId;
use dispatch_core::outbox::{AttemptOutcome, Channel, Notification, Platform, Target, retry_delay_ms};
use dispatch_core::schedule::Schedule;
use dispatch_core::templates::Live;
use dispatch_core::view::View;
use dispatch_core::{Actor, Command, Engine};

use crate::notify::{Message, Provider, Recipient, SendOutcome};

/// Most one try of one item may take, all its provider's exchanges together; then it is
/// retried later.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Most the [`LiveHook`] may take for one item (the route provider's own timeout is 1 s);
/// then the item is sent without what it would have added.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which provider carries a message to a recipient; `None`: none is configured for it
/// (`serve` routes through `notify::Providers::for_recipient`).
pub type Route = Arc<dyn Fn(&Recipient) -> Option<Arc<dyn Provider>> + Send + Sync>;

/// The future a [`LiveHook`] answers with.
pub type LiveFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Live> + Send>>;

/// What the server knows at send time and the item does not (`templates::Live`: the
/// driver's ETA in a `trip_accepted` push), asked just before an item is rendered, on
/// every try (a retry says the ETA of its own time). `serve` asks the trip's ETA of
/// `eta::Etas`, which asks the route provider at most every 10 s per trip.
pub type LiveHook = Arc<dyn Fn(&Notification) -> LiveFuture + Send + Sync>;

/// The hook of a worker that knows nothing more than the items (tests at the engine level).
pub fn no_live() -> LiveHook {
    Arc::new(|_| Box::pin(std::future::ready(Live::default())))
}

/// How the worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// How often it looks for due items.
    pub interval: Duration,
    /// Sends at once, at most.
    pub concurrency: usize,
    /// Items read per pass, at most.
    pub batch: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig { interval: Duration::from_millis(200), concurrency: 32, batch: 512 }
    }
}

/// Deliveries and failures per channel (`dispatch_notifications_*_total`).
#[derive(Debug, Default)]
pub struct Counters {
    delivered: [AtomicU64; 3],
    failed: [AtomicU64; 3],
}

fn slot(channel: Channel) -> usize {
    match channel {
        Channel::Push => 0,
        Channel::Sms => 1,
        Channel::Email => 2,
    }
}

impl Counters {
    /// Items a provider accepted, on `channel`.
    pub fn delivered(&self, channel: Channel) -> u64 {
        self.delivered[slot(channel)].load(Ordering::Relaxed)
    }

    /// Tries that failed (retried or given up), on `channel`.
    pub fn failed(&self, channel: Channel) -> u64 {
        self.failed[slot(channel)].load(Ordering::Relaxed)
    }
}

/// The worker's shared parts.
struct Inner {
    engine: Arc<Engine>,
    route: Route,
    live: LiveHook,
    counters: Arc<Counters>,
    in_flight: Mutex<HashSet<NotificationId>>,
    /// The pending items by next try (`None`: to be built from the view at the next pass,
    /// as at start and after a spell as a follower).
    schedule: Mutex<Option<Schedule>>,
    permits: Arc<Semaphore>,
    config: WorkerConfig,
}

impl Inner {
    fn new(
        engine: Arc<Engine>,
        route: Route,
        live: LiveHook,
        counters: Arc<Counters>,
        config: WorkerConfig,
    ) -> Arc<Inner> {
        Arc::new(Inner {
            engine,
            route,
            live,
            counters,
            in_flight: Mutex::new(HashSet::new()),
            schedule: Mutex::new(None),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
        })
    }
}

/// Runs the worker until `shutdown` turns `true` (spawn it on the server's runtime).
pub async fn run(
    engine: Arc<Engine>,
    route: Route,
    live: LiveHook,
    counters: Arc<Counters>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let inner = Inner::new(engine, route, live, counters, config);
    // Sends only where the engine leads (a follower of a cluster leaves them to the leader).
    paced(config, &inner.permits, &mut shutdown, || async {
        if inner.engine.is_leader() {
            pass(&inner).await
        } else {
            // Another node sends meanwhile: what this one knew of the order goes stale.
            *inner.schedule.lock() = None;
            0
        }
    })
    .await;
}

/// Runs `pass` every `config.interval` until `shutdown` turns `true`, then waits for the
/// sends in progress (each holds one of `permits`), so none is cut off between its send
/// and its report. The loop of both workers (this one and `crate::hooks`).
pub(crate) async fn paced<F, Fut>(
    config: WorkerConfig,
    permits: &Semaphore,
    shutdown: &mut watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    loop {
        if *shutdown.borrow() {
            break;
        }
        pass().await;
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => {}
        }
    }
    let _ = permits.acquire_many(u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX)).await;
}

/// Sends every item due now (up to `batch`), at most `concurrency` at once, and waits for
/// them all: one pass, for tests.
pub async fn run_once(engine: Arc<Engine>, route: Route, counters: Arc<Counters>, config: WorkerConfig) -> usize {
    run_once_with(engine, route, no_live(), counters, config).await
}

/// [`run_once`] with a [`LiveHook`].
pub async fn run_once_with(
    engine: Arc<Engine>,
    route: Route,
    live: LiveHook,
    counters: Arc<Counters>,
    config: WorkerConfig,
) -> usize {
    let inner = Inner::new(engine, route, live, counters, config);
    let n = pass(&inner).await;
    let _ = inner.permits.acquire_many(u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX)).await;
    n
}

/// Starts a send for every due item not in flight; returns how many it started.
async fn pass(inner: &Arc<Inner>) -> usize {
    let now = SystemClock.now();
    let due: Vec<(Arc<Notification>, Option<Recipient>)> = in_order(
        &inner.engine,
        &inner.schedule,
        |v| Schedule::of(v.outbox()),
        |schedule, v| {
            schedule.follow(v.outbox());
            schedule
                .take_due(v.outbox(), now, inner.config.batch)
                .into_iter()
                .map(|n| {
                    let to = match (&n.target, n.user_id) {
                        (Target::Device(d), Some(u)) => v.outbox().device(u, *d).map(|d| match d.platform {
                            Platform::Fcm => Recipient::Fcm(d.token.clone()),
                            Platform::Apns => Recipient::Apns(d.token.clone()),
                        }),
                        (Target::Device(_), None) => None,
                        (Target::Phone(p), _) => Some(Recipient::Phone(p.clone())),
                        (Target::Email(e), _) => Some(Recipient::Email(e.clone())),
                    };
                    (n, to)
                })
                .collect()
        },
    );
    let mut started = 0;
    let mut due = due.into_iter();
    while let Some((item, to)) = due.next() {
        // In flight already (taken before a rebuild of the order): it is put back when
        // that try ends.
        if !inner.in_flight.lock().insert(item.id) {
            continue;
        }
        let Ok(permit) = Arc::clone(&inner.permits).acquire_owned().await else {
            // Closing: what was taken and not started goes back in the order.
            inner.in_flight.lock().remove(&item.id);
            for item in std::iter::once(item).chain(due.map(|(item, _)| item)) {
                put_back(inner, &item, item.next_attempt_at);
            }
            break;
        };
        started += 1;
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            let outcome = deliver(&inner, &item, to).await;
            let again = match &outcome {
                AttemptOutcome::Retry { next_attempt_at, .. } => Some(*next_attempt_at),
                _ => None,
            };
            let applied = report(&inner, &item, outcome).await;
            inner.in_flight.lock().remove(&item.id);
            // A retry comes back at its time; a report the engine did not take (the item
            // moved on, or the engine is closing) at once, to be looked at again.
            match (applied, again) {
                (true, None) => {}
                (true, Some(at)) => put_back(&inner, &item, at),
                (false, _) => put_back(&inner, &item, SystemClock.now()),
            }
            drop(permit);
        });
    }
    started
}

/// Runs `take` on a worker's order of next tries (built by `build` if there is none)
/// and on the view, the order locked before the view is read: a try put back before this
/// call was reported before it, so the view `take` reads holds that report. How both
/// workers (this one and `crate::hooks`) take their due items.
pub(crate) fn in_order<S, R>(
    engine: &Engine,
    order: &Mutex<Option<S>>,
    build: impl FnOnce(&View) -> S,
    take: impl FnOnce(&mut S, &View) -> R,
) -> R {
    let mut order = order.lock();
    engine.read_snapshot(|v| take(order.get_or_insert_with(|| build(v)), v))
}

/// Puts `item` back in the order at `at` (unless the order is to be rebuilt anyway).
fn put_back(inner: &Inner, item: &Notification, at: Timestamp) {
    if let Some(schedule) = inner.schedule.lock().as_mut() {
        schedule.put(item.id, at);
    }
}

/// Renders and sends one item; what to report.
async fn deliver(inner: &Inner, item: &Notification, to: Option<Recipient>) -> AttemptOutcome {
    let Some(to) = to else {
        return AttemptOutcome::Rejected { error: "the device was removed".into() };
    };
    let Some(provider) = (inner.route)(&to) else {
        return AttemptOutcome::Rejected { error: format!("{} not configured", provider_name(&to)) };
    };
    // Bounded: what the hook adds is worth less than the message (its phrases are optional).
    let live = tokio::time::timeout(LIVE_TIMEOUT, (inner.live)(item)).await.unwrap_or_default();
    let rendered = dispatch_core::templates::render_live(item.kind, &item.params, live);
    let mut data = BTreeMap::new();
    data.insert("kind".to_owned(), item.kind.as_str().to_owned());
    data.insert("notification_id".to_owned(), item.id.to_string());
    if let Some(t) = item.params.trip_id {
        data.insert("trip_id".to_owned(), t.to_string());
    }
    let message = Message { id: item.id.to_string(), to, title: rendered.title, body: rendered.body, data };
    // A provider bounds each of its exchanges, but one send may make several (FCM: a
    // token, the send, a new token, the send again): the whole try is bounded here.
    let answer = tokio::time::timeout(SEND_TIMEOUT, provider.send(&message)).await.unwrap_or_else(|_| {
        SendOutcome::Retry { error: format!("no answer in {} s", SEND_TIMEOUT.as_secs()), retry_after: None }
    });
    match answer {
        SendOutcome::Delivered { provider_id } => AttemptOutcome::Delivered { provider_id },
        SendOutcome::Retry { error, retry_after } => {
            let attempt = item.attempts.saturating_add(1);
            let backoff = Duration::from_millis(retry_delay_ms(attempt, rand::random::<u64>()));
            let wait = retry_after.unwrap_or(backoff);
            let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            AttemptOutcome::Retry { error, next_attempt_at: SystemClock.now().plus_millis(ms) }
        }
        SendOutcome::InvalidToken { error } => AttemptOutcome::InvalidToken { error },
        SendOutcome::Rejected { error } => AttemptOutcome::Rejected { error },
    }
}

fn provider_name(to: &Recipient) -> &'static str {
    match to {
        Recipient::Fcm(_) => "fcm",
        Recipient::Apns(_) => "apns",
        Recipient::Phone(_) => "sms",
        Recipient::Email(_) => "email",
    }
}

/// Submits the report and counts it; whether the engine applied it. A refusal (the item
/// moved on: a duplicate, its window over) needs nothing more; the engine shutting down
/// leaves it pending, to be sent again after the restart.
async fn report(inner: &Inner, item: &Notification, outcome: AttemptOutcome) -> bool {
    let counter = match &outcome {
        AttemptOutcome::Delivered { .. } => &inner.counters.delivered,
        _ => &inner.counters.failed,
    };
    counter[slot(item.channel)].fetch_add(1, Ordering::Relaxed);
    let command = Command::NotificationAttempted { id: item.id, attempt: item.attempts.saturating_add(1), outcome };
    submit_report(&inner.engine, command, &item.id).await
}

/// Submits a worker's report of one try (`NotificationAttempted`, `WebhookAttempted`) as
/// the system and waits for its answer. A refusal (the item moved on: a duplicate, its
/// window over) is logged at debug and needs nothing more; one not submitted (the engine
/// shutting down) leaves the item pending, to be tried again after the restart. Whether
/// the engine applied it.
pub(crate) async fn submit_report(engine: &Engine, command: Command, id: &(impl std::fmt::Display + Sync)) -> bool {
    let name = command.name();
    let (tx, rx) = oneshot::channel();
    let sent = engine.submit_with(Actor::System, command, move |r| {
        let _ = tx.send(r);
    });
    match sent {
        Ok(()) => match rx.await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::debug!(%id, error = %e, report = name, "report refused");
                false
            }
            Err(_) => false,
        },
        Err(e) => {
            tracing::warn!(%id, error = %e, report = name, "report not submitted");
            false
        }
    }
}

/// When the oldest pending item was made, and how many are pending (for the metrics).
pub fn queue(engine: &Engine) -> (usize, Option<Timestamp>) {
    engine.read(|v| (v.outbox().pending(), v.outbox().oldest_pending()))
}
