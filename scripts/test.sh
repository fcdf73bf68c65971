#!/usr/bin/env bash
# The README's test command (`make test`): lint, type-check, then every test tier against the
# embedded default, the real PostgreSQL and the real Kafka. Servers named by DATABASE_URL and
# KAFKA_BOOTSTRAP_SERVERS are used as they are; otherwise local ones are installed and started
# on loopback, and stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff"
"$BIN/ruff" check .
"$BIN/ruff" format --check .
echo "== mypy --strict"
"$BIN/mypy"

# Stop at the end only what this run started: a server that answered before stays up.
answers() {  # answers HOST:PORT
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}
pg_address=$(bash scripts/postgres.sh url | sed -E 's|^[a-z]+://([^@]*@)?([^/?]+).*$|\2|')
kafka_address=$(bash scripts/kafka.sh url | cut -d, -f1)
stop_pg=yes stop_kafka=yes
answers "$pg_address" && stop_pg=no
answers "$kafka_address" && stop_kafka=no
cleanup() {
    [ "$stop_kafka" = yes ] && bash scripts/kafka.sh stop || true
    [ "$stop_pg" = yes ] && bash scripts/postgres.sh stop || true
}
trap cleanup EXIT

echo "== PostgreSQL"
DATABASE_URL=$(bash scripts/postgres.sh start)
export DATABASE_URL
echo "using PostgreSQL at ${DATABASE_URL%%://*}://...@${DATABASE_URL##*@}"
echo "== Kafka"
KAFKA_BOOTSTRAP_SERVERS=$(bash scripts/kafka.sh start)
export KAFKA_BOOTSTRAP_SERVERS
echo "using Kafka at $KAFKA_BOOTSTRAP_SERVERS"

echo "== Chromium (tests/browser)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

echo "== pytest"
mkdir -p test-output
"$BIN/pytest" "$@"
