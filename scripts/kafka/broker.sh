#!/usr/bin/env bash
# A single-node Apache Kafka 4.3.1 broker (KRaft, broker+controller in one JVM) for tests.
#
#   scripts/kafka/broker.sh start  [RUN_DIR]   start on free 127.0.0.1 ports; last stdout line
#                                              is the bootstrap address (127.0.0.1:PORT)
#   scripts/kafka/broker.sh stop   [RUN_DIR]   SIGTERM, then SIGKILL after a timeout
#   scripts/kafka/broker.sh status [RUN_DIR]   exit 0 and print the bootstrap address if the
#                                              broker answers a metadata request, else exit 3
#   scripts/kafka/broker.sh restart [RUN_DIR]  (fault tests) stop a started broker with SIGTERM if
#                                              it runs, keeping data/, and start it again on the
#                                              same ports and data (no wipe, no format); last
#                                              stdout line is the bootstrap address
#   scripts/kafka/broker.sh crash  [RUN_DIR]   (fault tests) SIGKILL the broker JVM (an unclean
#                                              crash), keeping data/ and ports for `restart`
#
# RUN_DIR defaults to $SLAWATCH_KAFKA_DIR, else <repo>/target/kafka-run. It holds
#   server.properties, log4j2.properties, data/ (wiped on every start and on stop),
#   logs/server.log (WARN and up), broker.out (JVM stdout/stderr), format.log,
#   broker.pid, bootstrap, watchdog.pid, watchdog.log.
#
# Environment:
#   SLAWATCH_KAFKA_LIBS           jar directory (default: fetch-jars.sh's cache, fetched on demand)
#   KAFKA_EXTRA_PROPS             a properties file appended to server.properties; later keys
#                                 win, so it can override any default below or add a listener.
#                                 Placeholders replaced in it: @PORT@ (PLAINTEXT), @CONTROLLER_PORT@,
#                                 @EXTRA_PORT@ (one more free port, also written to RUN_DIR/extra_port),
#                                 @RUN_DIR@. E.g. for SASL/SCRAM:
#                                   listeners=PLAINTEXT://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,SASL_PLAINTEXT://127.0.0.1:@EXTRA_PORT@
#                                   advertised.listeners=PLAINTEXT://127.0.0.1:@PORT@,SASL_PLAINTEXT://127.0.0.1:@EXTRA_PORT@
#                                   sasl.enabled.mechanisms=SCRAM-SHA-256
#                                 plus a listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config
#                                 line, and SCRAM users (SLAWATCH_KAFKA_FORMAT_ARGS).
#   SLAWATCH_KAFKA_FORMAT_ARGS    extra arguments of `StorageTool format`, split on whitespace,
#                                 e.g. SCRAM users (KRaft stores them in the metadata log):
#                                   --add-scram SCRAM-SHA-256=[name=alice,password=alice-secret]
#                                 (no spaces inside one argument; not logged by this script)
#   SLAWATCH_KAFKA_HEAP           JVM heap (default 512m)
#   SLAWATCH_KAFKA_START_TIMEOUT  readiness timeout in seconds (default 60)
#   SLAWATCH_KAFKA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 15)
#   SLAWATCH_KAFKA_KEEP_DATA=1    keep data/ on stop (for post-mortems)
#   SLAWATCH_KAFKA_WATCH_STDIN=1  (start) leave a watchdog that stops the broker when this
#                                 script's stdin reaches end-of-file, i.e. when the process
#                                 holding the pipe's write end exits, however it dies
#   SLAWATCH_KAFKA_WATCH_PID=PID  (start) leave a watchdog that stops the broker when PID exits
#
# Readiness is a real MetadataRequest (probe.py) that must list this broker and a controller.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"

cmd="${1:-}"
run_dir="${2:-${SLAWATCH_KAFKA_DIR:-$repo/target/kafka-run}}"
heap="${SLAWATCH_KAFKA_HEAP:-512m}"
start_timeout="${SLAWATCH_KAFKA_START_TIMEOUT:-60}"
stop_timeout="${SLAWATCH_KAFKA_STOP_TIMEOUT:-15}"

log() { echo "broker.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# --- process helpers ---------------------------------------------------------------

# alive PID: the process exists and is not a zombie.
alive() {
    local pid="$1" stat
    [[ -n "$pid" ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != "Z" ]]
}

# ours PID: alive, and its command line carries this run dir's marker (guards against
# a recycled PID).
ours() {
    local pid="$1"
    alive "$pid" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "-Dslawatch.kafka.run=$run_dir"
}

broker_pid() { cat "$run_dir/broker.pid" 2>/dev/null || true; }

# --- stop --------------------------------------------------------------------------

stop_broker() {
    local pid waited=0 wd
    pid="$(broker_pid)"
    if [[ -n "$pid" ]] && ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        while ours "$pid" && ((waited < stop_timeout * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if ours "$pid"; then
            log "broker $pid still running after ${stop_timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while alive "$pid"; do sleep 0.1; done
        fi
        log "stopped broker $pid ($(awk "BEGIN{printf \"%.1f\", $waited/10}") s)"
    fi
    rm -f "$run_dir/broker.pid" "$run_dir/bootstrap"
    if [[ "${SLAWATCH_KAFKA_KEEP_DATA:-}" != 1 ]]; then
        rm -rf "$run_dir/data"
    fi
    # A watchdog other than ourselves has nothing left to watch.
    wd="$(cat "$run_dir/watchdog.pid" 2>/dev/null || true)"
    if [[ -n "$wd" && "$wd" != "$BASHPID" ]] && alive "$wd" &&
        tr '\0' '\n' <"/proc/$wd/cmdline" 2>/dev/null | grep -qxF -- "$self"; then
        kill -TERM "$wd" 2>/dev/null || true
    fi
    rm -f "$run_dir/watchdog.pid"
}

# --- watchdog ----------------------------------------------------------------------

# Runs in the background after a successful start (stdin: the owner's pipe, when
# SLAWATCH_KAFKA_WATCH_STDIN=1). Stops the broker when the owner goes away; exits quietly
# when the broker is stopped by other means.
watchdog() {
    local watch_stdin="$1" watch_pid="$2" bpid="$3" rc
    trap '' INT HUP
    trap 'log "watchdog: SIGTERM"; stop_broker; exit 0' TERM
    while :; do
        if [[ "$watch_stdin" == 1 ]]; then
            rc=0
            read -r -t 1 _ || rc=$?
            if ((rc > 0 && rc <= 128)); then
                log "watchdog: owner's pipe closed; stopping broker $bpid"
                stop_broker
                exit 0
            fi
        else
            sleep 1
        fi
        if [[ -n "$watch_pid" ]] && ! alive "$watch_pid"; then
            log "watchdog: process $watch_pid exited; stopping broker $bpid"
            stop_broker
            exit 0
        fi
        if ! ours "$bpid"; then
            exit 0
        fi
    done
}

# --- start -------------------------------------------------------------------------

free_ports() { # prints three distinct free loopback ports
    if command -v python3 >/dev/null; then
        python3 - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    else
        local a p ok
        while :; do
            a=$((20000 + RANDOM % 12000))
            ok=1
            for p in "$a" $((a + 1)) $((a + 2)); do
                if (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ok=0; fi
            done
            if ((ok)); then
                echo "$a $((a + 1)) $((a + 2))"
                return
            fi
        done
    fi
}

random_cluster_id() { # 16 random bytes, URL-safe base64 without padding (Kafka's Uuid form)
    # One starting with '-' would be read as an option by StorageTool's argument parser
    # (1 start in 64 failed that way), so draw again.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    printf '%s' "$id"
}

write_config() {
    local port="$1" cport="$2" xport="$3"
    cat >"$run_dir/server.properties" <<EOF
# Generated by scripts/kafka/broker.sh -- a throw-away single-node test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
log.dirs=$run_dir/data

# One node: every internal topic has one replica and one partition.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Fast tests: no 3 s wait for each new group; the log cleaner rechecks every second.
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
# Tests create their topics explicitly (tests/common/kafka.rs create_topic), so a typo
# in a topic name fails instead of silently auto-creating a topic.
auto.create.topics.enable=false

# Small footprint on a 2-core machine.
num.network.threads=2
num.io.threads=4
background.threads=4
EOF
    if [[ -n "${KAFKA_EXTRA_PROPS:-}" ]]; then
        [[ -f "$KAFKA_EXTRA_PROPS" ]] || die "KAFKA_EXTRA_PROPS=$KAFKA_EXTRA_PROPS is not a file"
        {
            echo
            echo "# --- appended from KAFKA_EXTRA_PROPS=$KAFKA_EXTRA_PROPS ---"
            sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" \
                -e "s|@EXTRA_PORT@|$xport|g" -e "s|@RUN_DIR@|$run_dir|g" "$KAFKA_EXTRA_PROPS"
        } >>"$run_dir/server.properties"
        echo "$xport" >"$run_dir/extra_port"
    fi
    cat >"$run_dir/log4j2.properties" <<'EOF'
# WARN and up to logs/server.log; the broker's "started" line too.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
EOF
}

java_opts() {
    printf '%s\n' \
        "-Xms$heap" "-Xmx$heap" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=file:$run_dir/log4j2.properties" \
        "-Dkafka.logs.dir=$run_dir/logs" \
        "-Dslawatch.kafka.run=$run_dir"
}

start_broker() {
    local libs pid port cport xport cid attempt rc t0
    t0=$(date +%s.%N)
    mkdir -p "$run_dir"
    run_dir="$(cd "$run_dir" && pwd)"

    pid="$(broker_pid)"
    if [[ -n "$pid" ]] && ours "$pid" && [[ -f "$run_dir/bootstrap" ]]; then
        log "already running (pid $pid) in $run_dir"
        cat "$run_dir/bootstrap"
        return 0
    fi

    command -v java >/dev/null || die "java not found (apt-get install openjdk-17-jre-headless)"
    command -v python3 >/dev/null || die "python3 not found (needed by the readiness probe)"
    libs="${SLAWATCH_KAFKA_LIBS:-}"
    if [[ -z "$libs" || ! -f "$libs/.complete" ]]; then
        libs="$("$here/fetch-jars.sh" ${libs:+"$libs"})"
    fi

    local -a opts
    mapfile -t opts < <(java_opts)

    for attempt in 1 2 3; do
        rm -rf "$run_dir/data" "$run_dir/logs" "$run_dir/broker.pid" "$run_dir/bootstrap" "$run_dir/extra_port"
        mkdir -p "$run_dir/data" "$run_dir/logs"
        read -r port cport xport < <(free_ports)
        write_config "$port" "$cport" "$xport"
        cid="$(random_cluster_id)"

        local -a format_args=()
        read -r -a format_args <<<"${SLAWATCH_KAFKA_FORMAT_ARGS:-}"
        if ! java "${opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
            -t "$cid" -c "$run_dir/server.properties" --ignore-formatted ${format_args[@]+"${format_args[@]}"} \
            </dev/null >"$run_dir/format.log" 2>&1; then
            cat "$run_dir/format.log" >&2
            die "storage format failed (see $run_dir/format.log)"
        fi

        # 3<&-: the broker must not hold the watchdog's pipe (or anything else) open.
        java "${opts[@]}" -cp "$libs/*" kafka.Kafka "$run_dir/server.properties" \
            </dev/null >"$run_dir/broker.out" 2>&1 3<&- &
        pid=$!
        echo "$pid" >"$run_dir/broker.pid"

        rc=0
        python3 "$here/probe.py" "127.0.0.1:$port" --timeout "$start_timeout" --pid "$pid" || rc=$?
        if ((rc == 0)); then
            echo "127.0.0.1:$port" >"$run_dir/bootstrap"
            break
        fi
        log "attempt $attempt: broker did not become ready (probe exit $rc); its errors:"
        {
            # Each ERROR line, the exception line under it, and root causes.
            grep -A1 -E '^\[[^]]*\] (ERROR|FATAL)' "$run_dir/logs/server.log" | grep -v '^--$' | tail -n 8
            grep -E '^Caused by' "$run_dir/logs/server.log" | tail -n 3
            tail -n 5 "$run_dir/broker.out"
        } >&2 2>/dev/null || true
        log "(full logs: $run_dir/logs/server.log, $run_dir/broker.out)"
        # Only a port taken between picking and binding is worth a retry.
        if ((rc == 2)) && ((attempt < 3)) &&
            grep -qE 'BindException|Address already in use' "$run_dir/logs/server.log" "$run_dir/broker.out" 2>/dev/null; then
            stop_broker
            continue
        fi
        SLAWATCH_KAFKA_KEEP_DATA=1 stop_broker
        die "failed to start Kafka in $run_dir"
    done

    local watch_stdin="${SLAWATCH_KAFKA_WATCH_STDIN:-}" watch_pid="${SLAWATCH_KAFKA_WATCH_PID:-}"
    if [[ "$watch_stdin" == 1 || -n "$watch_pid" ]]; then
        # `exec -a "$self"` is not portable to every bash; the watchdog is recognised by
        # the script path among its arguments instead (see stop_broker).
        if [[ "$watch_stdin" == 1 ]]; then
            bash "$self" __watchdog "$run_dir" "$watch_stdin" "$watch_pid" "$pid" \
                </dev/stdin >>"$run_dir/watchdog.log" 2>&1 &
        else
            bash "$self" __watchdog "$run_dir" "$watch_stdin" "$watch_pid" "$pid" \
                </dev/null >>"$run_dir/watchdog.log" 2>&1 &
        fi
        echo "$!" >"$run_dir/watchdog.pid"
    fi

    log "Kafka 4.3.1 ready at 127.0.0.1:$port (pid $pid, run dir $run_dir) in $(
        awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"
    echo "127.0.0.1:$port"
}

status_broker() {
    local pid
    pid="$(broker_pid)"
    if [[ -n "$pid" ]] && ours "$pid" && [[ -f "$run_dir/bootstrap" ]] &&
        python3 "$here/probe.py" "$(cat "$run_dir/bootstrap")" --timeout 3 --pid "$pid"; then
        log "running (pid $pid) in $run_dir"
        cat "$run_dir/bootstrap"
        return 0
    fi
    log "not running ($run_dir)"
    return 3
}

# --- restart and crash (fault tests) -------------------------------------------------

# Stops the watchdog without letting it stop the broker: its SIGTERM handler would stop the
# broker and wipe data/ (SIGKILL runs no handler; it has no child process to leave behind
# when it watches stdin).
quiet_watchdog() {
    local wd
    wd="$(cat "$run_dir/watchdog.pid" 2>/dev/null || true)"
    if [[ -n "$wd" && "$wd" != "$BASHPID" ]] && alive "$wd" &&
        tr '\0' '\n' <"/proc/$wd/cmdline" 2>/dev/null | grep -qxF -- "$self"; then
        kill -KILL "$wd" 2>/dev/null || true
        while alive "$wd"; do sleep 0.05; done
    fi
    rm -f "$run_dir/watchdog.pid"
}

crash_broker() {
    local pid
    quiet_watchdog
    pid="$(broker_pid)"
    if [[ -n "$pid" ]] && ours "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.05; done
        log "killed broker $pid with SIGKILL (data kept in $run_dir/data)"
    fi
    rm -f "$run_dir/broker.pid" "$run_dir/bootstrap"
}

restart_broker() {
    local libs pid port attempt rc t0 wd_stdin="${SLAWATCH_KAFKA_WATCH_STDIN:-}" wd_pid="${SLAWATCH_KAFKA_WATCH_PID:-}"
    t0=$(date +%s.%N)
    [[ -f "$run_dir/server.properties" && -f "$run_dir/data/meta.properties" ]] ||
        die "nothing to restart in $run_dir (no formatted data; use start)"
    quiet_watchdog
    pid="$(broker_pid)"
    if [[ -n "$pid" ]] && ours "$pid"; then
        SLAWATCH_KAFKA_KEEP_DATA=1 stop_broker
    fi
    # The PLAINTEXT port of the last advertised.listeners line (later keys win).
    port="$(grep '^advertised.listeners=' "$run_dir/server.properties" | tail -n 1 |
        grep -oE '(=|,)PLAINTEXT://127\.0\.0\.1:[0-9]+' | head -n 1 | sed 's/.*://')"
    [[ -n "$port" ]] || die "no PLAINTEXT port in $run_dir/server.properties"
    libs="${SLAWATCH_KAFKA_LIBS:-}"
    if [[ -z "$libs" || ! -f "$libs/.complete" ]]; then
        libs="$("$here/fetch-jars.sh" ${libs:+"$libs"})"
    fi
    local -a opts
    mapfile -t opts < <(java_opts)
    for attempt in 1 2 3 4 5; do
        java "${opts[@]}" -cp "$libs/*" kafka.Kafka "$run_dir/server.properties" \
            </dev/null >>"$run_dir/broker.out" 2>&1 3<&- &
        pid=$!
        echo "$pid" >"$run_dir/broker.pid"
        rc=0
        python3 "$here/probe.py" "127.0.0.1:$port" --timeout "$start_timeout" --pid "$pid" || rc=$?
        if ((rc == 0)); then
            echo "127.0.0.1:$port" >"$run_dir/bootstrap"
            break
        fi
        SLAWATCH_KAFKA_KEEP_DATA=1 stop_broker
        # A port still held by the previous process (or taken meanwhile): try again.
        if ((rc == 2)) && ((attempt < 5)) &&
            tail -n 50 "$run_dir/logs/server.log" "$run_dir/broker.out" 2>/dev/null | grep -qE 'BindException|Address already in use'; then
            log "restart attempt $attempt: port busy; retrying"
            sleep 1
            continue
        fi
        die "failed to restart Kafka in $run_dir (probe exit $rc; see $run_dir/logs/server.log)"
    done
    if [[ "$wd_stdin" == 1 ]]; then
        bash "$self" __watchdog "$run_dir" "$wd_stdin" "$wd_pid" "$pid" \
            </dev/stdin >>"$run_dir/watchdog.log" 2>&1 &
        echo "$!" >"$run_dir/watchdog.pid"
    elif [[ -n "$wd_pid" ]]; then
        bash "$self" __watchdog "$run_dir" "$wd_stdin" "$wd_pid" "$pid" \
            </dev/null >>"$run_dir/watchdog.log" 2>&1 &
        echo "$!" >"$run_dir/watchdog.pid"
    fi
    log "Kafka restarted at 127.0.0.1:$port (pid $pid, same data) in $(
        awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"
    echo "127.0.0.1:$port"
}

case "$cmd" in
start) start_broker ;;
restart)
    run_dir="$(cd "$run_dir" && pwd)"
    restart_broker
    ;;
crash)
    run_dir="$(cd "$run_dir" && pwd)"
    crash_broker
    ;;
stop)
    run_dir="$(cd "$run_dir" 2>/dev/null && pwd || echo "$run_dir")"
    stop_broker
    ;;
status)
    run_dir="$(cd "$run_dir" 2>/dev/null && pwd || echo "$run_dir")"
    status_broker
    ;;
__watchdog) # internal: __watchdog RUN_DIR WATCH_STDIN WATCH_PID BROKER_PID
    watchdog "$3" "$4" "$5"
    ;;
*)
    echo "usage: $0 start|stop|status|restart|crash [RUN_DIR]" >&2
    exit 2
    ;;
esac
