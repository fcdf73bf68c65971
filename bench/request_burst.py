"""A burst of end users requesting one app at once: every request writes to the app's one case.

Concurrent writers of one stream conflict; the service retries each request up to 10 times with
a random, doubling wait. Figure: requests recorded out of N sent at once (the rest answered 409
`concurrent_write`, to be retried by the client); baseline: the same burst with the retry policy
of the other commands before requests (3 immediate attempts). Also prints median and slowest
latency. Runs on the embedded SQLite store by default, or PostgreSQL when DATABASE_URL is set.

    python -m bench.request_burst [--requesters 64]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from eventsourcing.persistence import IntegrityError
from psycopg import sql

import governance.application
import governance.approvals
from bench.report import median, row, save
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.site import UserInstalls
from governance.runtime import Runtime, migrate


def burst(settings: Settings, requesters: int) -> tuple[int, list[float]]:
    """Send `requesters` requests for one app at once; return how many were recorded."""
    runtime = Runtime(settings)
    try:
        app = runtime.application
        app.register_site("acme", "s1", "One", Actor("olga"))
        app.set_user_installs("s1", UserInstalls.BLOCKED, Actor("olga"))

        def ask(n: int) -> tuple[bool, float]:
            began = time.perf_counter()
            try:
                app.request_app("s1", "x", "X", ["read"], "why", Actor(f"u{n}"), InstalledBy.USER)
            except IntegrityError:
                return False, time.perf_counter() - began
            return True, time.perf_counter() - began

        with concurrent.futures.ThreadPoolExecutor(requesters) as pool:
            answers = list(pool.map(ask, range(requesters)))
    finally:
        runtime.close()
        if settings.uses_postgres:
            drop_schema(settings)
    return sum(ok for ok, _ in answers), [seconds for _, seconds in answers]


def drop_schema(settings: Settings) -> None:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(settings.database_schema)
            )
        )


def fresh(base: Settings, scratch: Path, requesters: int) -> Settings:
    update: dict[str, object] = {
        "data_dir": scratch / uuid.uuid4().hex,
        "database_pool_size": min(requesters + 2, 200),
    }
    if base.uses_postgres:
        update["database_schema"] = f"bench_{uuid.uuid4().hex[:10]}"
    settings = base.model_copy(update=update)
    migrate(settings)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requesters", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Settings(data_dir=Path(scratch), jwt_secret="bench-" + "x" * 32)
        recorded, latencies = burst(fresh(base, Path(scratch), args.requesters), args.requesters)
        # The baseline: 3 attempts, no wait between them.
        attempts, backoff = governance.approvals._REQUEST_ATTEMPTS, governance.application._BACKOFF
        governance.approvals._REQUEST_ATTEMPTS, governance.application._BACKOFF = 3, 0.0
        try:
            before, _ = burst(fresh(base, Path(scratch), args.requesters), args.requesters)
        finally:
            governance.approvals._REQUEST_ATTEMPTS = attempts
            governance.application._BACKOFF = backoff
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>6}")
    results = [
        row(
            f"requests recorded of {args.requesters} sent at once to one case",
            recorded,
            before,
            "requests",
            f"= {args.requesters}",
        ),
        row("request latency in the burst (ms, median)", median(latencies) * 1000, None, "ms", "-"),
        row("request latency in the burst (ms, slowest)", max(latencies) * 1000, None, "ms", "-"),
    ]
    save(results, Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
