#!/usr/bin/env bash
# Known vulnerabilities (issue 24, finding 13): `cargo deny check advisories` over the
# workspace, against the RustSec database fetched from GitHub where it can be, and
# otherwise against the snapshot committed in `.ci/advisory-db/` (made by
# scripts/advisory-snapshot.sh). Either way a vulnerable, unsound or yanked crate fails.
#
# The snapshot is refused (exit 1) once `Cargo.lock` names a crate it does not cover: that
# crate's advisories would be missing. Its commit, date and age are printed with the result.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
check=(cargo deny -L error --workspace --all-features)

if cargo deny --workspace fetch db 2>/dev/null; then
    "${check[@]}" check --hide-inclusion-graph advisories
    echo "advisories: checked against the RustSec database fetched now"
    exit 0
fi

snapshot=.ci/advisory-db
missing=$(comm -13 "$snapshot/covered.txt" <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u))
if [ -n "$missing" ]; then
    echo "advisories: Cargo.lock names crates the snapshot in $snapshot does not cover:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    echo "refresh it: scripts/advisory-snapshot.sh <a checkout of github.com/RustSec/advisory-db>" >&2
    exit 1
fi

# cargo-deny reads a database from a git checkout under its db-path, in a directory named
# after the database's URL; `--offline` stops it from fetching.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db="$work/advisory-db-3157b0e258782691" # the name cargo-deny 0.20 gives the default URL
mkdir -p "$db"
cp -r "$snapshot/crates" "$db/"
commit=$(sed -n 's/^commit //p' "$snapshot/SNAPSHOT")
date=$(sed -n 's/^date //p' "$snapshot/SNAPSHOT")
git -C "$db" init -q
git -C "$db" add crates
GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
    git -C "$db" -c user.name=ci -c user.email=ci@localhost commit -q -m "RustSec advisory-db $commit (subset)"
config="$work/deny.toml"
sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$work\"|" deny.toml > "$config"
grep -q "^db-path = \"$work\"$" "$config" || { echo "advisories: deny.toml has no [advisories] section" >&2; exit 1; }
"${check[@]}" --offline --config "$config" check --hide-inclusion-graph advisories
age_days=$(( ( $(date +%s) - $(date -d "$date" +%s) ) / 86400 ))
echo "NOTICE: advisories checked against the committed snapshot of the RustSec database ($commit, $date: $age_days days old), the database itself cannot be fetched from here; refresh it with scripts/advisory-snapshot.sh"
