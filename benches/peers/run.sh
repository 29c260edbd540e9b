#!/usr/bin/env bash
# The peer comparison of issue 8, in one command: dispatch against Redis (GEOSEARCH, GEOADD)
# and PostgreSQL + PostGIS (KNN, the usual accept transaction) on this machine, in one run.
#
# - installs what is missing from Debian's packages (redis-server, postgresql, the PostGIS
#   package matching the installed PostgreSQL major version);
# - starts, on loopback only, in a fresh temp dir: Redis as it ships (in memory), Redis with
#   `appendonly yes` + `appendfsync always`, and a throwaway PostgreSQL cluster (as the
#   `postgres` user when run as root: PostgreSQL refuses to run as root);
# - runs `dispatch-peers` (benches/peers/src/main.rs), which prints one table;
# - stops every server it started and deletes the temp dir on exit, however it exits.
#
# Usage: bash benches/peers/run.sh [extra dispatch-peers arguments, e.g. --drivers 20000]
# Env:   PEERS_TMPDIR (parent of the temp dir; default /tmp: dispatch's WAL and PostgreSQL's
#        data go there, so both fsync to the same disk), CARGO_TARGET_DIR as usual.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '==> %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# --- packages ----------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -n "$(pg_bin)" ] || missing+=(postgresql)
apt_install() {
    say "installing: $*"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
PG_BIN="$(pg_bin)"
PG_MAJOR="$(basename "$(dirname "$PG_BIN")")"
if ! ls /usr/lib/postgresql/"$PG_MAJOR"/lib/postgis-3.so >/dev/null 2>&1; then
    apt_install "postgresql-$PG_MAJOR-postgis-3"
fi
say "PostgreSQL $PG_MAJOR at $PG_BIN; $(redis-server --version | cut -d' ' -f1-3)"

# --- servers -----------------------------------------------------------------------------
WORK="$(mktemp -d "${PEERS_TMPDIR:-/tmp}/dispatch-peers.XXXXXX")"
chmod 755 "$WORK"
REDIS_PIDS=()
PGDATA="$WORK/pg"
PG_AS=()
cleanup() {
    set +e
    for pid in "${REDIS_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [ -f "$PGDATA/postmaster.pid" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

start_redis() { # name port extra-args...
    local name="$1" port="$2"
    shift 2
    mkdir -p "$WORK/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$name" --logfile "$WORK/$name.log" \
        --daemonize no "$@" &
    REDIS_PIDS+=("$!")
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    say "redis $name did not start:"; cat "$WORK/$name.log" >&2; exit 1
}
REDIS_PORT="$(free_port)"
start_redis redis-mem "$REDIS_PORT"
REDIS_AOF_PORT="$(free_port)"
start_redis redis-aof "$REDIS_AOF_PORT" --appendonly yes --appendfsync always

PG_PORT="$(free_port)"
if [ "$(id -u)" -eq 0 ]; then
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    PG_AS=(runuser -u postgres --)
fi
mkdir -p "$PGDATA"
[ ${#PG_AS[@]} -eq 0 ] || chown postgres: "$PGDATA"
"${PG_AS[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U bench --auth=trust -E UTF8 --no-locale >"$WORK/initdb.log"
# Durable, as shipped: fsync and synchronous_commit on (the defaults, stated anyway), more
# connections than the 32 clients, shared_buffers large enough to hold the working set.
PG_OPTS="-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGDATA -c fsync=on"
PG_OPTS+=" -c synchronous_commit=on -c max_connections=100 -c shared_buffers=256MB"
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -o "$PG_OPTS" start >/dev/null
mkdir -p "$WORK/dispatch"

# --- run ---------------------------------------------------------------------------------
say "building dispatch-peers (release)"
cargo build --release --quiet --locked --manifest-path benches/peers/Cargo.toml
say "running: Redis on :$REDIS_PORT and :$REDIS_AOF_PORT, PostgreSQL on :$PG_PORT, temp dir $WORK"
cargo run --release --quiet --locked --manifest-path benches/peers/Cargo.toml -- \
    --redis "redis://127.0.0.1:$REDIS_PORT/" \
    --redis-aof "redis://127.0.0.1:$REDIS_AOF_PORT/" \
    --postgres "host=127.0.0.1 port=$PG_PORT user=bench dbname=postgres" \
    --data-dir "$WORK/dispatch" "$@"
