//! Accept latency over loopback (DESIGN.md's budget: `POST /v1/trips/{id}/accept`, 200
//! concurrent drivers, p99 ≤ 10 ms): the real server in-process on `127.0.0.1:0`, an
//! in-memory engine, `N` drivers each accepting the trip booked at its own position, all
//! at once, each over its own keep-alive connection, taken and served once before the
//! instant (a driver's app has its connection already) and closed once every answer of
//! the round is in.
//!
//! `cargo run --release -p dispatch-server --example http_accept -- [drivers] [rounds]`
//! (`HUGE_PAGES=1`: with the system's transparent huge pages, which `dispatchd` turns off;
//! `ROUND_MARKS=1`: each round's window, from its first request to its last answer, on
//! stderr as `Instant`s of the monotonic clock, to cut a `perf record -k CLOCK_MONOTONIC`
//! profile to the rounds)
//!
//! It allocates through the global allocator `dispatchd` ships (mimalloc, the default
//! feature `mimalloc`), so it measures what ships; `--no-default-features` measures the
//! system's.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

/// `dispatchd`'s global allocator (net/src/main.rs).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dispatch_core::route::StraightLine;
use dispatch_core::*;
use dispatch_server::config::{Config, Secrets};
use dispatch_server::server::App;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

fn main() {
    // As `dispatchd` starts with its default `[server] transparent_huge_pages = false`
    // (`HUGE_PAGES=1`: the system's setting, to compare).
    dispatch_server::memory::transparent_huge_pages(std::env::var_os("HUGE_PAGES").is_some_and(|v| v == "1"));
    let mut args = std::env::args().skip(1);
    let drivers: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    // The server's runtime, as `dispatchd` builds it (a worker per core).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // The drivers' side on a runtime of its own, as a load generator in another process
    // would be: sharing the server's workers, the clients' tasks would run in the
    // server's place and be measured as the server's time.
    let clients = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("clients").build().unwrap();
    rt.block_on(run(drivers, rounds, clients.handle().clone()));
}

async fn run(drivers: u32, rounds: u32, clients: tokio::runtime::Handle) {
    let engine = Arc::new(Engine::open(EngineConfig::default()).unwrap());
    engine.create_zone(Actor::Admin, dispatch_core::demo::cairo().unwrap()).unwrap();
    let secrets = Secrets::from_env(|_| None, true, []).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Every driver connects from 127.0.0.1: the per-address cap must let them all in.
    let mut config = Config::default();
    config.server.max_connections_per_ip = config.server.max_connections_per_ip.max(drivers as usize + 16);
    let app = Arc::new(
        App::new(
            Arc::clone(&engine),
            config,
            &secrets,
            std::sync::Arc::new(dispatch_server::sms::SmsSink::Log { dev: true }),
            Default::default(),
            rx.clone(),
            dispatch_server::admission::FdLimit::raise(),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(dispatch_server::listener::run(Arc::clone(&app), listener, None, rx));

    let economy = Category::new("economy").unwrap();
    let mut samples = Vec::new();
    for round in 0..rounds {
        // Drivers 1 km apart on a grid, each with a rider booking at its position.
        let mut pairs = Vec::new();
        for i in 0..drivers {
            let n = round * drivers + i;
            let at = LatLng::new(29.95 + f64::from(i / 20) * 0.01, 31.05 + f64::from(i % 20) * 0.01).unwrap();
            let car = Vehicle::new(economy.clone(), format!("B {n}"));
            let d = engine
                .create_user(
                    Actor::Admin,
                    NewUser {
                        id: None,
                        role: Role::Driver,
                        name: format!("d{n}"),
                        phone: format!("+2011{n:08}"),
                        vehicle: Some(car),
                    },
                )
                .unwrap();
            engine.set_driver_status(d.id, true, Some(at)).unwrap();
            let r = engine
                .create_user(
                    Actor::Admin,
                    NewUser {
                        id: None,
                        role: Role::Rider,
                        name: format!("r{n}"),
                        phone: format!("+2012{n:08}"),
                        vehicle: None,
                    },
                )
                .unwrap();
            let route = StraightLine::default().between(at, at);
            let trip = engine
                .create_trip(
                    r.id,
                    NewTrip {
                        id: None,
                        pickup_code: None,
                        reference: None,
                        kind: TripKind::Ride,
                        pickup: Place::at(at),
                        dropoff: Place::at(at),
                        stops: Vec::new(),
                        category: economy.clone(),
                        parcel: None,
                        payment_method: PaymentMethod::Cash,
                        route,
                        coupon: None,
                        bid_minor: None,
                        scheduled_at: None,
                    },
                )
                .unwrap();
            let token =
                app.keys.token_for(&engine.user(d.id).unwrap(), clock::Clock::now(&clock::SystemClock).as_secs());
            pairs.push((token, trip.id));
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(pairs.len()));
        let tasks: Vec<_> = pairs
            .into_iter()
            .map(|(token, trip)| {
                let barrier = Arc::clone(&barrier);
                clients.spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    // The connection is taken and served once before the instant (a
                    // driver's app has its keep-alive connection already): the server's
                    // accept and set-up of 200 connections is not in the burst.
                    let warm = hyper::Request::get("/healthz")
                        .header("host", addr.to_string())
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let _ = send.send_request(warm).await.unwrap().into_body().collect().await;
                    barrier.wait().await;
                    let req = hyper::Request::post(format!("/v1/trips/{trip}/accept"))
                        .header("host", addr.to_string())
                        .header("authorization", format!("Bearer {token}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let started = Instant::now();
                    let resp = send.send_request(req).await.unwrap();
                    let status = resp.status();
                    let _ = resp.into_body().collect().await;
                    // The connection stays open (a driver's app keeps it alive): closing
                    // it here would put its teardown among the answers still on their way.
                    (started, started.elapsed(), status.as_u16(), send)
                })
            })
            .collect();
        let mut first = Instant::now() + Duration::from_secs(3600);
        let mut open = Vec::with_capacity(tasks.len());
        for t in tasks {
            let (started, took, status, send) = t.await.unwrap();
            first = first.min(started);
            assert_eq!(status, 200, "every driver accepts its own trip");
            samples.push(took);
            open.push(send);
        }
        if std::env::var_os("ROUND_MARKS").is_some() {
            eprintln!("round {round}: {first:?} .. {:?}", Instant::now());
        }
        drop(open);
        // The drivers of this round stay on their trips; the next round uses new ones.
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "accept over loopback, {drivers} concurrent drivers × {rounds} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(50)),
        ms(pct(99)),
        ms(*samples.last().unwrap())
    );
    let _ = tx.send(true);
    let _ = serving.await;
}
