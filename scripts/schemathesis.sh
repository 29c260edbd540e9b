#!/usr/bin/env bash
# Schemathesis (PyPI, a property-based API tester nobody here wrote) against a live
# `dispatchd --dev`, from the document it serves (GET /v1/openapi.json). Stateless checks
# not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance, once with the admin token and once with a rider's; any
# failure fails the script. The stateful phase follows the document's links (a booked
# trip read, cancelled, rated, its SOS acknowledged; a new user's tokens revoked...).
# The seed is printed (SCHEMATHESIS_SEED overrides the fixed default: rerun a failure
# with the seed it printed), and so is the number of operations covered.
# SCHEMATHESIS_MAX_EXAMPLES sets the cases per operation (the default keeps the whole
# run near 2 minutes on 2 cores, build aside).
#
# One worker: with two, CPython 3.11's `ast` can fail under Hypothesis's threads
# ("AST constructor recursion depth mismatch", a Runtime Error of the tool, not the API).
#
# Needs python3 with venv (installed from the distribution when missing, as deps.sh does);
# schemathesis goes into target/schemathesis-venv, pinned, reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SEED=${SCHEMATHESIS_SEED:-20251206}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-50}
TARGET=${CARGO_TARGET_DIR:-target}
VENV=$PWD/target/schemathesis-venv

# --- python3 + venv ---------------------------------------------------------------------
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then as_root=(sudo); else
            echo "need python3 and python3-venv but not root and no sudo: install them" >&2
            exit 1
        fi
    fi
    echo "system packages: installing python3 python3-venv"
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
fi

# --- schemathesis, pinned ---------------------------------------------------------------
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$VENV/bin/schemathesis" --version

# --- a live dispatchd -------------------------------------------------------------------
cargo build --quiet -p dispatch-server --bin dispatchd
BIN="$(cd "$TARGET" && pwd)/debug/dispatchd"
WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# Limits raised so that the run is not all 429s (429 is still documented, and checked
# wherever it happens); everything else is the defaults.
cat >"$WORK/dispatch.toml" <<'EOF'
[limits]
user_per_min = 1000000
ip_per_min = 1000000
trip_create_per_min = 1000000
accept_per_min = 1000000
chat_per_min = 1000000
EOF
DISPATCH_SMS_SINK="file:$WORK/sms.jsonl" "$BIN" serve --dev --listen 127.0.0.1:0 \
    --data-dir "$WORK/data" --config "$WORK/dispatch.toml" >"$WORK/stdout" 2>"$WORK/stderr" &
PID=$!
ADDR= ADMIN=
for _ in $(seq 1 300); do
    ADDR=$(sed -n 's/^listening on //p' "$WORK/stdout" | head -1)
    ADMIN=$(sed -n 's/^dev admin token: //p' "$WORK/stdout" | head -1)
    [ -n "$ADDR" ] && [ -n "$ADMIN" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/stderr" >&2; echo "dispatchd exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$WORK/stderr" >&2; echo "dispatchd did not start" >&2; exit 1; }
BASE="http://$ADDR"
echo "dispatchd on $BASE"

# A zone (so bookings and estimates can succeed), a rider and a driver, made by the admin.
RIDER=$("$VENV/bin/python" - "$BASE" "$ADMIN" <<'EOF'
import json, sys, urllib.request
base, admin = sys.argv[1], sys.argv[2]
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
post("/v1/admin/zones", {"name": "Cairo", "currency": "EGP", "active": True,
    "polygon": {"type": "Polygon", "coordinates": [[[31.0, 29.9], [31.5, 29.9], [31.5, 30.3], [31.0, 30.3], [31.0, 29.9]]]},
    "pricing": {"economy": {"base_minor": 1500, "per_km_minor": 450, "per_min_minor": 75, "minimum_minor": 2500,
        "booking_fee_minor": 300, "cancel_fee_minor": 1000, "wait_per_min_minor": 50, "free_wait_s": 180,
        "commission_bps": 1500}}})
post("/v1/admin/users", {"role": "driver", "name": "Schemathesis driver", "phone": "+201009990001",
    "vehicle": {"category": "economy", "plate": "ST 1"}})
rider = post("/v1/admin/users", {"role": "rider", "name": "Schemathesis rider", "phone": "+201009990002"})
print(rider["token"])
EOF
)

# --- the runs ---------------------------------------------------------------------------
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
echo "schemathesis: seed $SEED (SCHEMATHESIS_SEED=$SEED to reproduce), $MAX_EXAMPLES examples per operation"
status=0
for who in admin rider; do
    if [ "$who" = admin ]; then token=$ADMIN; else token=$RIDER; fi
    echo
    echo "==> schemathesis as $who"
    set +e
    # Run from the scratch directory: the tool keeps a `.schemathesis/` cache where it runs.
    (cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/v1/openapi.json" \
        --checks "$CHECKS" \
        -H "Authorization: Bearer $token" \
        --seed "$SEED" \
        --max-examples "$MAX_EXAMPLES" \
        --phases examples,coverage,fuzzing,stateful \
        --workers 1 \
        --suppress-health-check all \
        --output-sanitize true \
        --report json --report-json-path "$WORK/report-$who.json" \
        2>&1) | tee "$WORK/run-$who.log"
    rc=${PIPESTATUS[0]}
    set -e
    "$VENV/bin/python" - "$WORK/run-$who.log" "$who" <<'EOF' || true
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
m = re.search(r"API Operations:\s*\n\s*Selected:\s*(\d+)/(\d+)\s*\n\s*Tested:\s*(\d+)", text)
if m:
    print(f"schemathesis as {sys.argv[2]}: {m.group(3)} of {m.group(2)} operations covered")
EOF
    if [ "$rc" -ne 0 ]; then
        echo "schemathesis as $who: FAILED (exit $rc, seed $SEED)" >&2
        status=1
    fi
done
if [ "$status" -ne 0 ]; then
    echo "dispatchd's warnings and errors (last 50):" >&2
    grep -v '"level":"INFO"' "$WORK/stderr" | tail -50 >&2 || true
fi
exit "$status"
