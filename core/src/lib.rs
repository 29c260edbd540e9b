//! # dispatch-core
//!
//! The domain and the engine of dispatch: no sockets, no HTTP, no files.
//!
//! ## Layout
//! - [`id`], [`clock`], [`money`], [`geo`]: the vocabulary (typed ids, injected
//!   time, integer money, validated coordinates).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod geo;
pub mod id;
pub mod money;
