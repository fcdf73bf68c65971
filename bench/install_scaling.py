"""Install latency on one site and one app: the first installs vs after 100,000 users installed.

Each grant is its own short stream, so the hundred-thousandth install should cost what the first
did. Figure: median latency of the last 1,000 installs; baseline: the first 1,000; target ratio
<= 1.2. Runs on the embedded SQLite store by default, or PostgreSQL when DATABASE_URL is set.

    python -m bench.install_scaling [--users 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.report import median, row, save
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.runtime import Runtime, migrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), jwt_secret="bench-" + "x" * 32)
        if settings.uses_postgres:
            settings = settings.model_copy(update={"database_schema": f"bench_{int(time.time())}"})
        migrate(settings)
        runtime = Runtime(settings)
        app = runtime.application
        app.register_site("acme", "s1", "One", Actor("olga"))
        latencies: list[float] = []
        started = time.perf_counter()
        for n in range(args.users):
            began = time.perf_counter()
            app.install_app(
                "s1", "popular", "Popular", ["read"], Actor(f"user-{n}"), InstalledBy.USER
            )
            latencies.append(time.perf_counter() - began)
            if n and n % 10_000 == 0:
                print(f"  {n:>7} installs, {n / (time.perf_counter() - started):,.0f}/s")
        runtime.close()
    first = median(latencies[: args.sample]) * 1000
    last = median(latencies[-args.sample :]) * 1000
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>6}")
    result = row(
        f"install latency after {args.users:,} installs of one app (ms, median)",
        last,
        first,
        "ms",
        "ratio <= 1.2",
    )
    save([result], Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
