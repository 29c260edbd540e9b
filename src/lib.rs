//! # dispatch
//!
//! The umbrella package of the workspace. It owns the runnable examples, the
//! black-box tests and the benches, and holds the scenarios they share, so an
//! example and the test that checks it run the same code.
//!
//! - [`city`]: the simulated city of `dispatch_sim`, run and reported.
//! - [`race`]: many drivers accepting the same trip at the same instant.
//! - [`scenario`]: users, online drivers and trip requests, for the rest to build on.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod city;
pub mod race;
pub mod scenario;

pub use dispatch_core;
pub use dispatch_storage;
