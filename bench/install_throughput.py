"""Install commands over HTTP on PostgreSQL against single-row INSERT transactions.

Figure: sustained install commands per second, `governance serve` (one process, projector in
it, group commit on) driven by wrk with C connections; every request is a new grant (a distinct
user and app), so no command conflicts and none is refused by the per-account rate limit.
Baseline, same run: pgbench committing one single-row INSERT per transaction with the same C
clients (psycopg threads when pgbench is missing). Target: figure >= 0.5 of the baseline.
Medians of --rounds rounds; the load average is printed beside every figure.

Also printed, to show where the limit is: the same wrk load on a bare FastAPI app that parses
the same body and answers a constant (the HTTP ceiling of one uvicorn process), and the install
command called by C threads in one process without HTTP, with group commit on and off. With
--without-group-commit the API itself is measured again with GOVERNANCE_GROUP_COMMIT=false;
with --sqlite the in-process rates are also measured on the embedded SQLite store.

    DATABASE_URL=postgresql://... python -m bench.install_throughput [--connections 16]
        [--seconds 8] [--rounds 3] [--without-group-commit] [--sqlite]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import psycopg
from psycopg import sql

from bench.report import load_average, median, row, save
from bench.servers import PYTHON, free_port, process, require, uvicorn
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.runtime import Runtime, migrate

SECRET = "bench-secret-" + "x" * 32
USERS = 2_000  # tokens handed out in turn: each account stays far below its command rate


# ---- the figure: install commands over HTTP ----


def lua_script(path: Path, tokens: list[str], prefix: str) -> None:
    """A wrk script: each request a new grant, accounts taken in turn from `tokens`."""
    quoted = ",\n".join(f'"{t}"' for t in tokens)
    path.write_text(
        f"local tokens = {{\n{quoted}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f'  local body = \'{{"app_id":"app-{prefix}-\' .. n .. \'",'
        '"app_name":"Bench","scopes":["read"]}\'\n'
        '  local headers = {["Content-Type"] = "application/json",'
        ' ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}\n'
        '  return wrk.format("POST", "/v1/sites/s1/installations", headers, body)\n'
        "end\n",
        encoding="utf-8",
    )


def wrk_rate(url: str, script: Path, seconds: int, connections: int) -> tuple[float, int]:
    """Requests/s and the count of non-2xx answers of one wrk run."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate is not None, out
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return float(rate.group(1)), int(errors.group(1)) if errors else 0


@contextmanager
def api_server(settings: Settings, *, group_commit: bool) -> Iterator[str]:
    port = free_port()
    env = {
        "GOVERNANCE_DATABASE_SCHEMA": settings.database_schema,
        "GOVERNANCE_JWT_SECRET": SECRET,
        "GOVERNANCE_LOG_LEVEL": "warning",
        "GOVERNANCE_GROUP_COMMIT": "true" if group_commit else "false",
    }
    command = [PYTHON, "-m", "governance", "serve", "--port", str(port)]
    with process(command, env, f"http://127.0.0.1:{port}/ready"):
        yield f"http://127.0.0.1:{port}"


def batch_sizes(url: str) -> tuple[float, float]:
    """(transactions, saves) the server committed, from governance_commit_batch_size."""
    text = httpx2.get(url + "/metrics", timeout=10).text
    found = dict(re.findall(r"^governance_commit_batch_size_(count|sum) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def bench_tokens() -> list[str]:
    codec = TokenCodec(SECRET)
    return [
        codec.issue(sub=f"user-{n}", org="acme", roles=[Role.USER], sites=["s1"])
        for n in range(USERS)
    ]


def http_rates(url: str, args: argparse.Namespace, scratch: Path, what: str) -> float:
    """Median requests/s of wrk posting new installs to `url`, after a short warm-up."""
    script = scratch / "install.lua"
    tokens = bench_tokens()
    lua_script(script, tokens, "warm" + uuid.uuid4().hex[:6])
    wrk_rate(url, script, 2, args.connections)  # warm up: connections, pools, caches
    rates = []
    for n in range(args.rounds):
        lua_script(script, tokens, f"r{n}" + uuid.uuid4().hex[:6])
        rate, failed = wrk_rate(url, script, args.seconds, args.connections)
        assert failed == 0, f"{failed} requests were not answered 2xx"
        rates.append(rate)
        print(f"  {what}, round {n + 1}: {rate:,.0f}/s ({load_average()})")
    return median(rates)


def installs_per_second(
    settings: Settings, args: argparse.Namespace, scratch: Path, *, group_commit: bool
) -> float:
    with api_server(settings, group_commit=group_commit) as url:
        before = batch_sizes(url)
        rate = http_rates(url, args, scratch, "installs over HTTP")
        count, total = (a - b for a, b in zip(batch_sizes(url), before, strict=True))
        if count:
            print(f"  {total:,.0f} saves in {count:,.0f} transactions: {total / count:.1f} each")
    return rate


def bare_http_per_second(args: argparse.Namespace, scratch: Path) -> float:
    with uvicorn("bench.bare_app:app", {}) as server:
        return http_rates(server.url, args, scratch, "bare FastAPI POST")


def in_process_per_second(
    settings: Settings, args: argparse.Namespace, *, group_commit: bool
) -> float:
    """Install commands/s with C threads calling the application directly (no HTTP)."""
    runtime = Runtime(settings.model_copy(update={"group_commit": group_commit}))
    app = runtime.application
    rates = []
    try:
        for n in range(args.rounds):
            prefix = f"p{n}{group_commit:d}" + uuid.uuid4().hex[:6]

            def install(client: int, count: int, prefix: str = prefix) -> None:
                by = Actor(f"user-{client}")
                app_id = f"{prefix}-{client}-{count}"
                app.install_app("s1", app_id, "Bench", ["read"], by, InstalledBy.USER)

            rates.append(threaded_rate(install, args.connections, args.seconds))
            state = "on" if group_commit else "off"
            print(
                f"  in process, group commit {state}, round {n + 1}: {rates[-1]:,.0f}/s"
                f" ({load_average()})"
            )
    finally:
        runtime.close()
    return median(rates)


# ---- the baseline: single-row INSERT transactions ----


def prepare_baseline(settings: Settings) -> sql.Composed:
    assert settings.database_url is not None
    table = sql.Identifier(settings.database_schema, "bench_single_row_inserts")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, payload text NOT NULL)"
            ).format(table)
        )
    # A payload about the size of one stored install event.
    return sql.SQL("INSERT INTO {} (payload) VALUES (repeat('x', 300))").format(table)


def pgbench_rate(url: str, insert: str, seconds: int, clients: int, scratch: Path) -> float:
    script = scratch / "insert.sql"
    script.write_text(insert + ";\n", encoding="utf-8")
    command = ["pgbench", "-n", "-c", str(clients), "-j", "1", "-T", str(seconds)]
    out = subprocess.run(
        [*command, "-f", str(script), url], check=True, capture_output=True, text=True
    ).stdout
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    assert tps is not None, out
    return float(tps.group(1))


def threaded_rate(work: Callable[[int, int], None], clients: int, seconds: float) -> float:
    """Calls/s of `work(client, count)`, each of `clients` threads calling it in turn."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < stop:
            work(index, done[index])
            done[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - began)


def psycopg_rate(url: str, insert: str, seconds: int, clients: int) -> float:
    """The same baseline with psycopg: `clients` threads, each committing one insert at a time."""
    connections = [psycopg.connect(url, autocommit=True) for _ in range(clients)]

    def insert_one(client: int, _: int) -> None:
        connections[client].execute(insert.encode(), prepare=True)

    try:
        return threaded_rate(insert_one, clients, seconds)
    finally:
        for conn in connections:
            conn.close()


def inserts_per_second(settings: Settings, args: argparse.Namespace, scratch: Path) -> float:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        insert = prepare_baseline(settings).as_string(conn)
    use_pgbench = require("pgbench", "postgresql-client")
    rates = []
    for n in range(args.rounds):
        if use_pgbench:
            rate = pgbench_rate(
                settings.database_url, insert, args.seconds, args.connections, scratch
            )
        else:
            rate = psycopg_rate(settings.database_url, insert, args.seconds, args.connections)
        rates.append(rate)
        tool = "pgbench" if use_pgbench else "psycopg"
        print(f"  single-row INSERTs ({tool}), round {n + 1}: {rate:,.0f}/s ({load_average()})")
    return median(rates)


# ---- the run ----


def bench_settings(scratch: Path, *, sqlite: bool = False) -> Settings:
    if not sqlite and not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is not set: this benchmark measures PostgreSQL")
    settings = Settings(
        data_dir=scratch / "var",
        jwt_secret=SECRET,
        database_schema=f"bench_{uuid.uuid4().hex[:8]}",
        **({"database_url": None} if sqlite else {}),
    )
    migrate(settings)
    runtime = Runtime(settings)
    runtime.application.register_site("acme", "s1", "Bench site", Actor("olga"))
    runtime.close()
    return settings


def drop_schema(settings: Settings) -> None:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for (schema,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
            (settings.database_schema,),
        ).fetchall():
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without-group-commit", action="store_true")
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    if not require("wrk", "wrk"):
        sys.exit("wrk is needed (apt-get install wrk)")
    c = args.connections
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        settings = bench_settings(Path(scratch))
        try:
            print(f"install commands over HTTP, {c} connections ({load_average()})")
            figure = installs_per_second(settings, args, Path(scratch), group_commit=True)
            plain = None
            if args.without_group_commit:
                print(f"the same without group commit ({load_average()})")
                plain = installs_per_second(settings, args, Path(scratch), group_commit=False)
            print(f"single-row INSERT transactions, {c} clients ({load_average()})")
            baseline = inserts_per_second(settings, args, Path(scratch))
            print(f"the HTTP ceiling: a bare FastAPI endpoint ({load_average()})")
            bare = bare_http_per_second(args, Path(scratch))
            print(f"install commands without HTTP, {c} threads ({load_average()})")
            grouped = in_process_per_second(settings, args, group_commit=True)
            ungrouped = in_process_per_second(settings, args, group_commit=False)
            embedded = None
            if args.sqlite:
                print(f"the same on the embedded SQLite store ({load_average()})")
                lite = bench_settings(Path(scratch) / "sqlite", sqlite=True)
                embedded = (
                    in_process_per_second(lite, args, group_commit=True),
                    in_process_per_second(lite, args, group_commit=False),
                )
        finally:
            drop_schema(settings)
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>6}   ({load_average()})")
    results.append(
        row(
            f"install commands/s over HTTP vs single-row INSERTs, C={c}",
            figure,
            baseline,
            "per s",
            ">= 0.5",
        )
    )
    results.append(
        row(
            f"install commands/s over HTTP vs bare FastAPI POST, C={c}",
            figure,
            bare,
            "per s",
            "report",
        )
    )
    results.append(
        row(
            f"install commands/s in process vs single-row INSERTs, C={c}",
            grouped,
            baseline,
            "per s",
            "report",
        )
    )
    results.append(
        row(
            f"install commands/s in process, group commit on vs off, C={c}",
            grouped,
            ungrouped,
            "per s",
            "report",
        )
    )
    if embedded is not None:
        results.append(
            row(
                f"SQLite: install commands/s in process, group commit on vs off, C={c}",
                *embedded,
                "per s",
                "report",
            )
        )
    if plain is not None:
        results.append(
            row(
                f"install commands/s, group commit on vs off, C={c}",
                figure,
                plain,
                "per s",
                "report",
            )
        )
    results[0]["load_average"] = list(os.getloadavg())
    save(results, Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
