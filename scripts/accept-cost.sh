#!/usr/bin/env bash
# What a notification item costs the writer on the accept path (issue 18), in
# instructions: `examples/accept_cost.rs` under callgrind, riders with no device and
# with one, each run less the same run without the accepts (`skip`), per accept.
#
# Counted: only inside `state::apply` and `View::publish` on the writer thread (callgrind's
# `--toggle-collect`) — the work the accepts cause. The thread's whole total also counts
# its waits for the next batch, whose spinning depends on the run's timing: it moved by
# several hundred instructions an accept between runs of one binary; these do not.
#
#   scripts/accept-cost.sh [accept|one] [runs]
#     accept: 2,000 accepts pipelined (batches as a busy server makes them)
#     one:    each accept alone, waited for (a batch each, as at a quiet hour)
#
# Needs valgrind. `HOOKS=n` adds n webhook endpoints (a delivery per accept);
# `ACCEPT_COST_BIN` runs another build of the example (to compare builds).
set -euo pipefail
mode=${1:-one}
runs=${2:-2}
case $mode in accept | one) ;; *) echo "usage: $0 [accept|one] [runs]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
bin=${ACCEPT_COST_BIN:-}
if [[ -z $bin ]]; then
    cargo build --quiet --profile profiling --example accept_cost
    bin=target/profiling/examples/accept_cost
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
accepts=2000
# The writer thread's count (its file ends -03) in run `$1`, per accept, less the `skip` run's.
per_accept() {
    local run=$1 accepted skipped
    accepted=$(awk '/^summary:/ { print $2 }' "$run.$mode-03")
    skipped=$(awk '/^summary:/ { print $2 }' "$run.skip-03")
    echo $(((accepted - skipped) / accepts))
}
for run in $(seq "$runs"); do
    for devices in 0 1; do
        for m in skip "$mode"; do
            DEVICES=$devices valgrind --tool=callgrind --separate-threads=yes \
                --toggle-collect='dispatch_domain::state::apply' \
                --toggle-collect='dispatch_core::view::View::publish' \
                --callgrind-out-file="$out/cg.$run.$devices.$m" "$bin" "$m" > /dev/null 2>&1
        done
    done
    without=$(per_accept "$out/cg.$run.0")
    with=$(per_accept "$out/cg.$run.1")
    echo "run $run ($mode): writer instructions per accept in apply and publish:" \
        "no device $without, one device $with; the item $((with - without))"
done
