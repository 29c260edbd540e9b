//! `dispatchd backup` and `restore` as an operator runs them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use dispatch_core::{Actor, Engine, EngineConfig, NewUser, Role};

fn dispatchd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dispatchd")).args(args).output().unwrap()
}

#[test]
fn backup_and_restore_round_trip_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backup, restored) = (dir.path().join("data"), dir.path().join("b"), dir.path().join("r"));
    let engine = Engine::open(EngineConfig::default().with_data_dir(&data)).unwrap();
    let new =
        NewUser { id: None, role: Role::Rider, name: "Amal".into(), phone: "+201001234567".into(), vehicle: None };
    let amal = engine.create_user(Actor::Admin, new).unwrap();
    // While the engine holds the data dir.
    let out = dispatchd(&["backup", "--data-dir", data.to_str().unwrap(), "--to", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 records"));
    engine.shutdown().unwrap();

    let out = dispatchd(&["restore", "--from", backup.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engine = Engine::open(EngineConfig::default().with_data_dir(&restored)).unwrap();
    assert_eq!(engine.user(amal.id).unwrap().name, "Amal");
    engine.shutdown().unwrap();

    // Refusals are clear and change nothing.
    let out = dispatchd(&["restore", "--from", backup.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let out = dispatchd(&["backup", "--data-dir", dir.path().join("none").to_str().unwrap(), "--to", "x"]);
    assert!(!out.status.success());
}
