//! What the server parses from the network must never panic: WebSocket client frames,
//! query strings and cursors, bearer tokens, and the strict JSON bodies.
//!
//! `cargo +nightly fuzz run server_input` (from `fuzz/`). A stable proptest of the same
//! property runs in every test run (`net/src/ws/frames.rs`, `fuzz_twin`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dispatch_server::fuzz_input(data);
});
