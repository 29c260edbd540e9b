//! Crash recovery checked against the independent reference model of
//! `engine_model`: a seeded random sequence of its commands runs through a real
//! engine on a data directory, each acknowledged command's end in the WAL noted;
//! then the WAL is cut at every byte of its last records, and a byte is flipped at
//! every offset of its last records, and each damaged copy is recovered. The
//! recovered engine's view must equal the *model* (not a replay through the same
//! `apply`) after exactly the acknowledged commands whose records are whole before
//! the damage: every one of them, and none after.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use dispatch_core::clock::{ManualClock, Timestamp};
use dispatch_core::{Engine, EngineConfig, RandomIds};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::engine_model::{self, Model, Op};

const T0: i64 = 1_700_000_000_000;
/// Commands per sequence (about half are refused and leave no record).
const OPS: usize = 160;
/// Records at the end of the log cut at every byte, and damaged at every byte.
const CUT_RECORDS: usize = 4;
const FLIP_RECORDS: usize = 3;

fn config(dir: &Path, clock: &ManualClock) -> EngineConfig {
    EngineConfig {
        // The writer never wakes by itself: it acts on the test's commands at the test's time.
        idle_wakeup: Duration::from_secs(86_400),
        ..EngineConfig::default()
    }
    .with_clock(clock.clone())
    .with_ids(RandomIds::seeded(11))
    .with_rules(engine_model::rules())
    .with_data_dir(dir)
}

/// The model's command generator, drawn from a seeded runner: the same sequence every run.
fn ops(seed: u8) -> Vec<Op> {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    proptest::collection::vec(engine_model::op(), OPS).new_tree(&mut runner).unwrap().current()
}

fn segment(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one segment");
    files.pop().unwrap()
}

/// What the run left: the model after each acknowledged command (the first entry:
/// after the set-up) with the WAL's size and last LSN once that command was durable.
struct Acknowledged {
    models: Vec<Model>,
    ends: Vec<u64>,
    lsns: Vec<u64>,
}

fn run(dir: &Path, seed: u8) -> Acknowledged {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let engine = Engine::open(config(dir, &clock)).unwrap();
    let mut model = engine_model::setup(&engine, &clock);
    let seg = segment(dir);
    let records = |engine: &Engine| engine.stats().applied.load(Ordering::SeqCst);
    let mut acked = Acknowledged {
        models: vec![model.clone()],
        ends: vec![fs::metadata(&seg).unwrap().len()],
        lsns: vec![records(&engine)],
    };
    for (i, op) in ops(seed).iter().enumerate() {
        let Some((engine_answer, model_answer)) = engine_model::step(&engine, &clock, &mut model, op) else {
            continue;
        };
        assert_eq!(engine_answer, model_answer, "seed {seed}, step {i}: {op:?}");
        engine_model::compare(&engine, &model, None, i).unwrap();
        let lsn = records(&engine);
        let last = *acked.lsns.last().unwrap();
        assert!(lsn <= last + 1, "seed {seed}, step {i}: {op:?} logged {} records, the test expects one", lsn - last);
        if lsn > last {
            // Acknowledged and durable: its record ends where the segment ends now.
            acked.models.push(model.clone());
            acked.ends.push(fs::metadata(&seg).unwrap().len());
            acked.lsns.push(lsn);
        } else {
            // Refused (or nothing was due): no record, and nothing the model shows changed.
            *acked.models.last_mut().unwrap() = model.clone();
        }
    }
    engine.shutdown().unwrap();
    assert!(acked.models.len() > 40, "seed {seed}: {} commands acknowledged", acked.models.len() - 1);
    acked
}

/// Recovers `damaged` (a copy of the log, then damaged) and checks the engine's view
/// equals the model after the first `whole` acknowledged commands.
fn check(damaged: &Path, acked: &Acknowledged, whole: usize, what: &str) {
    let engine = Engine::open(config(damaged, &ManualClock::new(Timestamp::from_millis(T0)))).unwrap();
    let last = engine.recovery().last_lsn;
    if let Err(e) = engine_model::compare(&engine, &acked.models[whole], None, whole) {
        let matching: Vec<usize> = (0..acked.models.len())
            .filter(|&k| engine_model::compare(&engine, &acked.models[k], None, k).is_ok())
            .collect();
        panic!(
            "{what}: the recovered view is not the model after the {whole} commands whole before the damage \
             ({e}); it matches the model after {matching:?}"
        );
    }
    assert_eq!(last, acked.lsns[whole], "{what}: recovered up to LSN {last}");
    let state = engine.shutdown().unwrap();
    assert_eq!(state.check_invariants(), Ok(()), "{what}");
}

fn copy_log(from: &Path, to: &Path) -> PathBuf {
    fs::create_dir_all(to.join("wal")).unwrap();
    let seg = segment(from);
    let copy = to.join("wal").join(seg.file_name().unwrap());
    fs::copy(&seg, &copy).unwrap();
    copy
}

#[test]
fn a_wal_cut_or_damaged_in_its_last_records_recovers_the_model_after_every_whole_acknowledged_command() {
    let scratch = tempfile::tempdir().unwrap();
    for seed in [1u8, 2] {
        let dir = scratch.path().join(format!("run{seed}"));
        let acked = run(&dir, seed);
        let n = acked.ends.len() - 1;
        eprintln!(
            "seed {seed}: {n} commands acknowledged; cuts over bytes {}..={}, flips over {}..{}",
            acked.ends[n - CUT_RECORDS],
            acked.ends[n],
            acked.ends[n - FLIP_RECORDS],
            acked.ends[n]
        );
        // Cut at every byte from the start of the last CUT_RECORDS records to the end.
        for cut in acked.ends[n - CUT_RECORDS]..=acked.ends[n] {
            let d = scratch.path().join(format!("cut{seed}-{cut}"));
            let seg = copy_log(&dir, &d);
            fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
            let whole = acked.ends.iter().rposition(|&end| end <= cut).unwrap();
            check(&d, &acked, whole, &format!("seed {seed}, cut at byte {cut}"));
            fs::remove_dir_all(&d).unwrap();
        }
        // Flip a byte at every offset of the last FLIP_RECORDS records: recovery stops
        // before the damaged one.
        for at in acked.ends[n - FLIP_RECORDS]..acked.ends[n] {
            let d = scratch.path().join(format!("flip{seed}-{at}"));
            let seg = copy_log(&dir, &d);
            let mut bytes = fs::read(&seg).unwrap();
            bytes[at as usize] ^= 0x20;
            fs::write(&seg, &bytes).unwrap();
            let whole = acked.ends.iter().rposition(|&end| end <= at).unwrap();
            check(&d, &acked, whole, &format!("seed {seed}, byte {at} flipped"));
            fs::remove_dir_all(&d).unwrap();
        }
    }
}
