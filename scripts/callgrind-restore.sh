#!/usr/bin/env bash
# Instructions per restored ticket (issue 14, restore build): runs the engine bench's
# restore phase at a small size under callgrind, collecting inside `Restorer::upsert_keyed`
# only (decode, plan lookup, ticket build, index, timer scheduling), and divides by the
# number of ticket records restored (the bench restores them 6 times: 3 by
# `Engine::restore_parts`, 3 with the index reserved up front).
#
# SLAWATCH_BENCH_BIN=PATH runs that bench binary instead of building this tree's (to compare
# two builds in one session).
#
# Usage: scripts/callgrind-restore.sh [TICKETS]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
tickets="${1:-20000}"
bin=$(scripts/engine-bench-bin.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SLAWATCH_BENCH_TICKETS="$tickets" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" \
    '--toggle-collect=*Restorer::upsert_keyed*' "$bin" >"$tmp/out" 2>"$tmp/err"
grep -E '^restore' "$tmp/out" || true
ir=$(grep -oE '^summary: [0-9]+' "$tmp/cg" | grep -oE '[0-9]+' || grep -oE '^totals: [0-9]+' "$tmp/cg" | grep -oE '[0-9]+')
records=$(grep -oE 'from [0-9]+ changelog records' "$tmp/out" | grep -oE '[0-9]+')
python3 -c "import sys; ir, n = int(sys.argv[1]), 6 * int(sys.argv[2]); print(f'callgrind: {ir / n:.0f} instructions per restored ticket ({n} records restored)')" "$ir" "$records"
