#!/usr/bin/env bash
# What a notification item costs the writer on the accept path (issue 18), in
# instructions: `examples/accept_cost.rs` under callgrind, riders with no device and
# with one, each run less the same run without the accepts (`skip`), per accept.
#
# Reported: the inclusive cost of `state::apply` and of `View::publish` on the writer
# thread — the work an accept causes. The thread's own total also counts its waits for
# the next batch (how long they spin depends on the timing of the run), which moved it
# by several hundred instructions between runs of one binary; these two do not move.
#
#   scripts/accept-cost.sh [accept|one] [runs]
#     accept: 2,000 accepts pipelined (batches as a busy server makes them)
#     one:    each accept alone, waited for (a batch each, as at a quiet hour)
#
# Needs valgrind and python3. HOOKS=n adds n webhook endpoints (a delivery per accept).
set -euo pipefail
mode=${1:-one}
runs=${2:-2}
case $mode in accept | one) ;; *) echo "usage: $0 [accept|one] [runs]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
cargo build --quiet --profile profiling --example accept_cost
bin=target/profiling/examples/accept_cost
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for run in $(seq "$runs"); do
    for devices in 0 1; do
        for m in skip "$mode"; do
            DEVICES=$devices valgrind --tool=callgrind --separate-threads=yes \
                --callgrind-out-file="$out/cg.$run.$devices.$m" "$bin" "$m" > /dev/null 2>&1
        done
    done
done
python3 - "$out" "$mode" "$runs" <<'PY'
import re, subprocess, sys

out, mode, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ACCEPTS = 2000
PATTERNS = {
    "apply": r"state/mod\.rs:dispatch_domain::state::apply \[",
    "publish": r"core/src/view\.rs:dispatch_core::view::View::publish \[",
}


def inclusive(path):
    """The writer thread's (the file ending -03) inclusive cost of each pattern."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path + "-03"],
        capture_output=True, text=True, check=True,
    ).stdout
    found = dict.fromkeys(PATTERNS, 0)
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S.*)$", line)
        if not m or m.group(2).startswith("=>"):
            continue
        for key, pattern in PATTERNS.items():
            if re.search(pattern, m.group(2)):
                found[key] += int(m.group(1).replace(",", ""))
    return found


for run in range(1, runs + 1):
    per = {}
    for devices in "01":
        base = f"{out}/cg.{run}.{devices}"
        accepted, skipped = inclusive(f"{base}.{mode}"), inclusive(f"{base}.skip")
        per[devices] = {k: (accepted[k] - skipped[k]) / ACCEPTS for k in PATTERNS}
    item = {k: per["1"][k] - per["0"][k] for k in PATTERNS}
    print(
        f"run {run} ({mode}): per accept apply + publish, no device "
        f"{per['0']['apply']:.0f} + {per['0']['publish']:.0f}, one device "
        f"{per['1']['apply']:.0f} + {per['1']['publish']:.0f}; the item "
        f"{item['apply']:.0f} + {item['publish']:.0f} = {sum(item.values()):.0f}"
    )
PY
