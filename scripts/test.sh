#!/usr/bin/env bash
# The whole test suite: unit, property, model, race and doc tests of every crate.
# This is the README's test command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo test --workspace --no-fail-fast "$@"
