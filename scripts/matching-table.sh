#!/usr/bin/env bash
# Greedy vs batched vs batched+learning on the same seeds, at three demand levels (issue 22):
# runs the `city` example (release, manual clock: each run is reproducible from its seed)
# for SEEDS x 3 demand levels x 3 modes and prints a markdown table of the means over the
# seeds (min-max where the spread matters) of the figures its last line reports.
#
# Demand levels, in terms of the drivers' capacity:
#   capacity (trips/hour) = DRIVERS x 60 / TRIP_MIN, where TRIP_MIN is the mean minutes a
#   driver spends on a trip (winning it -> completing it: pickup drive, boarding, ride). The
#   city prints it as `mean_trip_s`. TRIP_MIN's default, 9, is that figure measured on a
#   quiet city where pickups are short (300 drivers, 400 riders idling 1800 s, 60 minutes,
#   seed 1: 511 s = 8.5 min), rounded up. Busier cities drive further to their pickups
#   (about 10.5 min a trip at 2x capacity): capacity is the city's at its best.
#   A rider asks for a ride after an exponential idle time of mean IDLE_S, so R riders ask
#   for at most R x 3600 / IDLE_S rides an hour (fewer: a rider on a trip does not ask).
#   A level L (a multiple of capacity) runs R = L x capacity x IDLE_S / 3600 riders:
#     quiet = 0.25 x capacity, busy = 0.75 x capacity, 2x capacity = 2 x capacity.
#   The table's `req/h` column is the demand measured in each run (requested / minutes x 60),
#   and `x cap` that over capacity: above the level's factor, by about a quarter, because
#   within the run a rider whose first ride ended early may ask again (and the first rides
#   alone already come at R x 3600 / IDLE_S an hour).
#
# Usage: scripts/matching-table.sh    (SEEDS, DRIVERS, MINUTES, IDLE_S, TRIP_MIN, JOBS override
#                                      the defaults below; BIN=path/to/city skips the build)
# Takes < 10 minutes on 2 cores with the defaults (two runs at a time). Exits non-zero if any
# run failed or reported a double assignment.
set -euo pipefail
cd "$(dirname "$0")/.."

MODES="greedy batched learning"
LEVELS="quiet:0.25 busy:0.75 2x:2.0"

# shellcheck source=scripts/lib/city-runs.sh
. scripts/lib/city-runs.sh

jobs_file="$OUT/jobs"
: >"$jobs_file"
for level in $LEVELS; do
  name=${level%%:*}
  riders=$(riders_for "${level#*:}")
  for mode in $MODES; do
    for seed in $SEEDS; do
      echo "$name $mode $seed $riders" >>"$jobs_file"
    done
  done
done

run_one() {
  local name=$1 mode=$2 seed=$3 riders=$4
  local line
  if line=$("$BIN" --mode "$mode" --seed "$seed" --drivers "$DRIVERS" --riders "$riders" \
    --minutes "$MINUTES" --rider-idle-s "$IDLE_S" --every 600 | tail -n 1); then
    echo "level=$name $line" >"$OUT/run.$name.$mode.$seed"
  else
    echo "level=$name mode=$mode seed=$seed FAILED $line" >"$OUT/run.$name.$mode.$seed"
  fi
}
export -f run_one
export BIN OUT DRIVERS MINUTES IDLE_S

started=$(date +%s)
xargs -P "$JOBS" -L 1 bash -c 'run_one "$@"' _ <"$jobs_file"
elapsed=$(($(date +%s) - started))

cat "$OUT"/run.* >"$OUT/all"
if grep -q FAILED "$OUT/all"; then
  echo "failed runs:" >&2
  grep FAILED "$OUT/all" >&2
fi

echo "### Matching modes compared (issue 22)"
echo
echo "\`scripts/matching-table.sh\`: $DRIVERS drivers, $MINUTES simulated minutes, seeds $SEEDS;" \
  "capacity = $DRIVERS x 60 / $TRIP_MIN min per trip = $capacity trips/h; riders idle $IDLE_S s on average."
echo "Levels: quiet = 0.25 x capacity ($(riders_for 0.25) riders), busy = 0.75 x ($(riders_for 0.75) riders)," \
  "2x capacity = 2 x ($(riders_for 2.0) riders). Mean over seeds, (min-max) where shown. $elapsed s wall."
echo
awk -v levels="quiet busy 2x" -v modes="$MODES" -v minutes="$MINUTES" -v capacity="$capacity" '
  {
    level = ""; mode = "";
    for (i = 1; i <= NF; i++) {
      split($i, kv, "=");
      if (kv[1] == "level") level = kv[2];
      else if (kv[1] == "mode") mode = kv[2];
      else v[kv[1]] = kv[2];
    }
    if ($0 ~ /FAILED/) { failed[level, mode]++; next }
    key = level SUBSEP mode;
    n[key]++;
    v["req_h"] = v["requested"] * 60 / minutes;
    for (k in v) {
      if (v[k] == "-") continue;
      x = v[k] + 0;
      sum[key, k] += x; cnt[key, k]++;
      if (!((key, k) in lo) || x < lo[key, k]) lo[key, k] = x;
      if (!((key, k) in hi) || x > hi[key, k]) hi[key, k] = x;
    }
    delete v;
  }
  function mean(key, k, d) { return cnt[key, k] ? sprintf("%." d "f", sum[key, k] / cnt[key, k]) : "-" }
  function range(key, k, d) {
    return cnt[key, k] ? sprintf("%." d "f (%." d "f-%." d "f)", sum[key, k] / cnt[key, k], lo[key, k], hi[key, k]) : "-"
  }
  END {
    print "| demand | mode | req/h | x cap | match rate | match p50 s | match p95 s | mean pickup ETA s | p95 pickup ETA s | mean pickup m | declines/trip | idle % | earnings Gini | double assignments | runs |";
    print "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|";
    nl = split(levels, L, " "); nm = split(modes, M, " ");
    for (a = 1; a <= nl; a++) for (b = 1; b <= nm; b++) {
      key = L[a] SUBSEP M[b];
      label = (M[b] == "learning") ? "batched+learning" : M[b];
      xcap = cnt[key, "req_h"] ? sprintf("%.2f", sum[key, "req_h"] / cnt[key, "req_h"] / capacity) : "-";
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d%s |\n",
        L[a], label, mean(key, "req_h", 0), xcap, range(key, "match_rate", 3), mean(key, "match_p50_s", 1),
        range(key, "match_p95_s", 1), range(key, "mean_pickup_eta_s", 1), mean(key, "p95_pickup_eta_s", 0),
        mean(key, "mean_pickup_m", 0), mean(key, "declines_per_trip", 2), mean(key, "idle_pct", 1),
        mean(key, "earnings_gini", 3), (cnt[key, "double_assignments"] ? sum[key, "double_assignments"] : "-"),
        n[key], (failed[L[a], M[b]] ? ", " failed[L[a], M[b]] " failed" : "");
    }
  }' "$OUT/all"

if grep -q FAILED "$OUT/all" || grep -Eq 'double_assignments=[1-9]' "$OUT/all"; then
  exit 1
fi
