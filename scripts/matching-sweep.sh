#!/usr/bin/env bash
# Sweeps rules of batched matching on the same seeds (issue 22): runs the `city` example for
# each VARIANT x LEVEL x SEED and prints one markdown row per variant and level with the
# means over the seeds of the figures the defaults were chosen by (match rate, time to match
# p50/p95, mean pickup ETA, declines per trip, earnings Gini).
#
# A variant is `label=mode[,flag=value...]`: the mode, then `city` flags without their
# leading dashes, e.g.
#   VARIANTS="greedy=greedy x4=batched,batch-exclusive-s=4 w3=batched,batch-window-ms=3000"
#   VARIANTS="l100_50=learning,learning=100/50"
# Levels as in scripts/matching-table.sh (same capacity arithmetic); LEVELS picks a subset:
#   LEVELS="quiet:0.25 busy:0.75" (default: the three).
#
# Usage: VARIANTS="..." scripts/matching-sweep.sh   (SEEDS, DRIVERS, MINUTES, IDLE_S,
#         TRIP_MIN, JOBS, LEVELS, BIN as in matching-table.sh)
# The city's figures are simulated time: the same on every run of a seed, whatever the load.
set -euo pipefail
cd "$(dirname "$0")/.."

LEVELS=${LEVELS:-"quiet:0.25 busy:0.75 2x:2.0"}
VARIANTS=${VARIANTS:?"set VARIANTS, e.g. VARIANTS=\"greedy=greedy x4=batched,batch-exclusive-s=4\""}

# shellcheck source=scripts/lib/city-runs.sh
. scripts/lib/city-runs.sh

: >"$OUT/jobs"
for level in $LEVELS; do
  for variant in $VARIANTS; do
    for seed in $SEEDS; do
      echo "${level%%:*} $(riders_for "${level#*:}") $variant $seed" >>"$OUT/jobs"
    done
  done
done

run_one() {
  local level=$1 riders=$2 variant=$3 seed=$4
  local label=${variant%%=*} spec=${variant#*=}
  local mode=${spec%%,*} flags=()
  if [ "$spec" != "$mode" ]; then
    local rest=${spec#*,} kv
    IFS=, read -ra kvs <<<"$rest"
    for kv in "${kvs[@]}"; do flags+=("--${kv%%=*}" "${kv#*=}"); done
  fi
  local line
  if line=$("$BIN" --mode "$mode" "${flags[@]}" --seed "$seed" --drivers "$DRIVERS" --riders "$riders" \
    --minutes "$MINUTES" --rider-idle-s "$IDLE_S" --every 600 | tail -n 1); then
    echo "level=$level variant=$label $line" >"$OUT/run.$level.$label.$seed"
  else
    echo "level=$level variant=$label FAILED" >"$OUT/run.$level.$label.$seed"
  fi
}
export -f run_one
export BIN OUT DRIVERS MINUTES IDLE_S

xargs -P "$JOBS" -L 1 bash -c 'run_one "$@"' _ <"$OUT/jobs"
cat "$OUT"/run.* >"$OUT/all"

levels=""
for level in $LEVELS; do levels="$levels ${level%%:*}"; done
labels=""
for variant in $VARIANTS; do labels="$labels ${variant%%=*}"; done
awk -v levels="$levels" -v labels="$labels" '
  {
    level = ""; label = "";
    for (i = 1; i <= NF; i++) {
      split($i, kv, "=");
      if (kv[1] == "level") level = kv[2];
      else if (kv[1] == "variant") label = kv[2];
      else v[kv[1]] = kv[2];
    }
    key = level SUBSEP label;
    if ($0 ~ /FAILED/) { failed[key]++; delete v; next }
    n[key]++;
    for (k in v) { if (v[k] != "-") { sum[key, k] += v[k]; cnt[key, k]++ } }
    if (v["double_assignments"] + 0 > 0) doubles[key] += v["double_assignments"];
    delete v;
  }
  function m(key, k, d) { return cnt[key, k] ? sprintf("%." d "f", sum[key, k] / cnt[key, k]) : "-" }
  END {
    print "| demand | variant | match rate | match p50 s | match p95 s | mean pickup ETA s | declines/trip | earnings Gini | runs |";
    print "|---|---|--:|--:|--:|--:|--:|--:|--:|";
    nl = split(levels, L, " "); nv = split(labels, V, " ");
    for (a = 1; a <= nl; a++) for (b = 1; b <= nv; b++) {
      key = L[a] SUBSEP V[b];
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %d%s%s |\n", L[a], V[b], m(key, "match_rate", 3),
        m(key, "match_p50_s", 1), m(key, "match_p95_s", 1), m(key, "mean_pickup_eta_s", 1),
        m(key, "declines_per_trip", 2), m(key, "earnings_gini", 3), n[key],
        (failed[key] ? ", " failed[key] " failed" : ""), (doubles[key] ? ", DOUBLE ASSIGNMENTS" : "");
    }
  }' "$OUT/all"

if grep -q FAILED "$OUT/all" || grep -Eq 'double_assignments=[1-9]' "$OUT/all"; then
  exit 1
fi
