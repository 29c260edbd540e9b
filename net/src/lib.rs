//! dispatch-server as a library: what `dispatchd` is built from.

pub mod osrm;
