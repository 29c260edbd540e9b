#!/usr/bin/env bash
# Restarts the nodes of a dispatch cluster one at a time with zero lost writes
# (docs/cluster.md): every follower first, each waited for until it is back and caught up
# (GET /v1/cluster: it answers, a leader is known, lag_ms is 0 and it applied the stream's
# end), then the leader, which gives its lease up at a clean stop (SIGTERM) so a follower
# takes over at once. Clients retry 503 not_leader with the same Idempotency-Key.
#
#   DISPATCH_ADMIN_TOKEN=... scripts/rolling-restart.sh \
#       --restart 'docker compose restart {node}' \
#       http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083
#
# `--restart` is run through `sh -c` once per node, `{node}` replaced by the node's
# node_id and `{url}` by its URL (e.g. 'systemctl restart dispatchd@{node}' or
# 'ssh {node} sudo systemctl restart dispatchd'). `--timeout` (seconds, default 120) bounds
# each wait. Needs curl.
set -euo pipefail

restart=""
timeout_s=120
urls=()
while [ $# -gt 0 ]; do
    case "$1" in
        --restart) restart="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) urls+=("${1%/}"); shift ;;
    esac
done
[ -n "$restart" ] || { echo "rolling-restart: --restart '<command with {node}>' is required" >&2; exit 2; }
[ "${#urls[@]}" -gt 0 ] || { echo "rolling-restart: name the nodes' URLs" >&2; exit 2; }
: "${DISPATCH_ADMIN_TOKEN:?rolling-restart: DISPATCH_ADMIN_TOKEN must be set}"

# GET /v1/cluster of a node (empty when it does not answer).
status() {
    curl -fsS --max-time 3 -H "Authorization: Bearer $DISPATCH_ADMIN_TOKEN" "$1/v1/cluster" 2>/dev/null || true
}

# A string field of a compact JSON object.
field() {
    sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" <<<"$1"
}

# A number field of a compact JSON object.
number() {
    sed -n "s/.*\"$2\":\([0-9][0-9]*\).*/\1/p" <<<"$1"
}

# Waits until the node at $1 answers, knows a leader and has caught up.
wait_caught_up() {
    local url="$1" deadline=$((SECONDS + timeout_s)) s applied last lag
    while [ $SECONDS -lt $deadline ]; do
        s="$(status "$url")"
        if [ -n "$s" ] && ! grep -q '"leader":null' <<<"$s"; then
            applied="$(number "$s" applied_lsn)"
            last="$(number "$s" stream_last_lsn)"
            lag="$(number "$s" lag_ms)"
            if [ -n "$applied" ] && [ -n "$last" ] && [ "$applied" -ge "$last" ] && [ "$lag" = "0" ]; then
                echo "  $(field "$s" node_id) is back as $(field "$s" role), applied $applied"
                return 0
            fi
        fi
        sleep 1
    done
    echo "rolling-restart: $url did not come back caught up within ${timeout_s}s; stopping here" >&2
    exit 1
}

followers=()
leader=""
for url in "${urls[@]}"; do
    s="$(status "$url")"
    [ -n "$s" ] || { echo "rolling-restart: $url does not answer GET /v1/cluster" >&2; exit 1; }
    if [ "$(field "$s" role)" = "leader" ]; then
        [ -z "$leader" ] || { echo "rolling-restart: two nodes say they lead; not touching anything" >&2; exit 1; }
        leader="$url"
    else
        followers+=("$url")
    fi
done
[ -n "$leader" ] || { echo "rolling-restart: no node leads just now; retry when one does" >&2; exit 1; }

for url in "${followers[@]}" "$leader"; do
    s="$(status "$url")"
    node="$(field "$s" node_id)"
    echo "restarting $node ($url)"
    cmd="${restart//\{node\}/$node}"
    cmd="${cmd//\{url\}/$url}"
    sh -c "$cmd"
    # Give the stop a moment to be seen (the node may still answer while it drains).
    sleep 2
    wait_caught_up "$url"
done
echo "every node restarted; ${urls[0]} says: $(status "${urls[0]}")"
