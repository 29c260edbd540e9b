#!/usr/bin/env bash
# Refreshes `.ci/advisory-db/`, the RustSec advisories CI checks the workspace against where
# the database itself cannot be fetched (issue 24, finding 13): this network reaches the
# package registries only, and the database lives on GitHub only.
#
#   scripts/advisory-snapshot.sh <a checkout of https://github.com/RustSec/advisory-db>
#
# What it writes:
# - `crates/<name>/RUSTSEC-*.md`: every advisory of every crate named in `Cargo.lock`
#   (any version: cargo-deny decides which versions are affected), copied unchanged;
# - `covered.txt`: every crate name in `Cargo.lock` when the snapshot was taken. CI refuses
#   to check against the snapshot once `Cargo.lock` names a crate not in it: a new
#   dependency's advisories would be missing, so the snapshot must be refreshed first;
# - `SNAPSHOT`: the database's commit and its date (CI prints them, and the age);
# - `LICENSE.txt`: the database's (CC0-1.0: public domain).
#
# Run it whenever a dependency is added, and whenever a newer database can be had.
set -euo pipefail

db=${1:?usage: scripts/advisory-snapshot.sh <advisory-db checkout>}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.ci/advisory-db"

test -d "$db/crates" || { echo "$db has no crates/ directory: not an advisory-db checkout" >&2; exit 2; }
if git -C "$db" rev-parse --is-bare-repository 2>/dev/null | grep -q true; then
    echo "$db is a bare repository: check it out first (git clone $db <dir>)" >&2
    exit 2
fi
commit=$(git -C "$db" rev-parse HEAD)
date=$(git -C "$db" show -s --format=%cI HEAD)

rm -rf "$out"
mkdir -p "$out/crates"
sed -n 's/^name = "\(.*\)"$/\1/p' "$root/Cargo.lock" | sort -u > "$out/covered.txt"
copied=0
while read -r name; do
    if [ -d "$db/crates/$name" ]; then
        mkdir -p "$out/crates/$name"
        cp "$db/crates/$name"/*.md "$out/crates/$name/"
        copied=$((copied + $(find "$db/crates/$name" -name '*.md' | wc -l)))
    fi
done < "$out/covered.txt"
cp "$db/LICENSE.txt" "$out/LICENSE.txt"
printf 'commit %s\ndate %s\n' "$commit" "$date" > "$out/SNAPSHOT"
echo "advisory snapshot: $copied advisories for $(wc -l < "$out/covered.txt") crate names, database $commit of $date"
