//! A webhook's signature header (`Dispatch-Signature` / `Stripe-Signature`: `t=…,v1=…`,
//! from anyone on the network) parsed from bytes must never panic; what parses is within
//! the bounds (at most 1 KiB, 1 to 8 `v1` entries) and renders back to a header that
//! parses to the same value; verifying it never panics and never accepts what does not
//! parse (finding 3 of issue 24).
//!
//! `cargo +nightly fuzz run signature_header` (from `fuzz/`). A stable proptest of the
//! same property runs in every test run (`domain/src/payment.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dispatch_core::payment::fuzz_signature_header(data);
});
