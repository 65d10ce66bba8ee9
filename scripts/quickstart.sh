#!/usr/bin/env bash
# slawatch on a real Kafka broker in one go (the README's "Quick start on Kafka"; the test
# tests/quickstart.rs runs this very script):
#   1. starts a single-node Apache Kafka broker on a free local port (scripts/kafka/broker.sh;
#      Java 17, the Kafka jars are fetched from Maven Central once);
#   2. runs `slawatch run` with deploy/slawatch.example.toml (the built-in default policy),
#      three settings overridden through the environment for a one-broker sandbox;
#   3. publishes the sample conversation events (examples/sample-events.jsonl);
#   4. prints the breaches that arrive on sla.breaches;
#   5. stops slawatch (SIGTERM) and the broker.
# Needs `slawatch` on PATH (`cargo install --path .`). Logs of slawatch and the broker go to
# target/quickstart/. SLAWATCH_ADMIN_LISTEN moves the admin port (default 127.0.0.1:9898).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
logs=target/quickstart
mkdir -p "$logs"
run_dir="$PWD/$logs/kafka"
admin="${SLAWATCH_ADMIN_LISTEN:-127.0.0.1:9898}"

# 1. The broker; it stops when this script exits, however it exits.
broker="$(SLAWATCH_KAFKA_WATCH_PID=$$ scripts/kafka/broker.sh start "$run_dir" | tail -n 1)"
echo "broker at $broker"

# 2. slawatch: one replica per topic (one broker), and event time alone drives the watermark
#    (the sample events are from 2024; with the wall clock they would all be late).
SLAWATCH_BROKERS="$broker" \
SLAWATCH_TOPICS_REPLICATION_FACTOR=1 \
SLAWATCH_WALL_CLOCK_WATERMARK=false \
    slawatch run --config deploy/slawatch.example.toml 2>"$logs/slawatch.log" &
slawatch_pid=$!
trap 'kill -TERM $slawatch_pid 2>/dev/null; wait $slawatch_pid || true; scripts/kafka/broker.sh stop "$run_dir" >/dev/null 2>&1' EXIT
until curl -sf "http://$admin/readyz" >/dev/null; do
    kill -0 $slawatch_pid 2>/dev/null || { cat "$logs/slawatch.log"; exit 1; }
    sleep 1
done
echo "slawatch ready (http://$admin/readyz)"

# 3. The sample events: three tickets of tenant acme, 2024-03-04 10:00-13:05 UTC.
slawatch publish --brokers "$broker" --topic conversations --input examples/sample-events.jsonl

# 4. The breaches: CHAT-1001's first reply came 90 s after opening (R1: 60 s), MAIL-2001's
#    responders never answered (R19: 15 min). Stops after 3 records, or 60 s without one.
slawatch tail --brokers "$broker" sla.breaches --max 3 --idle 60s
