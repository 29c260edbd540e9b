//! # dispatch-server
//!
//! `dispatchd serve`: the HTTP API and the WebSocket gateway of dispatch (API.md), on
//! hyper 1.x and tokio with a hand-written router — no web framework. Thin by design:
//! parse and validate, authenticate, rate-limit, turn a request into an engine command
//! or a read of the engine's view, and map engine errors to the contract.
//!
//! ## Layout
//! From the top down (each module names only modules below it):
//! - [`listener`]: the serving loop: accepts connections (admitted, TLS, write deadline),
//!   runs the ticker and the WebSocket fan-out beside them, shuts down gracefully.
//! - [`api`]: the request pipeline and the handlers, one file per resource;
//!   [`api::routes`] is the route table (one place says every path, who may call it and
//!   its limits); [`api::openapi`] the OpenAPI 3.1 document (`net/openapi.json`,
//!   `GET /v1/openapi.json`), equal to the route table by test, and the check of request
//!   bodies against it.
//! - [`ws`]: `GET /v1/ws`: the upgrade, each socket's reader and writer, client frames,
//!   the tasks that feed the hub from the engine.
//! - [`server`]: [`server::App`], the state every handler and socket shares (engine
//!   handle, keys, limits, metrics, hub, routes, the shutdown signal).
//! - [`hub`]: every open socket, its bounded outbox, the routing of engine events to
//!   sockets, presence reports kept until the engine takes them, the socket caps.
//! - [`admission`]: which connections are served: the descriptor budget from
//!   `RLIMIT_NOFILE`, the per-IP cap, the probe lane that keeps `/healthz` answering.
//! - [`tls`]: `[server] tls_cert`/`tls_key` read into the TLS acceptor; HSTS.
//! - [`timed_io`]: a connection whose output must be taken within the write timeout.
//! - [`proxy`]: trusted proxies and the client address they forward.
//! - [`config`]: the TOML file, flags over it, secrets from the environment.
//! - [`wire`]: input shapes HTTP and WebSocket both parse (a driver's position).
//! - [`http`]: the error body and status table, strict JSON, body limits, queries,
//!   cursors, RFC 3339 times.
//! - [`render`]: the JSON shapes of users, drivers, trips, offers, zones.
//! - [`auth`]: signed tokens, the admin token, roles → permissions.
//! - [`gateways`]: the payment gateways whose webhooks are taken: signature scheme,
//!   secrets and body format of each.
//! - [`ratelimit`]: GCRA buckets with bounded memory and an injected clock.
//! - [`hex`]: hex encoding and random hex, shared by config, HTTP and tokens.
//! - [`documents`]: driver documents on disk, by content hash, written whole or not at all.
//! - [`metrics`]: Prometheus text for `/metrics` (with `process_*` and build info).
//! - [`healthcheck`]: `dispatchd healthcheck`, one `GET /healthz` for container health checks.
//! - [`sms`]: where OTP codes are sent (a sink, or Twilio); also the SMS notification provider.
//! - [`notify`]: the notification providers (FCM, APNs, Twilio, SMTP) the outbox's worker
//!   sends through, built from `[notify]`, `[sms]`, `[email]` and secrets at start.
//! - [`osrm`]: routes from an OSRM service (timeout, circuit breaker, cache), the straight
//!   line as the answer of last resort.
//! - [`cluster`]: a node of a cluster (issue 21): writes forwarded to the leader, the
//!   `GET /v1/cluster` body, the `dispatch_cluster_*` metrics, leader-only work.
//! - [`error`]: the crate's one error type (start-up and fatal errors).
//! - [`fault`]: the test-only `--fault-file` hook (a WAL that fails like a full disk).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod compress;
pub mod config;
pub mod cors;
pub mod documents;
pub mod eraser;
pub mod error;
pub mod eta;
pub mod fault;
pub mod gateways;
pub mod healthcheck;
pub mod hex;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod osrm;
pub mod outbox;
pub mod proxy;
pub mod ratelimit;
pub mod render;
pub mod server;
pub mod sms;
pub mod staff;
pub mod stripe;
pub mod timed_io;
pub mod tls;
pub mod totp;
pub mod wire;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::Error;

use dispatch_core::{Engine, EngineConfig};

/// `dispatchd serve`'s options (flags; `None` leaves the file's or the default value).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--dev`.
    pub dev: bool,
    /// `--demo` (with `--dev`): drivers simulated.
    pub demo_drivers: Option<u32>,
    /// WebSocket heartbeat and write deadline (hidden flags, for tests).
    pub ws_timing: server::WsTiming,
    /// The sim gateway fails every call (hidden flag, for tests; `--dev` only).
    pub sim_gateway_down: bool,
    /// The payment worker's retries and backoff.
    pub payments: dispatch_core::payment::WorkerConfig,
    /// The engine's queue capacity (hidden flag, for tests of `503 overloaded`).
    pub queue_capacity: Option<usize>,
    /// While this file exists, WAL writes fail as on a full disk (hidden flag, for tests
    /// of `503 read_only`).
    pub fault_file: Option<PathBuf>,
    /// The engine's clock runs this many seconds ahead of the system's (hidden flag, for
    /// tests of what expires; `--dev` only).
    pub clock_offset_s: i64,
    /// The rate limiter's clock is driven by this file instead of time (hidden flag, for
    /// tests of the limiter's arithmetic; `--dev` only; see [`fault::limiter_clock`]).
    pub limiter_clock: Option<PathBuf>,
    /// `--cluster`, `--node-id`, `--advertise` (over `[cluster]`).
    pub cluster: config::ClusterFlags,
    /// Records the cluster's leader keeps in the stream below its checkpoint (hidden
    /// flag `--cluster-retain-records`, for tests; `None`: `dispatch_cluster::RETAIN_RECORDS`).
    pub cluster_retain_records: Option<u64>,
}

/// Runs the server until SIGTERM or ctrl-c, then shuts down gracefully.
pub fn serve(opts: ServeOptions) -> Result<(), Error> {
    let mut config = config::Config::load(opts.config.as_deref())?;
    init_logging(&config.log)?;
    if let Some(l) = &opts.listen {
        config.server.listen = l.clone();
    }
    if let Some(d) = &opts.data_dir {
        config.store.data_dir = d.clone();
    }
    if opts.demo_drivers.is_some() && !opts.dev {
        return Err(Error::Setting("--demo needs --dev".into()));
    }
    // ----- issue 21 -----
    // Checked before anything opens a file or a connection (exit 2 on a bad setting).
    config.cluster = config.cluster.clone().with_flags(&opts.cluster);
    let cluster_config = config.cluster.resolve().map_err(Error::Setting)?;
    let secrets =
        config::Secrets::from_env(|k| std::env::var(k).ok(), opts.dev, config.gateways.keys().map(String::as_str))?;
    let sms = Arc::new(sms::SmsSink::from_config(&config.sms, |k| std::env::var(k).ok(), opts.dev)?);
    // Built (and every provider's secret read and checked) before anything opens a file:
    // a bad one stops start-up here (exit 2). The outbox's delivery worker sends through it.
    let providers = notify::Providers::from_config(
        &config,
        |k| std::env::var(k).ok(),
        Arc::clone(&sms) as Arc<dyn notify::Provider>,
    )?;
    // The card gateway: Stripe when configured (its secret key read and checked here),
    // else the built-in sim.
    let stripe = stripe::StripeGateway::from_config(&config, |k| std::env::var(k).ok())?;
    tracing::info!(
        fcm = providers.fcm.is_some(),
        apns = providers.apns.is_some(),
        sms = providers.sms.is_some(),
        email = providers.email.is_some(),
        "notification providers"
    );
    let addr = config.listen_addr()?;
    // Read before anything opens a file: a bad certificate stops start-up here (exit 2).
    let tls = config.server.tls().map(|(cert, key)| tls::acceptor(cert, key)).transpose()?;
    // Before the engine allocates its state (net/src/memory.rs says why).
    let huge_pages = memory::transparent_huge_pages(config.server.transparent_huge_pages);
    tracing::info!(?huge_pages, "transparent huge pages");
    // Raised before the engine opens its files; the connection budget is derived from it.
    let fds = admission::FdLimit::raise();
    let budget = fds.connection_budget().map_err(Error::Setting)?;
    tracing::info!(
        nofile_soft = fds.soft,
        nofile_hard = fds.hard,
        connection_budget = budget,
        reserve = admission::FD_RESERVE,
        "descriptor limit"
    );
    if secrets.generated {
        eprintln!("WARNING: --dev: throwaway secrets were generated. NOT FOR PRODUCTION.");
    }
    if let (false, sms::SmsSink::File(_)) = (opts.dev, &*sms) {
        // A file of live sign-in codes: whoever reads it signs in as anyone who asks one.
        eprintln!(
            "WARNING: DISPATCH_SMS_SINK=file: writes every sign-in code in clear to a file; it is a \
             development sink (meant for --dev). In production send SMS through an https:// provider."
        );
        tracing::warn!("DISPATCH_SMS_SINK=file: without --dev: live sign-in codes are written to a file");
    }
    private_dir(&config.store.data_dir)?;
    if secrets.admin_token_generated {
        // Printed once, and only a token made up here: one from the environment is the
        // operator's and never echoed.
        println!("dev admin token: {}", secrets.admin_token);
    }
    if config.store.checkpoint_every_records < 10 {
        return Err(Error::Setting("[store] checkpoint_every_records must be at least 10".into()));
    }
    if opts.clock_offset_s != 0 {
        if !opts.dev {
            return Err(Error::Setting("--clock-offset-s needs --dev".into()));
        }
        tracing::warn!(offset_s = opts.clock_offset_s, "--clock-offset-s: the engine's clock is shifted (tests only)");
    }
    if let Some(path) = &opts.limiter_clock {
        if !opts.dev {
            return Err(Error::Setting("--limiter-clock needs --dev".into()));
        }
        tracing::warn!(path = %path.display(), "--limiter-clock: the rate limits run on a clock this file drives (tests only)");
    }
    if let Some(path) = &opts.fault_file {
        tracing::warn!(path = %path.display(), "--fault-file: WAL writes fail while this file exists (tests only)");
    }
    // ----- issue 21 -----
    // A node of a cluster: the command log is the JetStream stream, and the engine starts
    // as a follower until the lease keeper grants it the lead.
    let cluster = match cluster_config {
        None => None,
        Some(mut c) => {
            if let Some(n) = opts.cluster_retain_records {
                tracing::warn!(
                    retain_records = n,
                    "--cluster-retain-records: the stream keeps fewer records (tests only)"
                );
                c.retain_records = n;
            }
            tracing::info!(node_id = %c.node_id, nats = ?c.nats_urls, stream = %c.stream, "joining the cluster");
            let cluster = Arc::new(dispatch_cluster::Cluster::connect(c)?);
            let leadership = Arc::new(dispatch_core::Leadership::new());
            Some((cluster, leadership))
        }
    };
    // Built afresh for each attempt to open (a cluster node may open twice: see below).
    let engine_config = || {
        let mut engine_config =
            EngineConfig::default().with_data_dir(&config.store.data_dir).with_rules(config.rules());
        engine_config.checkpoint_every_records = config.store.checkpoint_every_records;
        engine_config.positions_days = Some(config.retention.positions_days);
        engine_config.zone_queue_share_pct = config.limits.zone_queue_share_pct;
        if let Some(n) = opts.queue_capacity {
            engine_config.queue_capacity = n.max(1);
        }
        if opts.clock_offset_s != 0 {
            engine_config =
                engine_config.with_clock(fault::OffsetClock { offset_ms: opts.clock_offset_s.saturating_mul(1000) });
        }
        if let Some(path) = opts.fault_file.clone() {
            engine_config.wrap_log = Some(fault::FaultFileLog::wrapper(path));
        }
        if let Some((cluster, leadership)) = &cluster {
            engine_config.log = Some(cluster.log_opener());
            engine_config.leadership = Some(Arc::clone(leadership));
        }
        engine_config
    };
    if cluster.is_some() {
        let removed = cluster::checkpoint::remove_leftovers(&config.store.data_dir);
        if removed > 0 {
            tracing::info!(removed, "removed checkpoint copies a stopped process left");
        }
    }
    let engine = match (Engine::open(engine_config()), &cluster) {
        (Ok(engine), _) => engine,
        // The stream no longer holds the records after this data directory's checkpoint
        // (an empty directory's included): a newer checkpoint comes from a peer.
        (Err(e), Some((cluster, _))) if e.is_released() => {
            tracing::warn!(error = %e, "the stream was purged below this node's checkpoint: catching up from a peer's");
            let keys = auth::Keys::new(&secrets.token_secret, &secrets.admin_token);
            cluster::catch_up::open_from_peer(cluster, &keys, &config.store.data_dir, || Engine::open(engine_config()))?
        }
        (Err(e), _) => return Err(e.into()),
    };
    let node = match &cluster {
        None => None,
        Some((cluster, leadership)) => {
            cluster.start(Arc::clone(leadership))?;
            let c = cluster.config();
            Some(Arc::new(cluster::Node::new(
                c.node_id.clone(),
                c.advertise_url.clone(),
                Arc::clone(cluster) as Arc<dyn cluster::Membership>,
                Arc::clone(leadership),
                auth::Keys::new(&secrets.token_secret, &secrets.admin_token),
            )))
        }
    };
    let recovery = engine.recovery();
    tracing::info!(
        base_lsn = recovery.base_lsn,
        replayed = recovery.replayed,
        last_lsn = recovery.last_lsn,
        wal_truncated_bytes = recovery.wal.as_ref().map_or(0, |w| w.truncated_bytes),
        wal_dropped_segments = recovery.wal.as_ref().map_or(0, |w| w.dropped_segments),
        wal_damage = recovery.wal.as_ref().and_then(|w| w.damage.as_deref()).unwrap_or("none"),
        "recovered the data directory"
    );
    let engine = Arc::new(engine);
    // Card trips are authorised and captured by the worker through the card gateway
    // (`Config::card_gateway`: Stripe when configured, else the built-in `sim`); results
    // come back as payment events.
    let gateway: Arc<dyn dispatch_core::payment::Gateway> = match stripe {
        Some(stripe) => stripe,
        None => {
            let sim = Arc::new(dispatch_core::payment::SimGateway::new());
            if opts.sim_gateway_down && opts.dev {
                sim.set_down(true);
            }
            sim
        }
    };
    tracing::info!(gateway = gateway.name(), "card gateway");
    // A node of a cluster calls the gateway only while it leads (the worker is started
    // when it becomes leader and stopped when it steps down).
    let payments = if node.is_some() {
        let (leading, engine) = (Arc::clone(&engine), Arc::clone(&engine));
        let config = opts.payments;
        Payments::LeaderOnly(cluster::LeaderOnly::start(
            move || leading.is_leader(),
            std::time::Duration::from_millis(100),
            move || match dispatch_core::payment::PaymentWorker::start(
                Arc::clone(&engine),
                Arc::clone(&gateway),
                config,
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "the payment worker could not start");
                    None
                }
            },
            dispatch_core::payment::PaymentWorker::stop,
        )?)
    } else {
        Payments::Always(dispatch_core::payment::PaymentWorker::start(Arc::clone(&engine), gateway, opts.payments)?)
    };
    let demo = opts.demo_drivers.map(|n| demo::Demo::start(Arc::clone(&engine), n)).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("dispatchd").build()?;
    let result = runtime.block_on(async {
        let listener = listen(addr).map_err(|source| Error::Bind { addr: addr.to_string(), source })?;
        let bound = listener.local_addr()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let app = Arc::new(
            server::App::new(Arc::clone(&engine), config, &secrets, sms, opts.ws_timing, rx.clone(), fds)?
                .with_clock_offset_s(if opts.dev { opts.clock_offset_s } else { 0 })
                .with_limiter_clock(opts.limiter_clock.clone().filter(|_| opts.dev).map(fault::limiter_clock))
                .with_node(node.clone()),
        );
        // The outbox's delivery worker, in the process that writes, sending through the
        // providers built above (a channel with none answers "not configured").
        let route: outbox::Route = Arc::new(move |to: &notify::Recipient| providers.for_recipient(to).cloned());
        // What an item says that the state does not know (the accepted push's ETA).
        let live_app = Arc::clone(&app);
        let live: outbox::LiveHook = Arc::new(move |item: &dispatch_core::outbox::Notification| {
            let (app, kind, trip) = (Arc::clone(&live_app), item.kind, item.params.trip_id);
            Box::pin(async move { app.live(kind, trip).await })
        });
        let worker = tokio::spawn(outbox::run(
            Arc::clone(&engine),
            route,
            live,
            Arc::clone(&app.metrics.notifications),
            outbox::WorkerConfig::default(),
            rx.clone(),
        ));
        // The webhook worker beside it: signed POSTs of the due deliveries.
        let hook_worker = tokio::spawn(hooks::run(
            Arc::clone(&engine),
            Arc::clone(&app.metrics.webhooks),
            outbox::WorkerConfig::default(),
            rx.clone(),
        ));
        // The eraser (issue 20: U): erased users' files, positions and archived chat.
        let eraser = tokio::spawn(eraser::run(Arc::clone(&engine), app.config.store.data_dir.clone(), rx.clone()));
        // Caught before the line below: a SIGTERM sent as soon as it is printed is a
        // graceful shutdown.
        let signals = listener::Signals::catch();
        // The machine-readable line tests and scripts look for.
        println!("listening on {bound}");
        tracing::info!(addr = %bound, tls = tls.is_some(), "listening");
        let signal = tokio::spawn(async move {
            signals.recv().await;
            tracing::info!("shutdown signal");
            let _ = tx.send(true);
        });
        listener::run(app, listener, tls, rx).await;
        // Sends in progress are reported before the engine stops (the worker saw the signal).
        let _ = worker.await;
        let _ = hook_worker.await;
        let _ = eraser.await;
        signal.abort();
        Ok::<(), Error>(())
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Some(d) = demo {
        d.stop();
    }
    match payments {
        Payments::Always(w) => w.stop(),
        Payments::LeaderOnly(g) => g.stop(),
    }
    // ----- issue 21 -----
    // Before the engine stops: a leader gives its lease up at once (a follower takes over
    // without waiting for it to lapse).
    drop(node);
    if let Some((cluster, _)) = &cluster {
        cluster.shutdown();
    }
    // Every App (and so every engine handle) is gone with the runtime: flush the WAL.
    match Arc::try_unwrap(engine) {
        Ok(engine) => {
            engine.shutdown()?;
        }
        Err(engine) => drop(engine), // Engine's Drop stops the writer too.
    }
    tracing::info!("stopped");
    result
}

/// The payment worker: always running (one node), or only while this node leads.
enum Payments {
    Always(dispatch_core::payment::PaymentWorker),
    LeaderOnly(cluster::LeaderOnly),
}

/// The process's file-creation mask: what it creates is its owner's only (files 0600,
/// directories 0700). The data directory holds phone numbers, names, trips and positions;
/// the `file:` SMS sink live codes; backups the same as the data directory.
pub const UMASK: u32 = 0o077;

/// Sets the process's umask to [`UMASK`], so every file and directory it creates from
/// then on — the data directory's `LOCK`, `wal/` and its segments, `store.redb`, the SMS
/// file, backups and restores — is readable by its owner only. The first thing
/// `dispatchd` does, whatever the subcommand; returns the mask it replaced.
pub fn restrict_file_modes() -> u32 {
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(UMASK)).bits()
}

/// Creates the data directory `dir` (and its missing parents) 0700, whatever the umask;
/// one that already exists and that other users may enter or read is left as it is (it
/// may be shared on purpose) and warned about at start.
fn private_dir(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & UMASK != 0 {
        eprintln!(
            "WARNING: the data directory {} is {mode:o}: other users may read its phone numbers, names and \
             positions. Make it the server's own: chmod 700 {}",
            dir.display(),
            dir.display()
        );
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory is open to other users");
    }
    Ok(())
}

/// Takes the group's and others' rights off `root` and everything under it (symbolic
/// links are not followed): what `dispatchd backup` and `restore` made is their owner's
/// only, even where a copy kept the looser mode of a file an older version wrote.
pub fn make_private(root: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(root)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & UMASK != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & !UMASK))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(root)? {
            make_private(&entry?.path())?;
        }
    }
    Ok(())
}

/// Feeds `data` to every parser of outside input (the fuzz target `server_input` and its
/// stable proptest twin): WebSocket frames, queries, cursors, tokens, JSON bodies. Never
/// panics, whatever the bytes.
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = ws::parse_client_frame(&text);
    let q = http::Query::parse(Some(&text));
    let _ = http::Cursor::from_query(&q);
    let _ = http::limit(&q);
    let _ = q.f64("lat");
    let keys = auth::Keys::new(&[7u8; 32], "fuzz-admin-token-000000");
    let _ = keys.verify(&text, 0);
    let _ = auth::bearer(&text);
    let _ = auth::ws_protocol_token([text.as_ref()]);
    let _ = http::parse_json::<wire::LocationIn>(data, true).map(|l| l.report());
    let _ = http::parse_json::<dispatch_core::ZoneSpec>(data, false);
    let _ = http::parse_rfc3339(&text, "t");
}

/// JSON log lines on stderr, filtered by `RUST_LOG` when it is set, else by `[log] level`
/// (an invalid `RUST_LOG` stops start-up, exit 2, like an invalid `level`).
fn init_logging(log: &config::LogSection) -> Result<(), Error> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = log.filter(rust_log.as_deref()).map_err(Error::Setting)?;
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
    Ok(())
}

pub mod demo {
    //! `--demo`: the simulated city of `dispatch_sim` run live beside the API,
    //! on a thread of its own (the simulation submits commands like any client and reads
    //! the view; it never blocks a runtime thread).

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use dispatch_core::Engine;
    use dispatch_core::clock::{Clock, SystemClock};
    use dispatch_sim::{Sim, SimConfig};

    /// How often the simulation steps.
    const STEP: Duration = Duration::from_millis(500);

    /// The running simulation.
    pub struct Demo {
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<()>>,
    }

    impl Demo {
        /// Starts `drivers` simulated drivers and the default city's 50 riders on
        /// `engine`; `--demo-drivers 0` is the demo zone alone, with nobody simulated
        /// (what the load generator runs against: its trips are all its own).
        /// The demo zone and the people are created on first start and reused after.
        pub fn start(engine: Arc<Engine>, drivers: u32) -> std::io::Result<Demo> {
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = Arc::clone(&stop);
            let handle = std::thread::Builder::new().name("dispatch-demo".into()).spawn(move || {
                // A short ramp-up: a newcomer sees the city fill within seconds.
                let riders = if drivers == 0 { 0 } else { SimConfig::default().riders };
                let config = SimConfig { drivers, riders, ramp_up_s: 10, ..SimConfig::default() };
                // A node of a cluster runs the city only while it leads (the people and
                // the zone are made through the engine, which only the leader takes).
                while !engine.is_leader() {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(STEP);
                }
                let mut sim = match Sim::new(&engine, config) {
                    Ok(sim) => sim,
                    Err(e) => {
                        tracing::error!(error = %e, "the demo city could not be set up");
                        return;
                    }
                };
                tracing::info!(drivers, "demo city running");
                while !stopping.load(Ordering::Relaxed) {
                    if engine.is_leader() {
                        sim.step(SystemClock.now());
                    }
                    std::thread::sleep(STEP);
                }
            })?;
            Ok(Demo { stop, handle: Some(handle) })
        }

        /// Stops the simulation and waits for its thread.
        pub fn stop(mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// Connections the kernel may hold for us before `accept` (it caps this at
/// `net.core.somaxconn`). A city's drivers reconnect together after a network blip:
/// with tokio's default of 1,024, SYNs beyond it are dropped and the clients retry only
/// after 1 s, then 3 s (the load generator's 10,000 drivers showed exactly those stalls).
const LISTEN_BACKLOG: u32 = 8192;

/// Binds `addr` with `LISTEN_BACKLOG` (and `SO_REUSEADDR`, as `TcpListener::bind` sets).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
