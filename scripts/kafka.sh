#!/usr/bin/env bash
# Kafka for the test suite, without Docker.
#
#   scripts/kafka.sh start   make a broker available, print its bootstrap address on stdout
#   scripts/kafka.sh stop    stop the broker if (and only if) this script started it
#   scripts/kafka.sh url     print the bootstrap address `start` would print, start nothing
#
# `start`:
#   * KAFKA_BOOTSTRAP_SERVERS set  -> use that cluster; fail if it does not answer.
#   * else, something already answers on 127.0.0.1:$GOVERNANCE_TEST_KAFKA_PORT -> reuse it.
#   * else start a single-node KRaft broker (broker + controller in one JVM) on 127.0.0.1, port
#     ${GOVERNANCE_TEST_KAFKA_PORT:-59092}, controller on port+1. No package manager ships a Kafka
#     broker, so its jars come from Maven Central (scripts/kafka/pom.xml) and are cached outside
#     the repo in ${XDG_CACHE_HOME:-$HOME/.cache}/governance/kafka-<version>/libs.
# Only the address goes to stdout (so `KAFKA_BOOTSTRAP_SERVERS=$(scripts/kafka.sh start)` works);
# progress and errors go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KAFKA_DIR="$ROOT/scripts/kafka"

KAFKA_VERSION=4.3.1 # keep in step with kafka.version in scripts/kafka/pom.xml
HOST=127.0.0.1
PORT="${GOVERNANCE_TEST_KAFKA_PORT:-59092}"
CONTROLLER_PORT=$((PORT + 1))

# Jars are shared by every clone and every port; broker state is per port and thrown away on stop.
LIB_DIR="${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/governance/kafka-$KAFKA_VERSION/libs"
RUN_DIR="/var/tmp/governance-kafka-$PORT"
PID_FILE="$RUN_DIR/broker.pid" # exists only while a broker started by this script may be running
LOG_FILE="$RUN_DIR/broker.log"
# Serialises concurrent start/stop for one port (two test jobs starting at once).
LOCK_FILE="/var/tmp/governance-kafka-$PORT.lock"

READY_TIMEOUT=90 # seconds to wait for a fresh broker
STOP_TIMEOUT=30  # seconds to wait for a clean shutdown before kill -9

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# True if a TCP connection to host:port succeeds within 3 s (bash's /dev/tcp: no extra tools needed).
port_open() {
    # shellcheck disable=SC2016 # $1/$2 are meant for the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

local_address() { printf '%s:%s\n' "$HOST" "$PORT"; }

# Check every host:port of a comma-separated bootstrap list: a TCP connect always, and a real
# metadata request when kafka-python happens to be importable (it is optional here).
check_bootstrap() {
    local servers="$1" entry hostport host port
    local -a entries
    IFS=',' read -r -a entries <<<"$servers"
    for entry in "${entries[@]}"; do
        hostport="${entry//[[:space:]]/}"
        hostport="${hostport#*://}" # tolerate PLAINTEXT://host:port
        [[ -n "$hostport" ]] || continue
        host="${hostport%:*}"
        port="${hostport##*:}"
        host="${host#[}" # [::1]:9092 -> ::1
        host="${host%]}"
        if [[ -z "$host" || ! "$port" =~ ^[0-9]+$ ]]; then
            log "'$entry' is not host:port"
            return 1
        fi
        if ! port_open "$host" "$port"; then
            log "nothing accepts TCP connections on $host:$port"
            return 1
        fi
    done
    local python="${PYTHON:-python3}"
    if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import kafka' >/dev/null 2>&1; then
        if ! "$python" - "$servers" >&2 <<'PY'; then
import sys
from kafka import KafkaConsumer
config = {"bootstrap_servers": sys.argv[1].split(","), "request_timeout_ms": 10000}
# kafka-python 3.0 renamed api_version_auto_timeout_ms to bootstrap_timeout_ms; set whichever exists.
for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
    if key in KafkaConsumer.DEFAULT_CONFIG:
        config[key] = 10000
        break
try:
    consumer = KafkaConsumer(**config)
    try:
        consumer.topics()  # a Metadata request: proves a Kafka broker, not just an open port
    finally:
        consumer.close()
except Exception as exc:  # one line, not a traceback
    sys.exit(f"kafka-python: {type(exc).__name__}: {exc}")
PY
            log "the port is open but a kafka-python metadata request to $servers failed"
            return 1
        fi
    fi
}

# The pid from the pid file, if that process is alive and really is our broker (pids get reused).
our_broker_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Ours if its command line names this run directory's server.properties: true for the JVM and
    # for the short-lived wrapper that execs it. (Read into a variable: `... | grep -q` under
    # pipefail fails at random when grep exits before tr has written everything.)
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"$RUN_DIR/server.properties"* ]] || return 1
    printf '%s\n' "$pid"
}

# Fetch the broker jars once. The directory is filled under a temporary name and renamed at the
# end, and a stamp file records which pom produced it, so an interrupted or outdated download is
# never mistaken for a complete one.
ensure_jars() {
    local stamp="$LIB_DIR/.complete" want
    want="$(sha256sum "$KAFKA_DIR/pom.xml" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    command -v java >/dev/null 2>&1 || die "java not found: the broker needs Java 17 or newer (apt-get install openjdk-17-jre-headless)"
    command -v mvn >/dev/null 2>&1 || die "mvn not found: it fetches the Kafka jars from Maven Central (apt-get install maven)"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR (first run only)"
    local tmp="$LIB_DIR.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    # All of Maven's output to stderr, minus the colour resets it prints even in batch mode.
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_DIR/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; then
        rm -rf "$tmp"
        die "mvn could not fetch the Kafka jars (see the Maven output above)"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || {
        rm -rf "$tmp"
        die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
    }
    printf '%s\n' "$want" >"$tmp/.complete"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
    log "cached $(find "$LIB_DIR" -name '*.jar' | wc -l) jars"
}

# A KRaft cluster id: 16 random bytes, base64url without padding (what `StorageTool random-uuid`
# prints, without paying for a JVM start). Kafka never hands out ids starting with '-', since
# they would read as a command-line option, so neither do we.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    printf '%s\n' "$id"
}

# On a failed start: the first error lines (the cause, usually) and the end of the broker log.
show_broker_log() {
    log "$1; first errors in $LOG_FILE:"
    grep -E ' (ERROR|FATAL) |Exception:' "$LOG_FILE" 2>/dev/null | head -n 5 >&2 || true
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 || true
}

start_local() {
    # The client port is known to be free (cmd_start checked); the controller port must be too,
    # or the broker dies with a BindException deep in its log.
    if port_open "$HOST" "$CONTROLLER_PORT"; then
        die "port $CONTROLLER_PORT (the controller port, client port + 1) is already in use; stop whatever holds it or set GOVERNANCE_TEST_KAFKA_PORT"
    fi
    ensure_jars

    # A stale run directory (broker crashed, machine rebooted) is thrown away: tests want a fresh,
    # empty broker, and KRaft refuses to start on a log dir formatted for another cluster id.
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR/data"

    # The broker reads its config from the run directory, not from the repo, so it keeps running
    # even if the clone that started it is deleted.
    sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" \
        -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@LOG_DIR@|$RUN_DIR/data|g" \
        "$KAFKA_DIR/server.properties.template" >"$RUN_DIR/server.properties"
    cp "$KAFKA_DIR/log4j2.properties" "$RUN_DIR/log4j2.properties"

    local classpath="$LIB_DIR/*"
    local -a jvm_logging=(
        "-Dlog4j2.configurationFile=$RUN_DIR/log4j2.properties"
        "-Dkafka.logs.dir=$RUN_DIR"
    )

    log "formatting KRaft storage in $RUN_DIR/data"
    if ! java "${jvm_logging[@]}" -cp "$classpath" kafka.tools.StorageTool format --standalone \
        -t "$(new_cluster_id)" -c "$RUN_DIR/server.properties" >"$RUN_DIR/format.log" 2>&1; then
        cat "$RUN_DIR/format.log" >&2
        die "formatting Kafka storage failed"
    fi

    log "starting broker on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT), log: $LOG_FILE"
    # setsid: own session, so a Ctrl-C in the terminal (or the end of the calling job's process
    # group) does not take the broker down. The inner bash writes its pid and then execs java, so
    # the pid file holds the JVM's pid.
    # shellcheck disable=SC2016 # $$, $1 and $@ are meant for the inner bash
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        "${jvm_logging[@]}" -cp "$classpath" kafka.Kafka "$RUN_DIR/server.properties" \
        </dev/null >"$LOG_FILE" 2>&1 9>&- & # 9>&-: the broker must not inherit the start/stop lock

    # Ready = the broker logged that it started AND the client port accepts connections.
    local deadline=$((SECONDS + READY_TIMEOUT)) pid=""
    while :; do
        [[ -z "$pid" && -f "$PID_FILE" ]] && pid="$(cat "$PID_FILE")"
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            show_broker_log "the broker exited during startup"
            rm -f "$PID_FILE"
            die "Kafka did not start"
        fi
        if grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null && port_open "$HOST" "$PORT"; then
            break
        fi
        if ((SECONDS >= deadline)); then
            show_broker_log "the broker was not ready after ${READY_TIMEOUT}s"
            stop_local
            die "Kafka did not start in time"
        fi
        sleep 0.5
    done
    log "broker ready (pid $pid)"
}

# Wait up to $2 seconds for process $1 to end; a zombie (exited, not yet reaped) counts as ended.
wait_for_exit() {
    local pid="$1" deadline=$((SECONDS + $2)) state
    while kill -0 "$pid" 2>/dev/null; do
        state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
        [[ "$state" == Z ]] && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

stop_local() {
    local pid
    if ! pid="$(our_broker_pid)"; then
        if [[ -f "$PID_FILE" ]]; then
            # We started a broker here before, and it is gone already (or its pid now belongs to
            # an unrelated process): just clean up after it.
            log "broker on port $PORT is not running any more; removing $RUN_DIR"
            rm -rf "$RUN_DIR"
        else
            log "no broker started by this script on port $PORT; nothing to stop"
        fi
        return 0
    fi
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for_exit "$pid" "$STOP_TIMEOUT"; then
        log "broker still running after ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        # Wait for the kernel to tear it down, so the ports are free once `stop` returns.
        wait_for_exit "$pid" 10 || die "broker (pid $pid) survived kill -9"
    fi
    rm -rf "$RUN_DIR"
    log "stopped"
}

cmd_start() {
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        check_bootstrap "$KAFKA_BOOTSTRAP_SERVERS" ||
            die "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set but does not answer. Start that cluster, or unset the variable to get a local broker."
        log "using KAFKA_BOOTSTRAP_SERVERS from the environment"
        printf '%s\n' "$KAFKA_BOOTSTRAP_SERVERS"
        return 0
    fi
    if port_open "$HOST" "$PORT"; then
        # Ours from an earlier start, or someone else's: either way it is a broker on the port the
        # tests expect. With kafka-python installed this also proves it speaks Kafka.
        check_bootstrap "$(local_address)" ||
            die "something listens on $HOST:$PORT but is not a usable Kafka broker; stop it or set GOVERNANCE_TEST_KAFKA_PORT"
        log "reusing the broker already answering on $(local_address)"
        local_address
        return 0
    fi
    start_local
    local_address
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    start | stop)
        # Opened read-only (flock needs no more), so a lock file made by another user still works.
        [[ -e "$LOCK_FILE" ]] || : >"$LOCK_FILE"
        exec 9<"$LOCK_FILE"
        flock -w 120 9 || die "another kafka.sh holds $LOCK_FILE"
        if [[ "$cmd" == start ]]; then cmd_start; else stop_local; fi
        ;;
    url)
        if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
            printf '%s\n' "$KAFKA_BOOTSTRAP_SERVERS"
        else
            local_address
        fi
        ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
    esac
}

main "$@"
