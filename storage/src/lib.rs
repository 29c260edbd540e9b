//! # dispatch-storage
//!
//! Durability for dispatch: the write-ahead log and the redb checkpoint. It stores
//! opaque records and knows nothing of trips.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
