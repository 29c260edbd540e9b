//! The accept path's cost with and without notification items, for callgrind (issue 18:
//! "the added cost to the accept path"). Instruction counts do not depend on what else the
//! machine runs, so they can be compared where wall time (`benches/outbox.rs`) cannot.
//!
//! 2,000 drivers each hold the offer of their own trip (an engine on a WAL in a temporary
//! directory, as the bench); each rider has `DEVICES` push devices. With `accept`, every
//! driver accepts (pipelined, as a server does), making `DEVICES` `trip_accepted` items
//! each; with `skip`, nothing more happens. The accepts' cost is the difference of the two
//! runs, divided by 2,000. With `one`, the drivers accept one at a time, each waited for (a
//! batch each, as at a quiet hour: what a batch costs besides its commands is then paid by
//! every accept).
//!
//! `scripts/accept-cost.sh [accept|one] [runs]` runs it under callgrind with and without a
//! device and prints an item's cost, counting only inside `state::apply` and
//! `View::publish` (the writer thread's whole total also counts its waits for the next
//! batch, which move with the run's timing). Where the cost goes:
//! `callgrind_annotate` of one run's writer thread (the file ending `-03`).
//!
//! `HOOKS=n` adds n outbound webhook endpoints wanting every event: each accept then also
//! makes n `trip.accepted` deliveries (and each booking n `trip.created`).
//!
//! BENCHMARKS.md "The notification outbox" has the figures.
#![forbid(unsafe_code)]

/// The allocator of `dispatchd`, whose writer runs these accepts (glibc's moved the
/// difference by hundreds of instructions from build to build: its free lists are the
/// history of the run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use dispatch::scenario::{grid_fleet, grid_rules, grid_trips, pipeline};
use dispatch_core::outbox::Platform;
use dispatch_core::{Actor, Command, Engine, EngineConfig};

const DRIVERS: u64 = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (accept, one_by_one) = match std::env::args().nth(1).as_deref() {
        Some("accept") => (true, false),
        Some("one") => (true, true),
        Some("skip") => (false, false),
        _ => return Err("usage: accept_cost accept|one|skip (DEVICES=n riders' devices, default 1)".into()),
    };
    let devices: usize = std::env::var("DEVICES").ok().map(|d| d.parse()).transpose()?.unwrap_or(1);
    let dir = tempfile::tempdir()?;
    let mut config = EngineConfig::default().with_data_dir(dir.path()).with_rules(grid_rules());
    // No checkpoint during the run: one falls at another point of each run (they log
    // different numbers of records), and it is the checkpoint thread's work, not the
    // accept's. `CHECKPOINTS=1` keeps the default.
    if std::env::var("CHECKPOINTS").as_deref() != Ok("1") {
        config.checkpoint_every_records = u64::MAX;
    }
    let engine = Engine::open(config)?;
    let cells = grid_fleet(&engine, DRIVERS)?;
    let register: Vec<(Actor, Command)> = cells
        .iter()
        .flat_map(|(_, rider, _)| {
            (0..devices).map(move |i| {
                let token = format!("token-{rider}-{i}");
                (Actor::User(*rider), Command::RegisterDevice { id: None, platform: Platform::Fcm, token })
            })
        })
        .collect();
    if pipeline(&engine, register).iter().any(Result::is_err) {
        return Err("a device was refused".into());
    }
    // `HOOKS=n`: n outbound webhook endpoints wanting every event (each accept then makes
    // one `trip.accepted` delivery per endpoint).
    let hooks: usize = std::env::var("HOOKS").ok().map(|d| d.parse()).transpose()?.unwrap_or(0);
    for i in 0..hooks {
        let endpoint = Command::CreateWebhookEndpoint {
            id: None,
            secret: None,
            url: format!("https://hooks{i}.example.com/in"),
            events: vec!["*".into()],
            description: None,
        };
        engine.submit(Actor::Admin, endpoint)?;
    }
    let trips = grid_trips(&engine, &cells)?;
    if one_by_one {
        for ((d, _, _), t) in cells.iter().zip(&trips) {
            engine.submit(Actor::User(*d), Command::AcceptTrip { trip_id: t.id })?;
        }
    } else if accept {
        let accepts = cells
            .iter()
            .zip(&trips)
            .map(|((d, _, _), t)| (Actor::User(*d), Command::AcceptTrip { trip_id: t.id }))
            .collect();
        let refused = pipeline(&engine, accepts).iter().filter(|r| r.is_err()).count();
        if refused > 0 {
            return Err(format!("{refused} accepts refused").into());
        }
    }
    let (items, deliveries) = engine.read(|v| (v.outbox().pending(), v.hooks().pending()));
    println!(
        "devices {devices}, webhook endpoints {hooks}, accepts {}, pending items {items}, pending deliveries {deliveries}",
        if accept { DRIVERS } else { 0 }
    );
    engine.shutdown()?;
    Ok(())
}
