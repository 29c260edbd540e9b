//! Decoding a log record from bytes read off disk must never panic, and whatever
//! decodes must survive another encode/decode round trip unchanged (compared as
//! bytes, so a NaN inside is still compared exactly).
//!
//! `cargo +nightly fuzz run wal_record` (from `fuzz/`). A stable proptest of the same
//! property runs in every test run (`core/src/engine.rs`).
#![no_main]

use dispatch_core::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let once = record.encode().expect("a decoded record encodes");
        let twice = Record::decode(&once).expect("re-decodes").encode().expect("encodes again");
        assert_eq!(once, twice);
    }
});
