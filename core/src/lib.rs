//! # dispatch-core
//!
//! The domain and the engine of dispatch: no sockets, no HTTP, no files.
//!
//! ## Layout
//! - [`id`], [`clock`], [`money`], [`geo`]: the vocabulary (typed ids, injected
//!   time, integer money, validated coordinates).
//! - [`route`]: the distance and duration of a ride ([`route::RouteProvider`]) and the
//!   straight-line default (great circle × detour factor at a city speed).
//! - [`fare`]: the fare formula on integer minor units, waiting and cancellation fees,
//!   coupons and commission; one rounding rule (half up), no floats, overflow is an error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod fare;
pub mod geo;
pub mod id;
pub mod money;
pub mod route;
