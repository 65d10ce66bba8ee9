#!/usr/bin/env bash
# Instructions and simulated cache misses per event of the engine bench (decode + engine),
# from a short run under cachegrind: the stable figure to compare engine changes by on a
# shared, noisy machine (wall-clock events/s stays the headline of `cargo bench`).
#
# Runs benches/engine.rs twice under `valgrind --tool=cachegrind`: once with
# SLAWATCH_BENCH_SETUP_ONLY=1 (input generation and encoding only) and once in full, and
# prints the difference divided by the number of events.
#
# SLAWATCH_BENCH_BIN=PATH runs that bench binary instead of building this tree's (to compare
# two builds in one session).
#
# Usage: scripts/cachegrind-engine.sh [EVENTS]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-100000}"
bin=$(scripts/engine-bench-bin.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prints "instructions D1-misses LL-misses" of one run (from cachegrind's summary).
run() {
    env SLAWATCH_BENCH_EVENTS="$events" "$@" valgrind --tool=cachegrind --cache-sim=yes \
        --cachegrind-out-file=/dev/null "$bin" --bench >"$tmp/out" 2>"$tmp/err"
    python3 - "$tmp/err" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def total(label):
    m = re.search(r"==\d+== " + re.escape(label) + r":\s+([\d,]+)", text)
    if not m:
        sys.exit("no %r in cachegrind output:\n%s" % (label, text[-2000:]))
    return int(m.group(1).replace(",", ""))
print(total("I   refs"), total("D1  misses"), total("LL misses"))
PY
}
read -r si sd sl < <(run SLAWATCH_BENCH_SETUP_ONLY=1)
read -r fi fd fl < <(run)
n=$(grep -oE '^[0-9]+ events for' "$tmp/out" | grep -oE '^[0-9]+')
grep -E '^heap allocations' "$tmp/out" || true
python3 - "$n" "$si" "$sd" "$sl" "$fi" "$fd" "$fl" <<'PY'
import sys
n, si, sd, sl, fi, fd, fl = map(int, sys.argv[1:])
print(f"cachegrind, {n} events (decode + engine, set-up subtracted):")
print(f"  instructions per event: {(fi - si) / n:.0f}")
print(f"  D1 misses per event:    {(fd - sd) / n:.2f}")
print(f"  LL misses per event:    {(fl - sl) / n:.3f}")
PY
