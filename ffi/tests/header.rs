//! The checked-in header `include/dispatch.h` is what cbindgen makes of the crate today.
//!
//! Regenerates the header in memory with the `cbindgen` crate and `cbindgen.toml`, and
//! fails if it differs from the checked-in file. `DISPATCH_BLESS_HEADER=1` writes the new
//! header instead (then review and commit it).

// Tests may unwrap: a panic is a failing test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn checked_in_header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml parses");
    let bindings = cbindgen::generate_with_config(crate_dir, config).expect("cbindgen parses the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("include/dispatch.h");
    if std::env::var_os("DISPATCH_BLESS_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/dispatch.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "ffi/include/dispatch.h is out of date with the crate's exported API.\n\
         Regenerate it with:\n    DISPATCH_BLESS_HEADER=1 cargo test -p dispatch-ffi --test header\n\
         then review the diff and commit it.\n\n--- generated ---\n{generated}"
    );
}
