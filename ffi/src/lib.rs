//! # dispatch-ffi
//!
//! The C ABI of dispatch (issue 5): the fare estimator on its own and an opaque
//! engine handle. Nothing is exported yet; the header lives in `include/dispatch.h`.
#![deny(missing_docs)]
