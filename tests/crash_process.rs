//! kill -9 of a real process (`src/bin/crash-writer.rs`) while 32 callers stream
//! commands at it (group commit) and checkpoints, WAL release and the archiving of
//! finished trips go on underneath: everything it acknowledged before the kill is there
//! after a restart, the state's invariants hold and the ledger balances. Six kills on
//! the same data directory, at seeded moments (three right after a checkpoint was
//! collected, while the WAL below it is being released and the next one is being
//! written); each restart recovers the directory the last kill left.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use dispatch_core::ledger::{AccountKey, AccountKind};
use dispatch_core::{Availability, Engine, EngineConfig, Role, TripId, TripStatus, UserId};
use rand::{Rng, SeedableRng};

/// What the crash writer's answers promised, over all its runs.
#[derive(Default)]
struct Acked {
    users: HashMap<UserId, Role>,
    online: HashSet<UserId>,
    trips: HashMap<TripId, AckedTrip>,
    credits: Vec<(dispatch_core::id::TransferId, UserId, i64)>,
    checkpoints: usize,
}

struct AckedTrip {
    rider: UserId,
    driver: Option<UserId>,
    /// The last acknowledged status.
    status: TripStatus,
    rider_stars: Option<u8>,
    driver_stars: Option<u8>,
}

impl Acked {
    /// Takes one line of the writer's output.
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let trip = |i: usize| words[i].parse::<TripId>().unwrap();
        let user = |i: usize| words[i].parse::<UserId>().unwrap();
        let mut step = |id: TripId, to: TripStatus| {
            let t = self.trips.get_mut(&id).unwrap_or_else(|| panic!("{line}: an unknown trip"));
            assert!(t.status.can_become(to), "{line}: from {:?}", t.status);
            t.status = to;
        };
        match words[0] {
            "user" => {
                let role = if words[2] == "driver" { Role::Driver } else { Role::Rider };
                self.users.insert(user(1), role);
            }
            "online" => {
                self.online.insert(user(1));
            }
            "trip" => {
                let t = AckedTrip {
                    rider: user(2),
                    driver: None,
                    status: TripStatus::Searching,
                    rider_stars: None,
                    driver_stars: None,
                };
                self.trips.insert(trip(1), t);
            }
            "accepted" => {
                step(trip(1), TripStatus::Accepted);
                self.trips.get_mut(&trip(1)).unwrap().driver = Some(user(2));
            }
            "arrived" => step(trip(1), TripStatus::Arrived),
            "started" => step(trip(1), TripStatus::InProgress),
            "completed" => step(trip(1), TripStatus::Completed),
            "cancelled" => step(trip(1), TripStatus::Cancelled),
            "rated" => {
                let t = self.trips.get_mut(&trip(1)).unwrap();
                let stars = Some(words[3].parse().unwrap());
                if words[2] == "rider" { t.rider_stars = stars } else { t.driver_stars = stars }
            }
            "credit" => self.credits.push((words[1].parse().unwrap(), user(2), words[3].parse().unwrap())),
            "checkpoint" => self.checkpoints += 1,
            other => panic!("unknown line {other:?}: {line}"),
        }
    }
}

/// When to kill the writer.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// After this many acknowledgements.
    AfterAcks(usize),
    /// Right after the n-th checkpoint line of this run (and at least 200 acks).
    AfterCheckpoint(usize),
}

/// Runs the crash writer (run number `run`) on `dir`, takes its answers into `acked`,
/// and kills it with SIGKILL as `kill` says. Returns the records it replayed at start
/// and the checkpoint LSN it started from.
fn run_and_kill(dir: &Path, run: u64, kill: Kill, acked: &mut Acked) -> (u64, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .args(["--data-dir", dir.to_str().unwrap(), "--threads", "32", "--seconds", "50"])
        .args(["--run", &run.to_string(), "--seed", &(run + 7).to_string()])
        .args(["--checkpoint-every", "200", "--segment-bytes", "8192"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crash-writer");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut lines = 0usize;
    let mut checkpoints = 0usize;
    let mut ready = None;
    let mut killed = false;
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // A line cut by the kill (never seen so far: lines are written whole) promises nothing.
        let Some(text) = line.strip_suffix('\n') else { break };
        if let Some(rest) = text.strip_prefix("ready ") {
            let num = |key: &str| -> u64 {
                rest.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap().parse().unwrap()
            };
            ready = Some((num("replayed="), num("base=")));
            continue;
        }
        acked.take(text);
        lines += 1;
        checkpoints += usize::from(text.starts_with("checkpoint "));
        let due = match kill {
            Kill::AfterAcks(n) => lines >= n,
            Kill::AfterCheckpoint(n) => checkpoints >= n && lines >= 200,
        };
        if due && !killed {
            child.kill().unwrap(); // SIGKILL: no shutdown, no flush, no destructor
            killed = true;
            // Keep reading: what it printed before dying was acknowledged too.
        }
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(killed, "the writer stopped by itself after {lines} lines ({status}): {err}");
    ready.expect("the writer said ready")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Recovers a copy of `dir` (the crashed directory itself is left for the next run)
/// and checks every acknowledged effect is there. Returns how many acknowledged
/// finished trips were served from the history rather than the hot state.
fn check_recovered(dir: &Path, scratch: &Path, acked: &Acked) -> usize {
    let _ = fs::remove_dir_all(scratch);
    copy_tree(dir, scratch);
    let engine =
        Engine::open(EngineConfig::default().with_data_dir(scratch).with_rules(dispatch::scenario::grid_rules()))
            .expect("the crashed directory recovers");
    for (id, role) in &acked.users {
        let user = engine.user(*id).unwrap_or_else(|| panic!("acknowledged user {id} is missing"));
        assert_eq!(user.role, *role, "{id}");
    }
    for id in &acked.online {
        let driver = engine.driver(*id).unwrap_or_else(|| panic!("acknowledged driver {id} is missing"));
        assert_ne!(driver.availability, Availability::Offline, "{id} went online and never offline");
    }
    let mut archived = 0;
    for (id, want) in &acked.trips {
        let trip = engine.find_trip(*id).unwrap().unwrap_or_else(|| panic!("acknowledged trip {id} is missing"));
        archived += usize::from(engine.read(|v| v.trip(*id).is_none()));
        assert_eq!(trip.rider_id, want.rider, "{id}");
        // Each caller has one command in flight: the trip is at its last acknowledged
        // status, or one step past it (a command applied and durable, its answer lost).
        let next: &[TripStatus] = match want.status {
            TripStatus::Searching => &[TripStatus::Accepted, TripStatus::Cancelled],
            TripStatus::Accepted => &[TripStatus::Arrived, TripStatus::Cancelled],
            TripStatus::Arrived => &[TripStatus::InProgress],
            TripStatus::InProgress => &[TripStatus::Completed],
            _ => &[],
        };
        assert!(
            trip.status == want.status || next.contains(&trip.status),
            "{id}: acknowledged {:?}, recovered {:?}",
            want.status,
            trip.status
        );
        if let Some(driver) = want.driver {
            assert_eq!(trip.driver_id, Some(driver), "{id}: the driver that accepted it");
        }
        if let Some(stars) = want.rider_stars {
            assert_eq!(trip.rider_rating.as_ref().map(|r| r.stars), Some(stars), "{id}: the rider's rating");
        }
        if let Some(stars) = want.driver_stars {
            assert_eq!(trip.driver_rating.as_ref().map(|r| r.stars), Some(stars), "{id}: the driver's rating");
        }
    }
    let egp: dispatch_core::Currency = "EGP".parse().unwrap();
    let mut credited: HashMap<UserId, i64> = HashMap::new();
    for (_, rider, amount) in &acked.credits {
        *credited.entry(*rider).or_default() += amount;
    }
    for (rider, sum) in &credited {
        let wallet = AccountKey::of(AccountKind::RiderWallet, *rider, egp);
        let statement = engine.statement(&wallet, None, 1000).unwrap();
        assert!(statement.len() < 1000, "one page holds it all");
        for (id, _, amount) in acked.credits.iter().filter(|c| c.1 == *rider) {
            let t = statement.iter().find(|t| t.id == *id).unwrap_or_else(|| panic!("acknowledged credit {id} lost"));
            assert_eq!((t.credit, t.amount), (wallet, *amount), "{id}");
        }
        // Cash rides never touch the wallet: its balance is its credits, the acknowledged
        // ones and any whose answer the kill cut off.
        let balance = engine.read(|v| v.account(&wallet).balance());
        let listed: i64 = statement.iter().map(|t| if t.credit == wallet { t.amount } else { -t.amount }).sum();
        assert_eq!(balance, listed, "{rider}: the balance is what its statement says");
        assert!(balance >= *sum, "{rider}: balance {balance} below the {sum} acknowledged");
    }
    let ledger = engine.read(|v| v.ledger_verify());
    assert!(ledger.balanced, "the ledger balances after the crash: {ledger:?}");
    let state = engine.shutdown().unwrap();
    assert_eq!(state.check_invariants(), Ok(()));
    archived
}

#[test]
fn kill_dash_nine_under_group_commit_checkpoints_and_archiving_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let scratch = dir.path().join("check");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    let mut acked = Acked::default();
    let mut archived = 0;
    for run in 0..6u64 {
        let kill = if run % 2 == 1 {
            Kill::AfterCheckpoint(rng.random_range(1..=3))
        } else {
            Kill::AfterAcks(rng.random_range(500..6_000))
        };
        let (replayed, base) = run_and_kill(&data, run, kill, &mut acked);
        if run > 0 {
            assert!(base > 0, "run {run} restarted from a checkpoint");
        }
        archived = check_recovered(&data, &scratch, &acked);
        eprintln!(
            "run {run}: started at checkpoint {base} + {replayed} records, killed {kill:?}; so far {} trips, \
             {} credits, {} checkpoints acknowledged, {archived} finished trips read from the history",
            acked.trips.len(),
            acked.credits.len(),
            acked.checkpoints
        );
    }
    assert!(acked.checkpoints >= 2, "checkpoints were collected during the runs: {}", acked.checkpoints);
    assert!(archived > 0, "some acknowledged finished trips were read back from the history");
    assert!(acked.trips.values().any(|t| t.rider_stars.is_some()), "ratings were acknowledged");
    assert!(!acked.credits.is_empty(), "credits were acknowledged");
    let first = fs::read_dir(data.join("wal")).unwrap().map(|e| e.unwrap().file_name()).min().unwrap();
    assert_ne!(first.to_string_lossy(), "00000000000000000001.wal", "the WAL below the checkpoints was released");
}
