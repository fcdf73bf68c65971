#!/usr/bin/env bash
# PostgreSQL for the test suite, without Docker.
#
#   scripts/postgres.sh start   make a database available, print its URL on stdout
#   scripts/postgres.sh stop    stop the cluster if (and only if) this script started it
#   scripts/postgres.sh url     print the URL `start` would print, start nothing
#
# `start`:
#   * DATABASE_URL set -> use that database; fail if it does not answer.
#   * else, something already answers on 127.0.0.1:$GOVERNANCE_TEST_PG_PORT -> reuse it (after
#     checking the governance URL works there).
#   * else run a private cluster on 127.0.0.1, port ${GOVERNANCE_TEST_PG_PORT:-55432}, with its data
#     in /var/tmp/governance-pg-<port> (kept across stop/start, so a restart is quick). Installs
#     PostgreSQL with apt-get first if the machine has none.
# Only the URL goes to stdout (so `DATABASE_URL=$(scripts/postgres.sh start)` works); progress and
# errors go to stderr.
set -euo pipefail

HOST=127.0.0.1
PORT="${GOVERNANCE_TEST_PG_PORT:-55432}"
# Test-only credentials for a cluster that listens on loopback only.
DB_USER=governance
DB_PASSWORD=governance
DB_NAME=governance
LOCAL_URL="postgresql://$DB_USER:$DB_PASSWORD@$HOST:$PORT/$DB_NAME"

# Outside the repo on purpose: CI clones the repo into a mktemp directory that the postgres user
# cannot enter, and the server must not run as root.
BASE_DIR="/var/tmp/governance-pg-$PORT"
PGDATA_DIR="$BASE_DIR/data"  # the cluster itself (initdb wants an empty or absent directory)
SOCKET_DIR="$BASE_DIR"       # the unix socket, used only for superuser setup
LOG_FILE="$BASE_DIR/server.log"
MARKER="$BASE_DIR/started-by-governance" # exists while a server started by this script may run
LOCK_FILE="/var/tmp/governance-pg-$PORT.lock"

READY_TIMEOUT=30 # seconds

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# True if a TCP connection to host:port succeeds within 3 s (needs nothing installed).
port_open() {
    # shellcheck disable=SC2016 # $1/$2 are meant for the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Show the URL without its password (it is fine for the local one, not for a user's DATABASE_URL).
redact() { sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#' <<<"$1"; }

# The server refuses to run as root: as root, run its tools as the `postgres` system user (the
# Debian package creates it); as anyone else, run them as ourselves.
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        # cd /: the postgres user may not be allowed into the caller's working directory.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Newest server binaries that Debian's packages installed (/usr/lib/postgresql/<major>/bin).
find_bindir() {
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)"
    [[ -n "$dir" && -x "$dir/pg_ctl" && -x "$dir/initdb" ]] || return 1
    printf '%s\n' "$dir"
}

ensure_server_installed() {
    if BIN="$(find_bindir)"; then
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql and we are not root: install the 'postgresql' package, or set DATABASE_URL"
    log "PostgreSQL is not installed; installing it with apt-get (first run only)"
    DEBIAN_FRONTEND=noninteractive apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
    BIN="$(find_bindir)" || die "apt-get installed 'postgresql' but no server binaries appeared under /usr/lib/postgresql"
}

# Check an existing database URL with a real query when psql is there; fall back to pg_isready
# (server accepts connections) and finally to a bare TCP connect.
check_url() {
    local url="$1" psql_bin isready_bin
    psql_bin="$(command -v psql || true)"
    isready_bin="$(command -v pg_isready || true)"
    if [[ -n "${BIN:-}" ]]; then
        psql_bin="$BIN/psql"
        isready_bin="$BIN/pg_isready"
    fi
    if [[ -n "$psql_bin" && -x "$psql_bin" ]]; then
        PGCONNECT_TIMEOUT=5 "$psql_bin" "$url" -X -A -t -q -v ON_ERROR_STOP=1 -c 'select 1' >/dev/null
    elif [[ -n "$isready_bin" && -x "$isready_bin" ]]; then
        "$isready_bin" -q -t 5 -d "$url"
    else
        log "neither psql nor pg_isready is installed; only checking that the port accepts TCP"
        local rest="${url#*://}"
        rest="${rest#*@}"
        rest="${rest%%/*}"
        local host="${rest%:*}" port=5432
        [[ "$rest" == *:* ]] && port="${rest##*:}"
        port_open "$host" "$port"
    fi
}

# Wait until the server on $HOST:$PORT accepts connections. pg_isready exits 1 while a server is
# starting or shutting down (worth waiting for) and 2 when nothing PostgreSQL answers (give up).
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) rc
    while :; do
        rc=0
        "$BIN/pg_isready" -q -h "$HOST" -p "$PORT" -t 2 || rc=$?
        case "$rc" in
        0) return 0 ;;
        1) ;;
        *) return 1 ;;
        esac
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# Settings for a disposable test cluster, rewritten on every start so edits here take effect on
# an existing data directory too. Durability is traded for speed: a crash may lose the cluster,
# which only ever holds test data.
write_test_config() {
    as_owner tee "$PGDATA_DIR/governance-test.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh on every start; edit the script, not this file.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

init_cluster() {
    log "creating a new cluster in $PGDATA_DIR"
    rm -rf "$PGDATA_DIR"
    # --no-sync: nothing here needs to survive a power cut. C locale: available on every machine
    # and deterministic. Superuser over the socket by OS user (peer), everyone else by password.
    as_owner "$BIN/initdb" -D "$PGDATA_DIR" --no-sync --encoding=UTF8 --locale=C \
        --auth-local=peer --auth-host=scram-sha-256 >"$BASE_DIR/initdb.log" 2>&1 || {
        cat "$BASE_DIR/initdb.log" >&2
        die "initdb failed"
    }
    echo "include_if_exists = 'governance-test.conf'" | as_owner tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
}

# Superuser SQL over the unix socket. The superuser is the OS user who ran initdb.
psql_admin() {
    as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -d postgres "$@"
}

# Role and database for the tests. Idempotent, so it also repairs a half-set-up cluster.
# CREATEDB: the test suite creates (and drops) its own databases.
ensure_role_and_db() {
    psql_admin <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
    ELSE
        ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
    END IF;
END
\$\$;
SQL
    if [[ "$(psql_admin -A -t -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
    fi
}

start_local() {
    ensure_server_installed
    local major
    major="$(basename "$(dirname "$BIN")")"
    log "using PostgreSQL $major from $BIN"

    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "there is no 'postgres' system user to run the server as"
    fi
    mkdir -p "$BASE_DIR"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$BASE_DIR"; fi
    chmod 0700 "$BASE_DIR"

    # Reuse the data directory when it is a complete cluster of the same major version; a
    # different major version (machine upgraded) or a half-made directory is started afresh.
    if [[ -f "$PGDATA_DIR/PG_VERSION" && "$(cat "$PGDATA_DIR/PG_VERSION")" == "$major" ]] &&
        grep -q "governance-test.conf" "$PGDATA_DIR/postgresql.conf" 2>/dev/null; then
        log "reusing the cluster in $PGDATA_DIR"
    else
        init_cluster
    fi
    write_test_config

    touch "$MARKER" # before starting: a stop after a half-failed start must still clean up
    log "starting the server on $HOST:$PORT, log: $LOG_FILE"
    # 9>&-: the server must not inherit (and so hold forever) the start/stop lock.
    if ! as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG_FILE" -w -t "$READY_TIMEOUT" start >/dev/null 9>&- ||
        ! wait_ready; then
        log "last lines of $LOG_FILE:"
        tail -n 30 "$LOG_FILE" >&2 || true
        die "PostgreSQL did not start within ${READY_TIMEOUT}s"
    fi
    ensure_role_and_db
    log "ready"
}

stop_local() {
    if [[ ! -f "$MARKER" ]]; then
        log "no server started by this script on port $PORT; nothing to stop"
        return 0
    fi
    BIN="$(find_bindir)" || die "cannot find pg_ctl to stop the server in $PGDATA_DIR"
    if as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        log "stopping the server in $PGDATA_DIR"
        # fast: disconnect clients (a test may still hold connections) and shut down cleanly.
        as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null ||
            as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null ||
            die "could not stop the server in $PGDATA_DIR"
    else
        log "the server in $PGDATA_DIR is not running any more"
    fi
    rm -f "$MARKER"
    log "stopped (data kept in $PGDATA_DIR for a quick restart)"
}

cmd_start() {
    if [[ -n "${DATABASE_URL:-}" ]]; then
        check_url "$DATABASE_URL" ||
            die "DATABASE_URL=$(redact "$DATABASE_URL") is set but a connection to it fails (see above). Start that database or fix the URL, or unset the variable to get a local one."
        log "using DATABASE_URL from the environment"
        printf '%s\n' "$DATABASE_URL"
        return 0
    fi
    if port_open "$HOST" "$PORT"; then
        # Ours from an earlier start, or someone else's: usable only if our URL works there.
        BIN="$(find_bindir || true)"
        if [[ -n "$BIN" ]] && ! wait_ready; then
            die "something listens on $HOST:$PORT but does not become a ready PostgreSQL server"
        fi
        check_url "$LOCAL_URL" ||
            die "something listens on $HOST:$PORT but $(redact "$LOCAL_URL") does not work there; stop it or set GOVERNANCE_TEST_PG_PORT"
        log "reusing the server already answering on $HOST:$PORT"
        printf '%s\n' "$LOCAL_URL"
        return 0
    fi
    start_local
    printf '%s\n' "$LOCAL_URL"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    start | stop)
        # One start/stop at a time per port (parallel test jobs).
        # Opened read-only (flock needs no more), so a lock file made by another user still works.
        [[ -e "$LOCK_FILE" ]] || : >"$LOCK_FILE"
        exec 9<"$LOCK_FILE"
        flock -w 120 9 || die "another postgres.sh holds $LOCK_FILE"
        if [[ "$cmd" == start ]]; then cmd_start; else stop_local; fi
        ;;
    url)
        printf '%s\n' "${DATABASE_URL:-$LOCAL_URL}"
        ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
    esac
}

main "$@"
