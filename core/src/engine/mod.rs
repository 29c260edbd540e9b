//! The engine: one writer thread that owns the state, fed by a bounded queue.
//!
//! Every change is a [`Command`] sent to the writer, which takes commands in
//! batches, applies each with [`apply`](crate::state::apply), makes the batch
//! durable, publishes it to the [`View`], hands its events to subscribers, and
//! only then answers the callers. Two drivers accepting one trip are two commands
//! in a queue: the second sees the first and is refused. There is no lock to
//! forget and no check-then-act window.
//!
//! Position reports sooner than a driver's minimum interval after its last published
//! position are coalesced: the state answers [`Outcome::Coalesced`] and changes nothing,
//! so the writer logs nothing and keeps the report (the newest per driver) until the
//! interval is up, then applies it unless a newer one came first.
//!
//! Reads that need the writer's own state (the drivers' R-tree, which readers cannot
//! touch) are queries sent on the same queue and answered right after the next commit,
//! when the state equals the published view: [`Engine::nearby_drivers`]. They are never
//! logged.
//!
//! Bounds: the queue holds at most [`EngineConfig::queue_capacity`] commands and
//! queries; a full queue answers [`Error::Overloaded`] at once instead of growing. A
//! batch holds at most [`EngineConfig::max_batch`] of them; at most one position per
//! driver is held back. Commands about one zone (a trip's creation, by its pickup; a
//! command about a hot trip) hold at most [`EngineConfig::zone_queue_share_pct`] of the
//! queue from submit to answer; one more is `Overloaded` for that zone only (`zones.rs`).
//!
//! [`Stats`] counts for operators; its histograms (every sync's latency, every batch's
//! size) are recorded by the writer with a few relaxed atomic adds, never a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};

use crate::clock::Timestamp;
use crate::command::{Actor, Command, Event, LocationReport, NewTrip, NewUser, Outcome};
use crate::driver::Driver;
use crate::error::{DomainError, Error, Result};
use crate::geo::LatLng;
use crate::history::History;
use crate::id::{TripId, UserId};
use crate::journal::{CheckpointPolicy, Journal, Recovery};
use crate::state::State;
use crate::trip::Trip;
use crate::user::User;
use crate::view::View;
use dispatch_storage::{CommandLog, MemLog};

mod archived;
mod audit;
#[cfg(test)]
mod cluster_tests;
mod config;
#[cfg(test)]
mod matching_tests;
#[cfg(test)]
mod positions_tests;
mod stats;
mod tracker;
mod writer;
mod zones;

pub use archived::EraseStep;
pub use audit::{AUDIT_WALK_MAX, AuditFilter, AuditPage};
pub use config::{DEFAULT_POSITIONS_DAYS, DEFAULT_ZONE_QUEUE_SHARE_PCT, EngineConfig};
pub use stats::Stats;
use tracker::start_tracker;
use writer::Writer;

type Reply = Box<dyn FnOnce(Result<Outcome>) + Send>;

struct Request {
    actor: Actor,
    command: Command,
    reply: Reply,
}

/// A read of the writer's own state (what readers cannot reach: the spatial index),
/// answered right after a commit — when the state is exactly the published view — and
/// never logged. `Err` when the engine shuts down first.
type Query = Box<dyn FnOnce(Result<&State>) + Send>;

enum Msg {
    Command(Box<Request>),
    /// Several commands in one message (at most [`MAX_SUBMIT_MANY`]): one queue slot and
    /// one wake-up of the writer instead of one each.
    Many(Vec<Request>),
    Query(Query),
    Shutdown,
}

/// Commands one [`Engine::submit_many_with`] may send at once: a message in the queue
/// holds at most this many, so the queue's memory stays bounded.
pub const MAX_SUBMIT_MANY: usize = 4096;

/// How long [`Engine::submit`] looks for the answer to a position report before it
/// sleeps: the writer answers one in microseconds after taking it, and a caller that
/// finds the answer awake saves a wake-up (tens of microseconds on a virtual machine).
/// It yields the core while it looks.
const ANSWER_AWAKE: std::time::Duration = std::time::Duration::from_micros(50);

/// A driver near a point, as [`Engine::nearby_drivers`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct NearbyDriver {
    /// The driver's record, as of the last durable batch.
    pub driver: Arc<Driver>,
    /// Great-circle (haversine) distance from the point, metres.
    pub distance_m: f64,
}

struct Shared {
    /// What readers see, as of the last durable batch: updated in place by the writer
    /// under a brief write lock after each batch, read under a brief read lock (an `Arc`
    /// clone), and cloned in O(1) into a snapshot a reader keeps without any lock
    /// ([`Engine::snapshot`]).
    view: RwLock<View>,
    /// Event subscribers (the gateway, the outbox). A subscriber whose buffer is
    /// full is dropped rather than allowed to stall the writer.
    subscribers: Mutex<Vec<Sender<Arc<[Event]>>>>,
    stats: Stats,
    /// Set while the log cannot be written: commands are refused, reads work.
    read_only: AtomicBool,
    /// Finished trips that left the hot state (data directories only).
    history: Option<Arc<History>>,
    /// Set by shutdown: subscribers' channels close for good.
    stopping: AtomicBool,
    /// Position batches the tracker could not record (it fell behind or the write failed).
    pub(crate) track_lost: AtomicU64,
    // ----- issue 20: P -----
    /// Each zone's share of the queue (`zones.rs`).
    zones: zones::ZoneQueue,
    // ----- issue 21 -----
    /// A cluster node's handshake with its lease keeper (`None`: one node, always leads).
    leadership: Option<Arc<crate::leadership::Leadership>>,
}

/// The dispatch engine. Cheap to share: put it in an `Arc`; every method takes `&self`.
///
/// ```
/// use dispatch_core::{Engine, EngineConfig, NewUser, Role, Actor};
///
/// let engine = Engine::open(EngineConfig::default())?;
/// let rider = engine.create_user(Actor::Admin, NewUser {
///     id: None, role: Role::Rider, name: "Amal".into(), phone: "+201001234567".into(), vehicle: None,
/// })?;
/// assert_eq!(engine.user(rider.id).map(|u| u.name.clone()), Some("Amal".to_string()));
/// engine.shutdown()?;
/// # Ok::<(), dispatch_core::Error>(())
/// ```
pub struct Engine {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<State>>>,
    /// Records positions into the history (data directories only).
    tracker: Mutex<Option<JoinHandle<()>>>,
    recovery: Recovery,
}

impl Engine {
    /// Starts an engine: on `config.data_dir` if set (recovering what is there),
    /// else in memory with an empty state.
    pub fn open(mut config: EngineConfig) -> Result<Engine> {
        match config.data_dir.take() {
            Some(dir) => {
                let policy = CheckpointPolicy {
                    every_records: config.checkpoint_every_records.max(1),
                    segment_bytes: config.wal_segment_bytes,
                };
                let (journal, state, recovery) =
                    Journal::open_dir(&dir, State::default(), policy, config.wrap_log.take(), config.log.take())?;
                Self::launch(config, journal, state, recovery)
            }
            // A shared log keeps its checkpoints and history in a data directory.
            None if config.log.is_some() => Err(Error::invalid("EngineConfig::log needs a data_dir")),
            None => Self::open_with_state(config, State::default()),
        }
    }

    /// Starts an in-memory engine over `state` (built by a test or a tool).
    pub fn open_with_state(config: EngineConfig, state: State) -> Result<Engine> {
        Self::open_with_log(config, Box::new(MemLog::new()), state)
    }

    /// Starts an engine over any command log: `base` plus every record the log
    /// already holds is the starting state. This is the seam where a replicated
    /// log takes the WAL's place, and where tests inject failing disks.
    pub fn open_with_log(config: EngineConfig, log: Box<dyn CommandLog>, base: State) -> Result<Engine> {
        if config.data_dir.is_some() {
            return Err(Error::invalid("a data_dir brings its own log: leave it unset with open_with_log"));
        }
        let policy =
            CheckpointPolicy { every_records: config.memory_checkpoint_every_records.max(1), segment_bytes: 0 };
        let (journal, state, recovery) = Journal::with_log(log, base, policy)?;
        Self::launch(config, journal, state, recovery)
    }

    fn launch(config: EngineConfig, journal: Journal, state: State, recovery: Recovery) -> Result<Engine> {
        config.rules.validate()?;
        if config.queue_capacity == 0 || config.max_batch == 0 {
            return Err(Error::invalid("queue_capacity and max_batch must be positive"));
        }
        // The journal's recovery checked the state's invariants (`Journal::replay`).
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let shared = Arc::new(Shared {
            view: RwLock::new(View::of(&state)),
            subscribers: Mutex::new(Vec::new()),
            stats: Stats::default(),
            read_only: AtomicBool::new(false),
            history: journal.history().cloned(),
            stopping: AtomicBool::new(false),
            track_lost: AtomicU64::new(0),
            zones: zones::ZoneQueue::new(config.queue_capacity, config.zone_queue_share_pct),
            leadership: config.leadership.clone(),
        });
        journal.report_counts(&state, &shared.stats.checkpoints);
        let rules = config.rules.clone();
        let retention = tracker::Retention { clock: Arc::clone(&config.clock), positions_days: config.positions_days };
        let mut writer = Writer::new(state, journal, rx, Arc::clone(&shared), config);
        writer.adopt_rules(rules)?;
        let handle = std::thread::Builder::new()
            .name("dispatch-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        let tracker = match &shared.history {
            Some(h) => Some(start_tracker(Arc::clone(&shared), Arc::clone(h), retention)?),
            None => None,
        };
        Ok(Engine { tx, shared, writer: Mutex::new(Some(handle)), tracker: Mutex::new(tracker), recovery })
    }

    /// What opening the data directory recovered.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// A cluster node's leadership handshake (`None`: one node on its own log).
    pub fn leadership(&self) -> Option<&Arc<crate::leadership::Leadership>> {
        self.shared.leadership.as_ref()
    }

    /// Whether this engine takes commands: always for one node, only while it leads for
    /// a node of a cluster. Side effects (gateway calls, notifications, webhooks) run only
    /// where this is true.
    pub fn is_leader(&self) -> bool {
        self.shared.leadership.as_ref().is_none_or(|l| l.is_leader())
    }

    /// Whether the log cannot be written just now (commands answer `ReadOnly`).
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only.load(Ordering::Relaxed)
    }

    /// Sends `command` as `actor` and waits for its outcome, which arrives only
    /// after the command is durable (location updates excepted).
    pub fn submit(&self, actor: Actor, command: Command) -> Result<Outcome> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        // A position report is answered as soon as it is applied, in microseconds: its
        // caller looks for the answer awake a little while before it sleeps (see
        // `ANSWER_AWAKE`); other commands wait for a sync or a batch.
        let awake = if command.is_durability_exempt() { ANSWER_AWAKE } else { std::time::Duration::ZERO };
        self.submit_with(actor, command, move |r| {
            let _ = tx.send(r);
        })?;
        let started = std::time::Instant::now();
        while started.elapsed() < awake {
            match rx.try_recv() {
                Ok(answer) => return answer,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(Error::ShutDown),
                Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        rx.recv().map_err(|_| Error::ShutDown)?
    }

    /// Sends `command` without waiting: `reply` is called on the writer thread
    /// with the outcome (keep it short — hand the result to a channel). Returns
    /// `Overloaded` at once if the queue is full, `ShutDown` after shutdown.
    pub fn submit_with(
        &self,
        actor: Actor,
        command: Command,
        reply: impl FnOnce(Result<Outcome>) + Send + 'static,
    ) -> Result<()> {
        refuse_writer_only(&command)?;
        // Given back when the writer answers (or the request is dropped unanswered).
        let slot = self.zone_slot(&command)?;
        let reply: Reply = Box::new(move |r| {
            let _slot = slot;
            reply(r);
        });
        self.send(Msg::Command(Box::new(Request { actor, command, reply })))
    }

    /// Sends several commands as one message, without waiting: each is applied, logged
    /// and answered exactly as if sent alone by [`Engine::submit_with`], in order, and
    /// `reply` gets every answer, in the same order, once the last is due (at once for
    /// position reports, after the batch is durable otherwise). One queue slot and one
    /// wake-up for all of them: what a gateway relaying many drivers' positions, or a
    /// client pipelining, wants. At most [`MAX_SUBMIT_MANY`] commands (more is `Invalid`);
    /// `Overloaded` at once if the queue is full, `ShutDown` after shutdown.
    pub fn submit_many_with(
        &self,
        commands: Vec<(Actor, Command)>,
        reply: impl FnOnce(Vec<Result<Outcome>>) + Send + 'static,
    ) -> Result<()> {
        if commands.len() > MAX_SUBMIT_MANY {
            return Err(Error::invalid(format!("at most {MAX_SUBMIT_MANY} commands at once")));
        }
        if commands.is_empty() {
            reply(Vec::new());
            return Ok(());
        }
        for (_, command) in &commands {
            refuse_writer_only(command)?;
        }
        // Every command's zone slot first: one zone at its share refuses the whole message.
        let slots = commands.iter().map(|(_, c)| self.zone_slot(c)).collect::<Result<Vec<_>>>()?;
        // Every answer lands in its slot; the last one to land hands them all over. Only
        // the writer thread touches this, one answer at a time.
        struct Gather<F> {
            answers: Vec<Option<Result<Outcome>>>,
            missing: usize,
            reply: Option<F>,
        }
        let n = commands.len();
        let gather =
            Arc::new(Mutex::new(Gather { answers: (0..n).map(|_| None).collect(), missing: n, reply: Some(reply) }));
        let requests = commands
            .into_iter()
            .zip(slots)
            .enumerate()
            .map(|(i, ((actor, command), slot))| {
                let gather = Arc::clone(&gather);
                let reply: Reply = Box::new(move |result| {
                    let _slot = slot;
                    let mut g = gather.lock();
                    g.answers[i] = Some(result);
                    g.missing -= 1;
                    if g.missing == 0
                        && let Some(reply) = g.reply.take()
                    {
                        let answers = std::mem::take(&mut g.answers);
                        drop(g);
                        reply(answers.into_iter().map(|a| a.unwrap_or(Err(Error::ShutDown))).collect());
                    }
                });
                Request { actor, command, reply }
            })
            .collect();
        self.send(Msg::Many(requests))
    }

    /// A slot in the share of the queue of the zone `command` is about, if it has one
    /// (`zones.rs`); `Overloaded` when that zone holds its share.
    fn zone_slot(&self, command: &Command) -> Result<Option<zones::ZoneSlot>> {
        if !zones::may_have_zone(command) {
            return Ok(None);
        }
        let zone = zones::zone_of(&self.shared.view.read(), command);
        match zone {
            Some(z) => self.shared.zones.take(z).map(Some).inspect_err(|_| {
                self.shared.stats.overloaded.fetch_add(1, Ordering::Relaxed);
            }),
            None => Ok(None),
        }
    }

    /// Whether the zone `command` is about (if any) holds less than its share of the queue
    /// just now: a caller that is the only one submitting can wait for this rather than
    /// be answered `Overloaded` (the whole queue's room is [`Engine::queue_depth`]'s).
    pub fn zone_has_room(&self, command: &Command) -> bool {
        if !zones::may_have_zone(command) {
            return true;
        }
        let zone = zones::zone_of(&self.shared.view.read(), command);
        zone.is_none_or(|z| self.shared.zones.has_room(z))
    }

    /// Commands about `zone` waiting in the queue or in the writer's batch just now.
    pub fn zone_queued(&self, zone: crate::id::ZoneId) -> u32 {
        self.shared.zones.queued(zone)
    }

    /// Commands refused `Overloaded` per zone because the zone held its share of the
    /// queue (`[limits] zone_queue_share_pct`), for every zone that had a command.
    pub fn zone_shed(&self) -> Vec<(crate::id::ZoneId, u64)> {
        self.shared.zones.shed()
    }

    /// What retention removed from the history since the engine started: positions, and
    /// chat messages of archived trips (zero without a data directory).
    pub fn retention_pruned(&self) -> (u64, u64) {
        self.shared.history.as_ref().map_or((0, 0), |h| h.retention_pruned())
    }

    /// How many recorded positions the history holds (read from the table's count; zero
    /// without a data directory).
    pub fn positions_held(&self) -> Result<u64> {
        self.shared.history.as_ref().map_or(Ok(0), |h| h.positions_held())
    }

    fn send(&self, msg: Msg) -> Result<()> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.shared.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                Err(Error::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::ShutDown),
        }
    }

    /// Creates a zone (as an admin).
    pub fn create_zone(&self, actor: Actor, zone: crate::zone::ZoneSpec) -> Result<Arc<crate::zone::Zone>> {
        match self.submit(actor, Command::CreateZone { id: None, zone: Box::new(zone) })? {
            Outcome::Zone(z) => Ok(z),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a user (as an admin, or the system for sign-up by OTP).
    pub fn create_user(&self, actor: Actor, user: NewUser) -> Result<Arc<User>> {
        match self.submit(actor, Command::CreateUser(user))? {
            Outcome::User(u) => Ok(u),
            other => Err(unexpected(other)),
        }
    }

    /// A driver goes online (optionally reporting a position) or offline.
    pub fn set_driver_status(&self, driver: UserId, online: bool, location: Option<LatLng>) -> Result<Arc<Driver>> {
        match self.submit(Actor::User(driver), Command::SetDriverStatus { online, location })? {
            Outcome::Driver(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// A driver's position. The one command answered before it is durable: a
    /// position is re-sent every few seconds, so a crash loses at most the last
    /// one, and drivers do not wait for an fsync per position. A batch of positions
    /// only is written at once and made durable with the next batch that needs a sync,
    /// within 10 ms at the latest (`POSITIONS_SYNC_DELAY`; every batch is synced on a
    /// cluster's leader); readers may see it before then. All reports of a batch are
    /// one log record (`Command::Positions`).
    ///
    /// A report within `location_min_interval_ms` of the driver's last published
    /// position is coalesced (answered `Ok` at once, not logged): the writer keeps the
    /// newest such report and publishes it when the interval is up, unless a newer one
    /// comes first. So positions are published (index, `DriverMoved`, history) at most
    /// once per interval per driver, and the newest is never left behind.
    pub fn update_location(&self, driver: UserId, report: LocationReport) -> Result<()> {
        self.submit(Actor::User(driver), Command::UpdateLocation(report)).map(|_| ())
    }

    /// Up to `limit` drivers at work (available or on a trip, any position age; offline
    /// and suspended drivers are not indexed) within `radius_m` metres of `point`, nearest
    /// first (ties by id), with their great-circle distance: a query of the writer's
    /// R-tree, answered right after a commit so it sees exactly the published view.
    /// `limit` is capped at [`crate::state::MAX_NEARBY_LIMIT`]; a radius that is not
    /// finite or beyond [`crate::state::MAX_NEARBY_RADIUS_M`] is `Invalid`. Waits for
    /// the writer: async callers use [`Engine::nearby_drivers_with`].
    pub fn nearby_drivers(&self, point: LatLng, radius_m: f64, limit: usize) -> Result<Vec<NearbyDriver>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.nearby_drivers_with(point, radius_m, limit, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| Error::ShutDown)?
    }

    /// [`Engine::nearby_drivers`] without waiting: `reply` is called on the writer thread
    /// (keep it short). `Overloaded` at once if the queue is full.
    pub fn nearby_drivers_with(
        &self,
        point: LatLng,
        radius_m: f64,
        limit: usize,
        reply: impl FnOnce(Result<Vec<NearbyDriver>>) + Send + 'static,
    ) -> Result<()> {
        let query: Query = Box::new(move |state: Result<&State>| {
            let found = state
                .and_then(|s| s.drivers_near(point, radius_m, limit).map_err(Error::from))
                .map(|near| near.into_iter().map(|(driver, distance_m)| NearbyDriver { driver, distance_m }).collect());
            reply(found);
        });
        self.send(Msg::Query(query))
    }

    /// For each of `categories`, the drivers who could be offered a trip of it from `point`
    /// at `now` (the filter of a dispatch round, within `search_radius_m`): how many (counted
    /// up to [`crate::trip::MAX_NEARBY_COUNTED`]) and the nearest (`State::supply_near`). A
    /// query of the writer's drivers' index, answered right after a commit; `reply` is called on the
    /// writer thread (keep it short). `Overloaded` at once if the queue is full.
    pub fn supply_near_with(
        &self,
        point: LatLng,
        categories: Vec<crate::user::Category>,
        now: Timestamp,
        reply: impl FnOnce(Result<Vec<(u32, Option<crate::geo::Nearby>)>>) + Send + 'static,
    ) -> Result<()> {
        let query: Query = Box::new(move |state: Result<&State>| {
            reply(state.map(|s| categories.iter().map(|c| s.supply_near(point, c, now)).collect()));
        });
        self.send(Msg::Query(query))
    }

    /// Asks `read` about the writer's state right after a commit (so it sees exactly the
    /// published view) and hands its answer to `reply`, on the writer thread: for what the
    /// view does not hold (a trip's reference, a share link). Both must be short.
    /// `Overloaded` at once if the queue is full; `reply` gets `ShutDown` if the engine
    /// stops first.
    pub fn query_with<R: 'static>(
        &self,
        read: impl FnOnce(&State) -> R + Send + 'static,
        reply: impl FnOnce(Result<R>) + Send + 'static,
    ) -> Result<()> {
        let query: Query = Box::new(move |state: Result<&State>| reply(state.map(read)));
        self.send(Msg::Query(query))
    }

    /// [`Engine::query_with`], waiting for the answer (async callers use `query_with`).
    pub fn query<R: Send + 'static>(&self, read: impl FnOnce(&State) -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.query_with(read, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| Error::ShutDown)?
    }

    /// A rider asks for a trip; it is offered to the nearest eligible drivers at once.
    pub fn create_trip(&self, rider: UserId, trip: NewTrip) -> Result<Arc<Trip>> {
        self.trip_command(Actor::User(rider), Command::CreateTrip(trip))
    }

    /// An offered driver takes the trip.
    pub fn accept(&self, driver: UserId, trip_id: TripId) -> Result<Arc<Trip>> {
        self.trip_command(Actor::User(driver), Command::AcceptTrip { trip_id })
    }

    /// An offered driver declines.
    pub fn decline(&self, driver: UserId, trip_id: TripId) -> Result<()> {
        self.submit(Actor::User(driver), Command::DeclineTrip { trip_id }).map(|_| ())
    }

    /// The assigned driver is at the pickup.
    pub fn arrived(&self, driver: UserId, trip_id: TripId) -> Result<Arc<Trip>> {
        self.trip_command(Actor::User(driver), Command::DriverArrived { trip_id })
    }

    /// The assigned driver starts the ride with the rider's pickup code.
    pub fn start(&self, driver: UserId, trip_id: TripId, pickup_code: &str) -> Result<Arc<Trip>> {
        self.trip_command(Actor::User(driver), Command::StartTrip { trip_id, pickup_code: pickup_code.to_owned() })
    }

    /// The assigned driver completes the ride.
    pub fn complete(&self, driver: UserId, trip_id: TripId, distance_m: Option<u32>) -> Result<Arc<Trip>> {
        self.trip_command(Actor::User(driver), Command::CompleteTrip { trip_id, distance_m, dropoff: None })
    }

    /// Cancels a trip: its rider or staff (terminal) or its assigned driver (back to searching),
    /// under the code `other` ([`Engine::cancel_with`] names one).
    pub fn cancel(&self, actor: Actor, trip_id: TripId, reason: &str) -> Result<Arc<Trip>> {
        self.cancel_with(actor, trip_id, crate::trip::CancelReason::Other, reason)
    }

    /// Cancels a trip as [`Engine::cancel`] does, recording `code` as its reason code.
    pub fn cancel_with(
        &self,
        actor: Actor,
        trip_id: TripId,
        code: crate::trip::CancelReason,
        reason: &str,
    ) -> Result<Arc<Trip>> {
        self.trip_command(actor, Command::CancelTrip { trip_id, code, reason: reason.to_owned() })
    }

    /// Fires every deadline due now (the writer also does this by itself when idle).
    pub fn tick(&self) -> Result<()> {
        self.submit(Actor::System, Command::Tick).map(|_| ())
    }

    fn trip_command(&self, actor: Actor, command: Command) -> Result<Arc<Trip>> {
        let trip_id = command.trip_id();
        match self.submit(actor, command)? {
            Outcome::Trip(t) => Ok(t),
            // Counted by the engine (the 5th locks the start), refused to the caller.
            Outcome::PickupCodeRefused { .. } => match trip_id {
                Some(id) => Err(Error::Domain(DomainError::WrongPickupCode(id))),
                None => Err(Error::internal("a pickup code refused for no trip")),
            },
            other => Err(unexpected(other)),
        }
    }

    /// Position batches the history could not record (see the tracker).
    pub fn positions_lost(&self) -> u64 {
        self.shared.track_lost.load(Ordering::Relaxed)
    }

    /// A user, as of the last durable batch.
    pub fn user(&self, id: UserId) -> Option<Arc<User>> {
        self.shared.view.read().user(id).cloned()
    }

    /// A driver's live record, as of the last durable batch.
    pub fn driver(&self, id: UserId) -> Option<Arc<Driver>> {
        self.shared.view.read().driver(id).cloned()
    }

    /// The trips a driver has pending offers of.
    pub fn offers_for(&self, driver: UserId) -> Vec<Arc<Trip>> {
        self.shared.view.read().offers_for(driver)
    }

    /// Runs `f` on the view, holding its read lock for the duration: for short reads (a
    /// few entities). A reader that walks the city (every driver, every trip) takes a
    /// [`Engine::snapshot`] instead, which holds no lock while it walks.
    pub fn read<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.shared.view.read())
    }

    /// A snapshot of the view as of the last durable batch, to keep as long as needed: an
    /// O(1) copy (the view's collections are persistent maps), taken under the read lock
    /// for the time of a few pointer copies. Walking it holds no lock, so however long a
    /// reader takes, the writer never waits for it; what the writer changes meanwhile it
    /// copies (only the paths it touches, and only while a snapshot shares them).
    pub fn snapshot(&self) -> Arc<View> {
        Arc::new(self.shared.view.read().clone())
    }

    /// Runs `f` on a fresh [`Engine::snapshot`]: for readers that walk the city (every
    /// driver, every trip, every account), which then hold no lock however long they take.
    pub fn read_snapshot<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.snapshot())
    }

    /// Receives every batch of events from now on. `capacity` batches may wait
    /// unread; a subscriber that falls further behind is disconnected (its
    /// receiver reports so) and must resynchronise from the view.
    pub fn subscribe(&self, capacity: usize) -> Receiver<Arc<[Event]>> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        self.shared.subscribers.lock().push(tx);
        rx
    }

    /// Commands waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// Commands the queue holds before callers are told `Overloaded`.
    pub fn queue_capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stops taking commands, finishes the queued ones, and stops the writer.
    /// Returns the final state (for tests and tools that inspect it).
    pub fn shutdown(self) -> Result<State> {
        self.stop()
    }

    fn stop(&self) -> Result<State> {
        let Some(handle) = self.writer.lock().take() else {
            return Err(Error::ShutDown);
        };
        // A blocking send: shutdown waits its turn behind queued commands.
        let _ = self.tx.send(Msg::Shutdown);
        let state = handle.join().map_err(|_| Error::internal("the writer thread panicked"));
        // Subscribers hear no more events; the tracker writes what it has and ends.
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.subscribers.lock().clear();
        if let Some(t) = self.tracker.lock().take() {
            let _ = t.join();
        }
        state
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Callers may not send the writer's own commands ([`Command::is_writer_only`]): an
/// embedder (Rust or C) cannot archive live trips or insert a trip it built itself.
fn refuse_writer_only(command: &Command) -> Result<()> {
    if command.is_writer_only() {
        return Err(Error::invalid(format!("{} is the writer's own command; callers may not send it", command.name())));
    }
    Ok(())
}

fn unexpected(outcome: Outcome) -> Error {
    Error::internal(format!("unexpected outcome {outcome:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    use proptest::prelude::*;

    use crate::error::DomainError;
    use crate::geo::haversine_m;
    use crate::id::RandomIds;
    use crate::user::{Category, Role, Vehicle};

    const T0: i64 = 1_700_000_000_000;

    /// An in-memory engine on `clock` with the demo zone. The writer never wakes by
    /// itself (a day-long idle wakeup): it acts on what the test sends, at the test's time.
    fn engine_on(clock: &ManualClock) -> Engine {
        let config = EngineConfig { idle_wakeup: Duration::from_secs(86_400), ..EngineConfig::default() }
            .with_clock(clock.clone())
            .with_ids(RandomIds::seeded(3));
        let engine = Engine::open(config).unwrap();
        engine.create_zone(Actor::Admin, crate::demo::cairo().unwrap()).unwrap();
        engine
    }

    fn new_driver(engine: &Engine, n: u64) -> UserId {
        let vehicle = Some(Vehicle::new(Category::new("economy").unwrap(), format!("D {n}")));
        let new = NewUser {
            id: None,
            role: Role::Driver,
            name: format!("driver {n}"),
            phone: format!("+2010{n:08}"),
            vehicle,
        };
        engine.create_user(Actor::Admin, new).unwrap().id
    }

    fn metres_north(m: f64) -> LatLng {
        LatLng::new(30.0444 + m / 111_195.08, 31.2357).unwrap()
    }

    fn report(point: LatLng) -> LocationReport {
        LocationReport { point, heading_deg: None, speed_mps: None }
    }

    fn moves_of(events: &Receiver<Arc<[Event]>>, driver: UserId) -> Vec<LatLng> {
        events
            .try_iter()
            .flat_map(|batch| batch.to_vec())
            .filter_map(|e| match e {
                Event::DriverMoved { driver_id, point, .. } if driver_id == driver => Some(point),
                _ => None,
            })
            .collect()
    }

    /// A reader walking the city holds no lock the writer needs: a command submitted (and
    /// waited for) from inside a walk completes — under a lock held for the walk it would
    /// wait for ever on the writer, which waits to publish — and the snapshot walked stays
    /// as it was while later reads see the change.
    #[test]
    fn a_reader_walking_a_snapshot_never_stalls_the_writer() {
        let clock = ManualClock::new(crate::clock::Timestamp::from_millis(T0));
        let engine = engine_on(&clock);
        let drivers: Vec<UserId> = (1..=50).map(|n| new_driver(&engine, n)).collect();
        let (walked, newcomer) = engine.read_snapshot(|v| {
            let walked = v.drivers().count();
            // The writer commits and publishes this while the walk is still going on.
            let newcomer = new_driver(&engine, 99);
            assert!(v.user(newcomer).is_none() && v.driver(newcomer).is_none(), "a snapshot never changes");
            (walked, newcomer)
        });
        assert_eq!(walked, drivers.len());
        assert!(engine.user(newcomer).is_some() && engine.read(|v| v.driver(newcomer).is_some()));
        let snapshot = engine.snapshot();
        engine.set_driver_status(drivers[0], true, Some(metres_north(0.0))).unwrap();
        assert_eq!(snapshot.driver(drivers[0]).map(|d| d.availability), Some(crate::driver::Availability::Offline));
        assert_eq!(engine.driver(drivers[0]).map(|d| d.availability), Some(crate::driver::Availability::Available));
        engine.shutdown().unwrap();
    }

    /// An embedder (Rust or C) cannot send the writer's own commands: an `Archive` could
    /// drop live trips, a `Restored` could put a trip it made up into the state. Refused
    /// before they reach the queue, alone, keyed or in a batch, and nothing changes.
    #[test]
    fn callers_cannot_send_the_writers_own_commands() {
        let clock = ManualClock::new(crate::clock::Timestamp::from_millis(T0));
        let engine = engine_on(&clock);
        let d = new_driver(&engine, 1);
        engine.set_driver_status(d, true, Some(metres_north(0.0))).unwrap();
        let rider = engine
            .create_user(
                Actor::Admin,
                NewUser { id: None, role: Role::Rider, name: "R".into(), phone: "+201099999999".into(), vehicle: None },
            )
            .unwrap();
        let here = metres_north(0.0);
        let there = metres_north(3_000.0);
        let new = dispatch_domain::testkit::cash_ride(here, there);
        let trip = engine.create_trip(rider.id, new).unwrap();
        // A made-up finished copy of the trip, handed back as if the history held it.
        let mut forged = (*trip).clone();
        forged.status = crate::trip::TripStatus::Cancelled;
        let restored = Command::Restored {
            trip: Arc::new(forged),
            command: Box::new(Command::RateTrip { trip_id: trip.id, stars: 5, comment: None }),
        };
        let archive = Command::Archive {
            trips: vec![(trip.id, trip.revision)],
            transfer_ids: Vec::new(),
            keys: Vec::new(),
            gateway_events: Vec::new(),
            alerts: Vec::new(),
            audit: Vec::new(),
        };
        let keyed = Command::Keyed {
            key: crate::command::IdempotencyKey { principal: Actor::Admin, key: "k".into(), request_hash: [0; 32] },
            command: Box::new(archive.clone()),
            archived: None,
        };
        let before = engine.stats().applied.load(Ordering::Relaxed);
        for command in [restored, archive, keyed] {
            let name = command.name();
            let refused = engine.submit(Actor::System, command.clone());
            assert!(matches!(refused, Err(Error::Domain(DomainError::Invalid(_)))), "{name}: {refused:?}");
            let many = engine.submit_many_with(vec![(Actor::Admin, Command::Tick), (Actor::System, command)], |_| {});
            assert!(matches!(many, Err(Error::Domain(DomainError::Invalid(_)))), "{name} in a batch: {many:?}");
        }
        assert_eq!(engine.stats().applied.load(Ordering::Relaxed), before, "nothing was applied");
        assert_eq!(engine.trip(trip.id).unwrap().status, crate::trip::TripStatus::Searching);
        engine.shutdown().unwrap();
    }

    #[test]
    fn many_commands_in_one_message_are_answered_each_in_order_as_if_sent_alone() {
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let engine = engine_on(&clock);
        let drivers: Vec<UserId> = (1..=3).map(|n| new_driver(&engine, n)).collect();
        let online =
            |d: UserId| (Actor::User(d), Command::SetDriverStatus { online: true, location: Some(metres_north(0.0)) });
        let mut commands: Vec<(Actor, Command)> = drivers.iter().map(|d| online(*d)).collect();
        // A refusal in the middle is answered in its place and stops nothing.
        commands.insert(1, (Actor::User(drivers[0]), Command::AcceptTrip { trip_id: TripId::from_raw(99).unwrap() }));
        let submit = |commands: Vec<(Actor, Command)>| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            engine.submit_many_with(commands, move |answers| drop(tx.send(answers))).unwrap();
            rx.recv_timeout(Duration::from_secs(10)).unwrap()
        };
        let answers = submit(commands);
        assert_eq!(answers.len(), 4);
        assert!(matches!(&answers[0], Ok(Outcome::Driver(d)) if d.id == drivers[0]));
        assert!(matches!(&answers[1], Err(Error::Domain(DomainError::NotFound { .. }))), "{:?}", answers[1]);
        assert!(matches!(&answers[2], Ok(Outcome::Driver(d)) if d.id == drivers[1]));
        assert!(matches!(&answers[3], Ok(Outcome::Driver(d)) if d.id == drivers[2]));
        // Every change is in the view, as after single submissions.
        let available =
            |d: &UserId| engine.driver(*d).is_some_and(|d| d.availability == crate::driver::Availability::Available);
        assert!(drivers.iter().all(available));
        // Position reports (answered before the batch is durable) and a second one within
        // the minimum interval, which is coalesced as it would be alone.
        clock.advance_secs(2);
        let answers = submit(vec![
            (Actor::User(drivers[2]), Command::UpdateLocation(report(metres_north(20.0)))),
            (Actor::User(drivers[0]), Command::UpdateLocation(report(metres_north(10.0)))),
            (Actor::User(drivers[2]), Command::UpdateLocation(report(metres_north(25.0)))),
        ]);
        assert!(
            matches!(answers[..], [Ok(Outcome::Done), Ok(Outcome::Done), Ok(Outcome::Coalesced { .. })]),
            "{answers:?}"
        );
        // Answered before their batch is published: a query is answered after it is.
        engine.query(|_| ()).unwrap();
        assert_eq!(engine.driver(drivers[2]).unwrap().fix.unwrap().point, metres_north(20.0));
        // Nothing to send is answered at once; too many at once is refused, and nothing of it applied.
        let (tx, rx) = crossbeam_channel::bounded(1);
        engine
            .submit_many_with(Vec::new(), move |a| {
                let _ = tx.send(a.len());
            })
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
        let too_many = (0..=MAX_SUBMIT_MANY).map(|_| online(drivers[0])).collect();
        assert!(matches!(engine.submit_many_with(too_many, |_| {}), Err(Error::Domain(DomainError::Invalid(_)))));
        engine.shutdown().unwrap();
    }

    #[test]
    fn location_coalescing_starved_position_events() {
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let engine = engine_on(&clock);
        let d = new_driver(&engine, 1);
        engine.set_driver_status(d, true, Some(metres_north(0.0))).unwrap();
        let events = engine.subscribe(1024);
        let applied_before = engine.stats().applied.load(Ordering::Relaxed);
        // 10 reports 500 ms apart (the first 250 ms after going online) against the
        // default 1000 ms minimum interval.
        clock.advance_millis(250);
        let points: Vec<LatLng> = (1..=10).map(|i| metres_north(f64::from(i) * 5.0)).collect();
        for (i, p) in points.iter().enumerate() {
            if i > 0 {
                clock.advance_millis(500);
            }
            engine.update_location(d, report(*p)).unwrap();
            engine.tick().unwrap(); // the report's batch is committed and its events out
        }
        // Published once an interval had passed since the last published one: the 3rd,
        // 5th, 7th and 9th; each coalesced report in between was superseded by the next.
        let moved = moves_of(&events, d);
        assert_eq!(moved, vec![points[2], points[4], points[6], points[8]]);
        assert_eq!(engine.stats().locations_coalesced.load(Ordering::Relaxed), 6);
        // The coalesced reports cost no log record: only the 4 published ones were logged.
        assert_eq!(engine.stats().applied.load(Ordering::Relaxed) - applied_before, 4);
        // The 10th, held back, is published when its interval is up, though the driver
        // reports nothing more.
        assert_eq!(engine.driver(d).unwrap().fix.unwrap().point, points[8]);
        clock.advance_millis(499);
        engine.tick().unwrap();
        assert_eq!(engine.driver(d).unwrap().fix.unwrap().point, points[8], "not before the interval");
        clock.advance_millis(1);
        engine.tick().unwrap();
        assert_eq!(engine.driver(d).unwrap().fix.unwrap().point, points[9]);
        assert_eq!(moves_of(&events, d), vec![points[9]]);
        let state = engine.shutdown().unwrap();
        state.check_invariants().unwrap();
    }

    #[test]
    fn a_held_back_position_survives_a_refused_report_and_yields_to_a_newer_one() {
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let engine = engine_on(&clock);
        let d = new_driver(&engine, 1);
        engine.set_driver_status(d, true, Some(metres_north(0.0))).unwrap();
        clock.advance_millis(300);
        engine.update_location(d, report(metres_north(5.0))).unwrap();
        // A jump is refused (and counted); the held-back report stays the newest.
        clock.advance_millis(300);
        assert!(matches!(
            engine.update_location(d, report(metres_north(50_000.0))),
            Err(Error::Domain(DomainError::ImplausibleLocation { .. }))
        ));
        assert_eq!(engine.stats().spoofing_suspected.load(Ordering::Relaxed), 1);
        clock.advance_millis(400);
        engine.tick().unwrap();
        assert_eq!(engine.driver(d).unwrap().fix.unwrap().point, metres_north(5.0));
        // Held back again, then overtaken by a position given with a status change: the
        // older report is dropped, never published over the newer one.
        clock.advance_millis(200);
        engine.update_location(d, report(metres_north(10.0))).unwrap();
        engine.set_driver_status(d, true, Some(metres_north(12.0))).unwrap();
        clock.advance_millis(2_000);
        engine.tick().unwrap();
        assert_eq!(engine.driver(d).unwrap().fix.unwrap().point, metres_north(12.0));
        engine.shutdown().unwrap();
    }

    /// Every driver at work, by brute force over the published view.
    fn scan(view: &View, center: LatLng, radius_m: f64, limit: usize) -> Vec<(UserId, f64)> {
        let mut all: Vec<(UserId, f64)> = view
            .drivers()
            .filter(|d| d.availability != crate::driver::Availability::Offline)
            .filter_map(|d| d.fix.map(|f| (d.id, haversine_m(center, f.point))))
            .filter(|(_, m)| *m <= radius_m)
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(limit);
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// `GET /v1/admin/drivers/nearby` scanned every driver with haversine; the R-tree
        /// query that replaced it answers exactly what that scan would.
        #[test]
        fn nearby_drivers_equals_a_brute_force_scan_of_the_view(
            drivers in proptest::collection::vec(((-3_000.0..3_000.0f64, -3_000.0..3_000.0f64), any::<bool>()), 0..40),
            center in (-2_000.0..2_000.0f64, -2_000.0..2_000.0f64),
            radius_m in prop_oneof![0.0..1_500.0f64, 0.0..10_000.0f64],
            limit in 0usize..12,
        ) {
            let clock = ManualClock::new(Timestamp::from_millis(T0));
            let engine = engine_on(&clock);
            let at = |(north, east): (f64, f64)| {
                LatLng::new(30.0444 + north / 111_195.08, 31.2357 + east / (111_195.08 * 30.0444f64.to_radians().cos()))
                    .unwrap()
            };
            for (n, (p, online)) in drivers.iter().enumerate() {
                let d = new_driver(&engine, n as u64 + 1);
                engine.set_driver_status(d, true, Some(at(*p))).unwrap();
                if !online {
                    engine.set_driver_status(d, false, None).unwrap();
                }
            }
            let center = at(center);
            let got: Vec<(UserId, f64)> = engine
                .nearby_drivers(center, radius_m, limit)
                .unwrap()
                .into_iter()
                .map(|n| (n.driver.id, n.distance_m))
                .collect();
            let expected = engine.read(|v| scan(v, center, radius_m, limit));
            prop_assert_eq!(got, expected);
            prop_assert!(matches!(engine.nearby_drivers(center, f64::INFINITY, 5), Err(Error::Domain(DomainError::Invalid(_)))));
            engine.shutdown().unwrap();
        }
    }

    #[test]
    fn every_sync_and_every_batch_is_in_the_histograms() {
        let engine = Engine::open(EngineConfig::default()).unwrap();
        for i in 0..3 {
            let user = crate::NewUser {
                id: None,
                role: crate::Role::Rider,
                name: format!("Rider {i}"),
                phone: format!("+20100000000{i}"),
                vehicle: None,
            };
            engine.create_user(Actor::Admin, user).unwrap();
        }
        let s = engine.stats();
        let (syncs, batches) = (s.syncs.load(Ordering::Relaxed), s.batches.load(Ordering::Relaxed));
        let sync_us = s.sync_us.snapshot();
        let sizes = s.batch_commands.snapshot();
        assert!(batches >= 3, "each create_user waits for its own batch");
        assert_eq!((sync_us.count, sizes.count), (syncs, batches));
        assert_eq!(sizes.sum, s.applied.load(Ordering::Relaxed) + s.refused.load(Ordering::Relaxed));
        engine.shutdown().unwrap();
    }
}
