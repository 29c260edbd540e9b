#!/usr/bin/env bash
# System packages the test suite needs beyond the Rust toolchain, installed from the
# distribution's registry when missing (idempotent; does nothing when all are present):
# - gcc, libc headers and valgrind: the C ABI tests compile examples/fare_estimate.c and
#   run it under valgrind (ffi/tests/c_example.rs). Skipped with DISPATCH_SKIP_C_TESTS=1.
# - chromium and chromium-driver: the console's browser tests drive a headless Chromium
#   through chromedriver (net/tests/console.rs). Skipped with DISPATCH_SKIP_BROWSER_TESTS=1;
#   without it a missing chromedriver makes those tests fail, never skip.
# - prometheus (Debian's package ships `promtool`): the observability tests check /metrics
#   with `promtool check metrics` and ops/prometheus/alerts.yml with `promtool check rules`
#   (net/tests/observability.rs). Skipped with DISPATCH_SKIP_PROMTOOL=1; without it a
#   missing promtool makes those tests fail, never skip.
# - nats-server (Debian's 2.9): the cluster's tests run a 3-server JetStream cluster on
#   loopback (cluster/tests/, net/tests/cluster.rs). Skipped with DISPATCH_SKIP_NATS=1;
#   without it a missing nats-server makes those tests fail, never skip.
set -euo pipefail

need=()
if [ "${DISPATCH_SKIP_C_TESTS:-}" = 1 ]; then
    echo "system packages: DISPATCH_SKIP_C_TESTS=1, not checking the C toolchain"
else
    command -v cc >/dev/null && [ -e /usr/include/stdio.h ] || need+=(gcc libc6-dev)
    command -v valgrind >/dev/null || need+=(valgrind)
fi
if [ "${DISPATCH_SKIP_BROWSER_TESTS:-}" = 1 ]; then
    echo "system packages: DISPATCH_SKIP_BROWSER_TESTS=1, not checking Chromium"
else
    command -v chromedriver >/dev/null || need+=(chromium chromium-driver)
fi
if [ "${DISPATCH_SKIP_PROMTOOL:-}" = 1 ]; then
    echo "system packages: DISPATCH_SKIP_PROMTOOL=1, not checking promtool"
else
    command -v promtool >/dev/null || need+=(prometheus)
fi

if [ "${DISPATCH_SKIP_NATS:-}" = 1 ]; then
    echo "system packages: DISPATCH_SKIP_NATS=1, not checking nats-server"
else
    command -v nats-server >/dev/null || need+=(nats-server)
fi

if [ ${#need[@]} -eq 0 ]; then
    echo "system packages: all present"
    exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then as_root=(sudo); else
        echo "need ${need[*]} but not root and no sudo: install them, or set DISPATCH_SKIP_C_TESTS=1 / DISPATCH_SKIP_BROWSER_TESTS=1 / DISPATCH_SKIP_PROMTOOL=1 / DISPATCH_SKIP_NATS=1" >&2
        exit 1
    fi
fi
echo "system packages: installing ${need[*]}"
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
