//! The webhook worker: POSTs the due deliveries of outbound webhooks to their endpoints,
//! signed, and reports every try to the engine as a logged command.
//!
//! Owns the loop (beside the notification worker, in the process that writes) and the
//! order of next tries (`schedule::HookSchedule`: the writer keeps none): every
//! `interval` it takes the due deliveries from it — only the oldest pending delivery of
//! each endpoint and subject is ever due (`dispatch_core::hooks`), so a trip's events
//! reach an endpoint in order — renders each event (`{"id","type","created_at","data"}`,
//! the object as staff see it), signs the exact bytes it sends with the endpoint's secret
//! (`Dispatch-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the scheme
//! of incoming webhooks), POSTs, and submits `Command::WebhookAttempted` with the answer.
//!
//! Guarantees:
//! - at least once: a delivery stays pending until a report says otherwise, so a crash
//!   between the POST and the report sends it again after the restart, with the same
//!   `id` (receivers deduplicate by it);
//! - a 2xx is delivered; a timeout, no connection, `408`, `429` or `5xx` is retried
//!   (the endpoint's `Retry-After`, else 1 s doubling to 10 min with jitter drawn here and
//!   recorded in the report); any other answer (a redirect, a `4xx`) fails the delivery
//!   with its status;
//! - a delivery is in flight at most once in this process, and the engine refuses a
//!   second report for the same attempt;
//! - none is forgotten: after each try its line is looked at again (the delivery at its
//!   retry, or the next of the line), and the order is rebuilt whenever this process starts
//!   leading again;
//! - bounded: at most `concurrency` POSTs at once, `batch` deliveries read per pass, each
//!   exchange [`client::TIMEOUT`] and each answer's body [`client::MAX_ANSWER_BYTES`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use dispatch_core::clock::{Clock, SystemClock, Timestamp};
use dispatch_core::hooks::{Delivery, EventData, HookEvent, HookOutcome};
use dispatch_core::id::{EndpointId, EventId};
use dispatch_core::outbox::retry_delay_ms;
use dispatch_core::schedule::HookSchedule;
use dispatch_core::view::View;
use dispatch_core::{Command, Engine};

use crate::http::rfc3339;
use crate::notify::client::{self, Client, Version};
use crate::outbox::WorkerConfig;
use crate::render::{self, Cards, Viewer};

/// The header a delivery's signature travels in.
pub const SIGNATURE_HEADER: &str = "Dispatch-Signature";

/// Deliveries and failures (`dispatch_webhooks_*_total`).
#[derive(Debug, Default)]
pub struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    /// Deliveries an endpoint took (2xx).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Tries that failed (to be retried or given up).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// One POST to make: the delivery, where to, the key, and the body.
struct Job {
    delivery: Arc<Delivery>,
    url: String,
    secret: String,
    body: Vec<u8>,
}

/// The worker's shared parts.
struct Inner {
    engine: Arc<Engine>,
    counters: Arc<Counters>,
    in_flight: Mutex<HashSet<(EndpointId, EventId)>>,
    /// The heads of the lines by next try (`None`: to be built from the view at the next
    /// pass, as at start and after a spell as a follower).
    schedule: Mutex<Option<HookSchedule>>,
    /// A client per endpoint URL (its TLS set-up made once).
    clients: Mutex<HashMap<String, Arc<Client>>>,
    permits: Arc<Semaphore>,
    config: WorkerConfig,
}

impl Inner {
    fn new(engine: Arc<Engine>, counters: Arc<Counters>, config: WorkerConfig) -> Arc<Inner> {
        Arc::new(Inner {
            engine,
            counters,
            in_flight: Mutex::new(HashSet::new()),
            schedule: Mutex::new(None),
            clients: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
        })
    }

    fn client(&self, url: &str) -> Result<Arc<Client>, String> {
        if let Some(c) = self.clients.lock().get(url) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Client::new(client::Endpoint::parse("url", url)?, Version::Http1)?);
        let mut clients = self.clients.lock();
        // Endpoints are few; a URL no longer used is dropped when the map is refilled.
        if clients.len() >= 4 * dispatch_core::hooks::MAX_ENDPOINTS {
            clients.clear();
        }
        clients.insert(url.to_owned(), Arc::clone(&c));
        Ok(c)
    }
}

/// Runs the worker until `shutdown` turns `true` (spawn it on the server's runtime).
pub async fn run(
    engine: Arc<Engine>,
    counters: Arc<Counters>,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let inner = Inner::new(engine, counters, config);
    // POSTs in progress finish and are reported before it returns.
    // POSTs only where the engine leads (a follower of a cluster leaves them to the leader).
    crate::outbox::paced(config, &inner.permits, &mut shutdown, || async {
        if inner.engine.is_leader() {
            pass(&inner).await
        } else {
            // Another node POSTs meanwhile: what this one knew of the order goes stale.
            *inner.schedule.lock() = None;
            0
        }
    })
    .await;
}

/// The body of `event`: `{"id","type","created_at","data"}`, the object as staff see it.
pub fn body(view: &View, event: &HookEvent) -> Vec<u8> {
    let data = match &event.data {
        EventData::Trip(t) => {
            serde_json::to_value(render::trip(t, Viewer::Staff, &Cards::of(view, t))).unwrap_or_default()
        }
        EventData::Alert(a) => render::alert(a),
        EventData::User(u) => render::user(u),
        EventData::Application(a) => render::application(a),
        EventData::Payout(p) => render::payout(p),
    };
    let v = json!({
        "id": event.id,
        "type": event.kind.as_str(),
        "created_at": rfc3339(event.created_at),
        "data": data,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Starts a POST for every due delivery not in flight; returns how many it started.
async fn pass(inner: &Arc<Inner>) -> usize {
    let now = SystemClock.now();
    let jobs: Vec<Job> = crate::outbox::in_order(
        &inner.engine,
        &inner.schedule,
        |v| HookSchedule::of(v.hooks()),
        |schedule, v| {
            schedule.follow(v.hooks());
            schedule
                .take_due(v.hooks(), now, inner.config.batch)
                .into_iter()
                // One in flight (taken before a rebuild of the order) is not rendered
                // again while its POST runs: its line is looked at when that try ends.
                .filter(|d| !inner.in_flight.lock().contains(&(d.endpoint_id, d.event.id)))
                .filter_map(|d| {
                    let e = v.hooks().endpoint(d.endpoint_id)?;
                    let body = body(v, &d.event);
                    Some(Job { url: e.url.clone(), secret: e.secret.clone(), body, delivery: d })
                })
                .collect()
        },
    );
    let mut started = 0;
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let key = (job.delivery.endpoint_id, job.delivery.event.id);
        if !inner.in_flight.lock().insert(key) {
            continue;
        }
        let Ok(permit) = Arc::clone(&inner.permits).acquire_owned().await else {
            // Closing: what was taken and not started goes back in the order.
            inner.in_flight.lock().remove(&key);
            for job in std::iter::once(job).chain(jobs) {
                put_back(inner, &job.delivery, Some(job.delivery.next_attempt_at));
            }
            break;
        };
        started += 1;
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            let outcome = post(&inner, &job).await;
            let again = match &outcome {
                HookOutcome::Retry { next_attempt_at, .. } => Some(*next_attempt_at),
                _ => None,
            };
            let applied = report(&inner, &job.delivery, outcome).await;
            inner.in_flight.lock().remove(&key);
            // Its line is looked at again; a retry comes back at its time, a report the
            // engine did not take (the delivery moved on, or the engine is closing) at once.
            put_back(&inner, &job.delivery, if applied { again } else { Some(SystemClock.now()) });
            drop(permit);
        });
    }
    started
}

/// After a try of `delivery` (or none): its line is looked at again, and the delivery put
/// back at `at` if given (unless the order is to be rebuilt anyway).
fn put_back(inner: &Inner, delivery: &Delivery, at: Option<Timestamp>) {
    if let Some(schedule) = inner.schedule.lock().as_mut() {
        schedule.tried(delivery);
        if let Some(at) = at {
            schedule.put(delivery.endpoint_id, delivery.event.id, at);
        }
    }
}

/// POSTs one delivery; what to report.
async fn post(inner: &Inner, job: &Job) -> HookOutcome {
    let retry = |status_code: Option<u16>, error: String, after: Option<Duration>| {
        let attempt = job.delivery.attempts.saturating_add(1);
        let wait = after.unwrap_or_else(|| Duration::from_millis(retry_delay_ms(attempt, rand::random::<u64>())));
        let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
        HookOutcome::Retry { status_code, error, next_attempt_at: SystemClock.now().plus_millis(ms) }
    };
    let client = match inner.client(&job.url) {
        Ok(c) => c,
        Err(e) => return HookOutcome::Rejected { status_code: None, error: e },
    };
    let t = SystemClock.now().as_millis().div_euclid(1000);
    let signature = dispatch_core::payment::sign_timestamped(job.secret.as_bytes(), t, &job.body);
    let event_id = job.delivery.event.id.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("user-agent", concat!("dispatch-webhooks/", env!("CARGO_PKG_VERSION"))),
        (SIGNATURE_HEADER, signature.as_str()),
        ("dispatch-event-id", event_id.as_str()),
    ];
    match client.send(hyper::Method::POST, "", &headers, job.body.clone()).await {
        Ok(reply) => match reply.status {
            200..=299 => HookOutcome::Delivered { status_code: reply.status },
            408 | 429 | 500..=599 => {
                retry(Some(reply.status), format!("the endpoint answered {}", reply.status), reply.retry_after())
            }
            status => {
                HookOutcome::Rejected { status_code: Some(status), error: format!("the endpoint answered {status}") }
            }
        },
        Err(e) => retry(None, e, None),
    }
}

/// Submits the report and counts it. A refusal (the delivery moved on: a duplicate, its
/// window over, its endpoint removed) needs nothing more; the engine shutting down leaves
/// it pending, to be sent again after the restart.
async fn report(inner: &Inner, delivery: &Delivery, outcome: HookOutcome) -> bool {
    let counter = match &outcome {
        HookOutcome::Delivered { .. } => &inner.counters.delivered,
        _ => &inner.counters.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let command = Command::WebhookAttempted {
        endpoint_id: delivery.endpoint_id,
        event_id: delivery.event.id,
        attempt: delivery.attempts.saturating_add(1),
        outcome,
    };
    crate::outbox::submit_report(&inner.engine, command, &delivery.event.id).await
}

/// How many deliveries are pending, and when the oldest one's event happened (metrics).
pub fn queue(engine: &Engine) -> (usize, Option<Timestamp>) {
    engine.read(|v| (v.hooks().pending(), v.hooks().oldest_pending()))
}
