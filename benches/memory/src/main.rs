//! Live heap bytes per driver in a whole engine, counted exactly.
//!
//! A counting global allocator (the only `unsafe` here: it forwards to the system
//! allocator and adds or subtracts each block's size) measures what the engine *holds*,
//! unlike resident memory, which also counts what the allocator keeps after frees (the
//! copy-on-write of driver records frees the old copy once readers move on).
//!
//! Phases, 100,000 drivers: accounts created (user + driver records, phone index, the
//! readers' view), then online at a position (the position, the R-tree entry, the id map),
//! then one position report each (moves in the index); then the engine restarted from
//! its log.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use dispatch_core::{Actor, Category, Command, Engine, EngineConfig, LatLng, NewUser, Role, UserId, Vehicle};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's layout and pointer
// unchanged, so `System`'s guarantees are ours; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DRIVERS: u64 = 100_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    {
        use dispatch_core::clock::Timestamp;
        use dispatch_core::geo::{CategoryCode, DriverIndex};
        let before = live();
        let mut index = DriverIndex::new();
        for i in 1..=DRIVERS {
            let p = LatLng::new(30.0 + (i / 400) as f64 * 0.001, 31.0 + (i % 400) as f64 * 0.001).expect("a position");
            index.upsert(UserId::from_raw(i).expect("non-zero"), p, CategoryCode(0), Timestamp::from_millis(0));
        }
        println!("live heap per driver in the index alone (inserted one by one):            {} B", (live() - before) / DRIVERS as isize);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // No checkpoint during the count: a checkpoint's state copy lives in its thread while it
    // is written, and would be counted in one phase and freed in the next.
    let mut config = EngineConfig::default().with_data_dir(dir.path());
    config.checkpoint_every_records = u64::MAX;
    let engine = Engine::open(config).expect("engine");
    dispatch::scenario::ensure_zone(&engine).expect("zone");
    let economy = Category::new("economy").expect("category");
    let at = |i: u64| {
        LatLng::new(30.0 + (i / 400) as f64 * 0.001, 31.0 + (i % 400) as f64 * 0.001).expect("a position")
    };
    let ids: Vec<UserId> = (1..=DRIVERS).map(|i| UserId::from_raw(i).expect("non-zero")).collect();
    // Let the engine settle (threads, buffers) before counting.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let base = live();
    let create: Vec<_> = ids
        .iter()
        .map(|&id| {
            let n = id.raw();
            let vehicle = Some(Vehicle::new(economy.clone(), format!("ABC {n}")));
            let new = NewUser { id: Some(id), role: Role::Driver, name: format!("Driver {n}"), phone: format!("+2010{n:08}"), vehicle };
            (Actor::Admin, Command::CreateUser(new))
        })
        .collect();
    assert!(dispatch::scenario::pipeline(&engine, create).iter().all(Result::is_ok));
    let accounts = live();
    let online: Vec<_> =
        ids.iter().map(|&id| (Actor::User(id), Command::SetDriverStatus { online: true, location: Some(at(id.raw())) })).collect();
    assert!(dispatch::scenario::pipeline(&engine, online).iter().all(Result::is_ok));
    let on = live();
    let n = DRIVERS as isize;
    println!("live heap per driver account (user + driver records, phone index, view): {} B", (accounts - base) / n);
    println!("live heap added per driver going online (position, index entry):          {} B", (on - accounts) / n);
    println!("live heap per online driver, all of it:                                   {} B", (on - base) / n);
    drop(engine.shutdown().expect("shutdown"));
    // The same engine restarted: the readers' view shares the recovered state's account
    // maps instead of holding copies of its own.
    let before = live();
    let engine = Engine::open(config_again(dir.path())).expect("engine");
    std::thread::sleep(std::time::Duration::from_millis(200));
    println!("live heap per online driver after a restart:                              {} B", (live() - before) / n);
    engine.shutdown().expect("shutdown");
}

fn config_again(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::default().with_data_dir(dir);
    config.checkpoint_every_records = u64::MAX;
    config
}
