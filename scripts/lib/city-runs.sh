# Sourced by scripts/matching-table.sh and scripts/matching-sweep.sh: the city's common
# settings (each overridable from the environment), the `city` binary (built unless BIN
# names one), a temp dir OUT removed on exit, and the demand arithmetic:
#   capacity (trips/hour) = DRIVERS x 60 / TRIP_MIN;
#   riders_for L = the riders that make demand L x capacity, each idling IDLE_S between rides.
SEEDS=${SEEDS:-"1 2 3 4 5"}
DRIVERS=${DRIVERS:-200}
MINUTES=${MINUTES:-30}
IDLE_S=${IDLE_S:-1800}
TRIP_MIN=${TRIP_MIN:-9}
JOBS=${JOBS:-2}

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --example city
  BIN=target/release/examples/city
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

capacity=$(awk -v d="$DRIVERS" -v t="$TRIP_MIN" 'BEGIN { printf "%.0f", d * 60 / t }')
riders_for() { awk -v l="$1" -v c="$capacity" -v i="$IDLE_S" 'BEGIN { printf "%.0f", l * c * i / 3600 }'; }
