#!/usr/bin/env bash
# Prints the path of the engine bench binary (benches/engine.rs), building it if needed:
# $SLAWATCH_BENCH_BIN when set (to compare two builds in one session), else this tree's.
# Used by the valgrind scripts (cachegrind-engine.sh, callgrind-restore.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SLAWATCH_BENCH_BIN:-}
[ -n "$bin" ] || bin=$(CARGO_TERM_COLOR=never cargo bench --bench engine --no-run --message-format=json 2>/dev/null |
    python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "engine bench binary not found" >&2; exit 1; }
echo "$bin"
