#!/usr/bin/env bash
# The whole test suite on a fresh machine (README's second command; CI runs it through
# .ci/run).
#
# 1. installs what the tests need and the machine lacks (Debian packages: a Java 17
#    runtime and Maven for the Kafka test broker, python3 for its readiness probe,
#    Prometheus/promtool for the alerting-rule tests, Chromium for the what-if report's
#    rendering test); `apt-get update` runs once, and
#    only when something is missing;
# 2. pre-fetches the Apache Kafka 4.3.1 jars from Maven Central (scripts/kafka/fetch-jars.sh,
#    cached in ~/.cache/slawatch and ~/.m2);
# 3. runs `cargo test --release --all-targets --no-fail-fast` (a failing test binary does
#    not hide the ones after it).
# Integration tests start their own single-node Kafka broker (tests/common/kafka.rs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never

# --- phase timing ------------------------------------------------------------------
declare -a PHASES=()
phase_name=""
phase_start=0
now() { date +%s.%N; }
begin() {
    end_phase
    phase_name="$1"
    phase_start="$(now)"
    echo "=== [ci] $phase_name"
}
end_phase() {
    if [[ -n "$phase_name" ]]; then
        local secs
        secs="$(awk -v a="$phase_start" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}')"
        PHASES+=("$(printf '%-22s %8s s' "$phase_name" "$secs")")
        echo "=== [ci] $phase_name: ${secs} s"
        phase_name=""
    fi
}
summary() {
    local rc=$?
    end_phase
    echo "=== [ci] phase timings"
    printf '    %s\n' "${PHASES[@]}"
    echo "=== [ci] exit $rc"
}
trap summary EXIT

# --- 1. system packages ------------------------------------------------------------
begin "install packages"
SUDO=""
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi
java_major() { java -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'; }
missing=()
jmajor="$(command -v java >/dev/null && java_major || true)"
if ((${jmajor:-0} < 17)); then
    missing+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null || missing+=(maven)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl) # scripts/quickstart.sh waits on /readyz
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    missing+=(prometheus)
fi
{ command -v cc >/dev/null && command -v make >/dev/null; } || missing+=(build-essential)
# rdkafka's ssl-vendored compiles OpenSSL (its Configure needs a full perl, IPC::Cmd);
# tests/kafka_security.rs makes its test certificates with the openssl CLI.
perl -MIPC::Cmd -e1 2>/dev/null || missing+=(perl)
command -v openssl >/dev/null || missing+=(openssl)
# tests/whatif.rs renders the what-if HTML report in headless Chromium.
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "nothing to install"
fi
command -v cargo >/dev/null || { echo "cargo not found: a Rust toolchain >= 1.88 is required" >&2; exit 1; }
# (sed, not head: head would exit early and SIGPIPE the writer under pipefail)
java -version 2>&1 | sed -n 1p
mvn -B -v 2>/dev/null | sed -n -e "s/\x1b\[[0-9;]*m//g" -e 1p
cargo --version
prometheus --version 2>&1 | sed -n 1p

# --- 2. Kafka jars -----------------------------------------------------------------
begin "fetch kafka jars"
scripts/kafka/fetch-jars.sh

# --- 3. tests ----------------------------------------------------------------------
begin "cargo test"
cargo test --release --all-targets --no-fail-fast
end_phase
