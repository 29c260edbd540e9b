#!/usr/bin/env bash
# DESIGN.md's "connected drivers on one node": 100,000 WebSocket drivers each reporting a
# position every 3 s (33,000 positions/s sustained) for 5 minutes while riders book 100
# trips/s, on one `dispatchd` and over loopback. Prints the load generator's report: every
# endpoint's latency, the service-level table of DESIGN.md (met or not), correctness (no
# acknowledged trip lost, none won twice), the fan-out to 1,000 sockets afterwards, and the
# server's and the generator's CPU time and resident memory (read from /proc at the end).
#
#   scripts/scale-100k.sh                       # the whole run
#   DRIVERS=30000 SECONDS_OF_LOAD=60 scripts/scale-100k.sh   # a smaller one
#   scripts/scale-100k.sh --json > report.json  # extra flags go to dispatch-loadgen
#
# Environment: DRIVERS (100000), RIDERS (2000), TRIP_RATE (100), SECONDS_OF_LOAD (300),
# LOCATION_MS (3000), FANOUT (1000), BIN (target/release: builds dispatch-server's
# binaries there when they are missing).
#
# What it takes from the machine, and why:
# - descriptors: every driver's socket is one in the generator and one in the server, so
#   the hard RLIMIT_NOFILE is raised here (`ulimit -Hn`: root or CAP_SYS_RESOURCE); the
#   generator raises its soft limit to it, and the server it spawns (which inherits it)
#   raises its own (`admission::FdLimit::raise`; its budget is 100,000 sockets plus 20,000
#   HTTP connections);
# - ports: one (source, destination) pair has only the ephemeral range (~28,000 ports),
#   so the generator's connections leave from 127.0.0.1 … 127.0.0.N, one address per 10,000
#   drivers (`--source-ips`); Linux routes all of 127.0.0.0/8 to loopback;
# - the SYN storm: drivers connect 512 at a time (`--connect-concurrency`) before the load's
#   clock starts (`--warmup`), so the listen backlog never overflows;
# - the server's per-address cap and rate limits are opened by `--spawn`'s config
#   (`max_connections_per_ip`, `ws_per_staff`, the per-user limits).
set -euo pipefail

cd "$(dirname "$0")/.."
drivers="${DRIVERS:-100000}"
riders="${RIDERS:-2000}"
trip_rate="${TRIP_RATE:-100}"
seconds="${SECONDS_OF_LOAD:-300}"
location_ms="${LOCATION_MS:-3000}"
fanout="${FANOUT:-1000}"
bin="${BIN:-target/release}"

if [ ! -x "$bin/dispatch-loadgen" ] || [ ! -x "$bin/dispatchd" ]; then
    echo "scale-100k: building $bin/dispatchd and $bin/dispatch-loadgen" >&2
    cargo build --release -p dispatch-server --bins >&2
fi

# Each side holds a descriptor per driver's socket, per rider's connection and per
# connection of the one driver in ten who reports over HTTP, plus the HTTP connections
# drivers open to act (going online, 512 at a time; an offer and its ride) and the
# server's own files; the fan-out's sockets open after the drivers' close. (17,000
# drivers under a limit of 20,000 spent the server's budget of 19,936 connections.)
need=$(( drivers + drivers / 10 + riders + 2000 ))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
    ulimit -Hn "$need" 2>/dev/null || {
        # Root in a container without CAP_SYS_RESOURCE cannot raise it either: the server
        # then serves at most (limit - 64) connections, whatever the generator does.
        hard=$(ulimit -Hn)
        echo "scale-100k: the hard descriptor limit is $hard and cannot be raised here (root with CAP_SYS_RESOURCE can: ulimit -Hn, or LimitNOFILE= in systemd);" \
             "$need are needed for $drivers drivers. What fits: RIDERS=$riders DRIVERS=$(( (hard - riders - 2000) * 10 / 11 / 1000 * 1000 )) $0" >&2
        exit 1
    }
fi
[ "$(ulimit -Hn)" = unlimited ] || ulimit -n "$(ulimit -Hn)"

ports=$(awk '{print $2 - $1 + 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo "?")
echo "scale-100k: $drivers drivers every ${location_ms} ms, $riders riders booking $trip_rate trips/s, ${seconds} s;" \
     "descriptors $(ulimit -n), ephemeral ports per address $ports, somaxconn $(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo '?')," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2

exec "$bin/dispatch-loadgen" --spawn --warmup \
    --drivers "$drivers" --riders "$riders" --trip-rate "$trip_rate" --seconds "$seconds" \
    --location-ms "$location_ms" --fanout "$fanout" --progress-s 10 "$@"
