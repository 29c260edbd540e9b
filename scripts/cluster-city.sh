#!/usr/bin/env bash
# A follower's lag under the load generator's city (issue 21; BENCHMARKS.md "The cluster"):
# three clustered nats-servers and three dispatchd nodes on loopback, the load generator's
# city sent to a FOLLOWER (so every write is forwarded to the leader and every offer reaches
# the drivers' sockets from the follower's replay), while each follower's GET /v1/cluster is
# sampled every 200 ms. Prints the load generator's report and the followers' lag_ms
# (p50, p99, max) over the run. With ROLLING=1, scripts/rolling-restart.sh restarts every
# node (SIGTERM, then start again on its data directory; followers first, the leader last)
# while the city runs: the load generator's correctness line must still read 0 lost.
#
#   bash scripts/cluster-city.sh [loadgen flags...]     # e.g. --drivers 1000 --trip-rate 50
#   ROLLING=1 bash scripts/cluster-city.sh --seconds 60
#
# Needs nats-server (scripts/deps.sh) and curl; builds the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p dispatch-server --bins
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for f in "$work"/n*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export DISPATCH_ADMIN_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DISPATCH_TOKEN_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DISPATCH_WEBHOOK_SECRET_SIM=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DISPATCH_SMS_SINK="file:$work/sms.jsonl"

np=() cp=()
for i in 0 1 2; do np+=("$(port)"); cp+=("$(port)"); done
routes="nats://127.0.0.1:${cp[0]},nats://127.0.0.1:${cp[1]},nats://127.0.0.1:${cp[2]}"
for i in 0 1 2; do
    mkdir -p "$work/nats$i"
    "$nats" -n "nats$i" -a 127.0.0.1 -p "${np[$i]}" -js -sd "$work/nats$i" --cluster_name city \
        -cluster "nats://127.0.0.1:${cp[$i]}" -routes "$routes" >"$work/nats$i.log" 2>&1 &
    pids+=($!)
done
sleep 2
urls="nats://127.0.0.1:${np[0]},nats://127.0.0.1:${np[1]},nats://127.0.0.1:${np[2]}"
# The load generator's limits (its --spawn config): every socket comes from 127.0.0.1.
cat >"$work/dispatch.toml" <<'TOML'
[server]
max_connections_per_ip = 1000000
ws_per_staff = 1000000
[limits]
trip_create_per_min = 100000
accept_per_min = 100000
user_per_min = 1000000
ip_per_min = 100000
open_trips_per_rider = 100
location_min_interval_ms = 500
TOML
hp=()
for i in 1 2 3; do
    p=$(port); hp+=("$p")
    # Each node's start command in a file, so the rolling restart can start it again.
    cat >"$work/start-n$i.sh" <<START
target/release/dispatchd serve --config "$work/dispatch.toml" --listen "127.0.0.1:$p" \\
    --data-dir "$work/n$i" --cluster "$urls" \\
    --node-id "n$i" --advertise "http://127.0.0.1:$p" >>"$work/n$i.log" 2>&1 &
echo \$! >"$work/n$i.pid"
START
    bash "$work/start-n$i.sh"
done
# Stops node {node} with SIGTERM (a clean stop: a leader gives its lease up), waits for it
# to exit, and starts it again on its data directory.
cat >"$work/restart.sh" <<'RESTART'
set -eu
work=$(dirname "$0"); node=$1
pid=$(cat "$work/$node.pid")
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
bash "$work/start-$node.sh"
RESTART
status() { curl -s -H "Authorization: Bearer $DISPATCH_ADMIN_TOKEN" "http://127.0.0.1:$1/v1/cluster" || true; }
leader=""
for _ in $(seq 1 100); do
    for p in "${hp[@]}"; do
        if status "$p" | grep -q '"role":"leader"'; then leader=$p; fi
    done
    [ -n "$leader" ] && break
    sleep 0.2
done
[ -n "$leader" ] || { echo "no leader elected" >&2; tail -5 "$work"/n*.log >&2; exit 1; }
followers=()
for p in "${hp[@]}"; do [ "$p" != "$leader" ] && followers+=("$p"); done
echo "leader on :$leader; the city goes to the follower on :${followers[0]}"

# The demo zone the load generator books in: made through the follower (forwarded; a
# follower that does not know the leader yet answers 503 not_leader: retried, same key).
for _ in $(seq 1 50); do
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $DISPATCH_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -H 'Idempotency-Key: city-zone' \
    --data '{"name": "Cairo", "currency": "EGP", "active": true,
        "polygon": {"type": "Polygon", "coordinates": [[[31.0,29.9],[31.5,29.9],[31.5,30.3],[31.0,30.3],[31.0,29.9]]]},
        "pricing": {"economy": {"base_minor": 1500, "per_km_minor": 450, "per_min_minor": 75,
            "minimum_minor": 2500, "booking_fee_minor": 300, "cancel_fee_minor": 1000,
            "wait_per_min_minor": 50, "free_wait_s": 180, "commission_bps": 1500}},
        "surge": {"enabled": false, "max_bps": 10000}, "extra_fee_minor": 0}' \
    "http://127.0.0.1:${followers[0]}/v1/admin/zones" || true)
[ "$code" = 201 ] || [ "$code" = 200 ] && break
sleep 0.2
done
echo "zone: $code"

sample() {
    while :; do
        for p in "${followers[@]}"; do
            status "$p" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lag_ms"])' 2>/dev/null || true
        done
        sleep 0.2
    done >"$work/lag.txt"
}
sample &
sampler=$!
pids+=($sampler)
if [ "${ROLLING:-}" = 1 ]; then
    target/release/dispatch-loadgen --addr "127.0.0.1:${followers[0]}" --fanout 0 "$@" &
    loadgen=$!
    sleep 10
    bash scripts/rolling-restart.sh --timeout 60 --restart "bash $work/restart.sh {node}" \
        "http://127.0.0.1:${hp[0]}" "http://127.0.0.1:${hp[1]}" "http://127.0.0.1:${hp[2]}"
    wait "$loadgen" || echo "the load generator exited with $?"
else
    target/release/dispatch-loadgen --addr "127.0.0.1:${followers[0]}" --fanout 0 "$@"
fi
kill "$sampler" 2>/dev/null || true
python3 - "$work/lag.txt" <<'PY'
import sys
xs = sorted(int(l) for l in open(sys.argv[1]) if l.strip().isdigit())
if not xs:
    sys.exit("no lag samples")
q = lambda p: xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))]
print(f"followers' lag_ms over {len(xs)} samples: p50 {q(0.5)}  p99 {q(0.99)}  max {xs[-1]}")
PY
