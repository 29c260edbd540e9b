//! kill -9 of a real process while it streams commands: everything it
//! acknowledged before the kill is there after a restart — twice over, so
//! recovery of a recovered log is covered too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use dispatch_core::{Engine, EngineConfig, TripId, UserId};

/// Runs the crash writer on `dir`, reads `acks` acknowledged ids, kills it with
/// SIGKILL, and returns the ids.
fn run_and_kill(dir: &std::path::Path, acks: usize) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .args(["--data-dir", dir.to_str().unwrap(), "--seconds", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start crash-writer");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready"), "{ready}");
    let mut ids = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        ids.push(line.strip_prefix("ack ").expect("ack line").to_owned());
        if ids.len() == acks {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush, no destructor
    child.wait().unwrap();
    ids
}

#[test]
fn kill_dash_nine_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = run_and_kill(dir.path(), 300);
    acked.extend(run_and_kill(dir.path(), 300));
    let engine = Engine::open(EngineConfig::default().with_data_dir(dir.path())).unwrap();
    for id in &acked {
        if let Ok(user) = id.parse::<UserId>() {
            assert!(engine.user(user).is_some(), "acknowledged {id} is missing after the crash");
        } else {
            let trip: TripId = id.parse().unwrap();
            assert!(engine.trip(trip).is_some(), "acknowledged {id} is missing after the crash");
        }
    }
    assert_eq!(acked.len(), 600);
    engine.shutdown().unwrap();
}
