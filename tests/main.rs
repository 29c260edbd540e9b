//! Black-box tests of the whole workspace, compiled into one binary (one link
//! instead of one per file). Each module drives the public API only.
#![allow(clippy::unwrap_used, missing_docs)]

mod architecture;
mod crash_process;
mod durability;
mod engine_model;
mod model_crash;
mod payments;
mod race;
mod scheduled_restart;
