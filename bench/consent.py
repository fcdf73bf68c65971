"""Consent decisions over HTTP against a bare FastAPI endpoint served the same way.

Both apps run under the same command (`python -m uvicorn`, one process, the same options) and
are driven by the same wrk (one thread, --connections); the rounds alternate between them so a
change of load on the shared machine hits both. Figures are medians of --rounds rounds:
- consent decisions/s, p50 and p99, against a bare `async def` endpoint returning a constant
  (target >= 0.8 of its throughput); also against the same endpoint as a plain `def` (FastAPI's
  thread pool) and against `/health` of the governance process (same middleware);
The load average is printed beside every round. The store holds --installs installs of one site
(PostgreSQL when DATABASE_URL is set, else SQLite); the caller always asks the same question, as
a consent screen does while it is shown (see bench.consent_scale for many different callers).

    python -m bench.consent [--installs 1000] [--seconds 8] [--rounds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.report import load_average, load_numbers, row, save
from bench.seed import seed_installs
from bench.servers import Run, Server, cpu_median, medians, uvicorn, wrk
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.runtime import Runtime, migrate

SECRET = "bench-secret-" + "x" * 32
CONSENT = "/v1/sites/s1/consent?app_id=app-7&scopes=read"
RESULTS = Path("test-output/bench/results.jsonl")


def governance_env(data_dir: Path, schema: str | None) -> dict[str, str]:
    env = {
        "GOVERNANCE_DATA_DIR": str(data_dir),
        "GOVERNANCE_JWT_SECRET": SECRET,
        "GOVERNANCE_METRICS_PORT": "0",
        "GOVERNANCE_LOG_LEVEL": "warning",
        "GOVERNANCE_RUN_REACTIONS": "false",
    }
    if schema is not None:
        env["GOVERNANCE_DATABASE_SCHEMA"] = schema
    return env


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=Path(env["GOVERNANCE_DATA_DIR"]),
        jwt_secret=SECRET,
        database_schema=env.get("GOVERNANCE_DATABASE_SCHEMA", "public"),
    )


@contextmanager
def governance(installs: int, scratch: Path) -> Iterator[Server]:
    """A migrated store with `installs` installs on site s1, and the API served on it."""
    schema = f"bench_{uuid.uuid4().hex[:8]}" if os.environ.get("DATABASE_URL") else None
    env = governance_env(scratch / f"var-{installs}", schema)
    settings = settings_of(env)
    migrate(settings)
    runtime = Runtime(settings)
    began = time.perf_counter()
    seed_installs(runtime, "s1", installs)
    runtime.projector.catch_up()
    print(f"  seeded and projected {installs:,} installs in {time.perf_counter() - began:.1f} s")
    runtime.close()
    try:
        with uvicorn("governance.api.app:create_app", env, factory=True) as server:
            yield server
    finally:
        if schema is not None:
            drop_schema(schema)


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def token(sub: str = "user-7") -> str:
    return TokenCodec(SECRET).issue(sub=sub, org="acme", roles=[Role.USER], sites=["s1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--installs", "--small", type=int, default=1_000)
    # Store size against latency is bench.consent_scale's figure; accepted for older callers.
    parser.add_argument("--large", type=int, help="ignored: see python -m bench.consent_scale")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    auth = {"Authorization": f"Bearer {token()}"}
    runs: dict[str, list[Run]] = {"bare": [], "bare_sync": [], "consent": [], "health": []}
    loads: list[str] = []
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    print(f"consent over HTTP, {backend}, {args.installs:,} installs, {load_average()}")
    with (
        tempfile.TemporaryDirectory() as scratch,
        uvicorn("bench.bare_app:app", {}) as bare_server,
        governance(args.installs, Path(scratch)) as served,
    ):
        targets = {
            "bare": (bare_server, CONSENT, {}),
            "bare_sync": (bare_server, "/sync" + CONSENT, {}),
            "consent": (served, CONSENT, auth),
            "health": (served, "/health", {}),
        }
        for server, path, headers in targets.values():  # warm up: the first fill the caches
            wrk(server.url + path, headers, 1, args.connections)
        for n in range(args.rounds):
            # Alternate the order (ABBA) so a drift of the machine's load favours neither.
            order = list(targets) if n % 2 == 0 else list(reversed(targets))
            for name in order:
                server, path, headers = targets[name]
                run = wrk(
                    server.url + path, headers, args.seconds, args.connections, pid=server.pid
                )
                runs[name].append(run)
            loads.append(load_numbers())
            line = "  ".join(
                f"{k} {v[-1].load.requests_per_second:,.0f}/s {v[-1].cpu_us:.0f} us"
                for k, v in runs.items()
            )
            print(f"  round {n + 1}: {line}  (load average {loads[-1]})")
    figures = {name: medians(values) for name, values in runs.items()}
    assert all(load.non_2xx == 0 for load in figures.values()), figures
    answered, bare = figures["consent"], figures["bare"]
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>6}")
    results = [
        row(
            "consent decisions/s vs bare FastAPI async constant",
            answered.requests_per_second,
            bare.requests_per_second,
            "req/s",
            ">= 0.8",
        ),
        row(
            "consent decisions/s vs bare FastAPI def (thread pool)",
            answered.requests_per_second,
            figures["bare_sync"].requests_per_second,
            "req/s",
            "report",
        ),
        row(
            "consent decisions/s vs /health of the same process",
            answered.requests_per_second,
            figures["health"].requests_per_second,
            "req/s",
            "report",
        ),
        row("consent p50 latency (ms) vs bare async", answered.p50_ms, bare.p50_ms, "ms", "report"),
        row("consent p99 latency (ms) vs bare async", answered.p99_ms, bare.p99_ms, "ms", "report"),
        row(
            "server CPU per request (us), consent vs bare async",
            cpu_median(runs["consent"]),
            cpu_median(runs["bare"]),
            "us",
            "report",
        ),
        row(
            "server CPU per request (us), consent vs bare def",
            cpu_median(runs["consent"]),
            cpu_median(runs["bare_sync"]),
            "us",
            "report",
        ),
    ]
    print(f"load average after each round: {' | '.join(loads)}")
    save(results, RESULTS, load_average=loads, backend=backend)


if __name__ == "__main__":
    main()
