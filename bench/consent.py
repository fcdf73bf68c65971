"""Consent decisions over HTTP against baselines served the same way, and latency vs store size.

Figures (medians of --rounds rounds of wrk, one uvicorn process each):
- consent decisions/s, p50 and p99, against (a) a bare FastAPI app returning a constant and
  (b) `/health` of the same governance process (same middleware: request ids, metrics, logs);
- consent p50 latency with --large installs stored against --small (target ratio <= 1.2).
Uses PostgreSQL when DATABASE_URL is set (as in production), else the embedded SQLite.

    python -m bench.consent [--large 1000000] [--small 1000] [--seconds 8] [--rounds 3]
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

from bench.report import median, row, save
from bench.seed import seed_installs
from bench.servers import PYTHON, Load, free_port, process, uvicorn_app, wrk
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.runtime import Runtime, migrate

SECRET = "bench-secret-" + "x" * 32
CONNECTIONS = 16


@contextmanager
def governance_server(installs: int, scratch: Path) -> Iterator[str]:
    """A migrated, seeded store and `governance serve` on it (projector in the process)."""
    env = {
        "GOVERNANCE_DATA_DIR": str(scratch / f"var-{installs}"),
        "GOVERNANCE_JWT_SECRET": SECRET,
        "GOVERNANCE_METRICS_PORT": "0",
        "GOVERNANCE_LOG_LEVEL": "warning",
    }
    if os.environ.get("DATABASE_URL"):
        env["GOVERNANCE_DATABASE_SCHEMA"] = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=Path(env["GOVERNANCE_DATA_DIR"]),
        jwt_secret=SECRET,  # type: ignore[arg-type]
        database_schema=env.get("GOVERNANCE_DATABASE_SCHEMA", "public"),
    )
    migrate(settings)
    runtime = Runtime(settings)
    began = time.perf_counter()
    seed_installs(runtime, "s1", installs)
    runtime.projector.catch_up()
    print(f"  seeded and projected {installs:,} installs in {time.perf_counter() - began:.1f} s")
    runtime.close()
    port = free_port()
    command = [PYTHON, "-m", "governance", "serve", "--port", str(port)]
    with process(command, env, f"http://127.0.0.1:{port}/ready"):
        yield f"http://127.0.0.1:{port}"


def measure(url: str, headers: dict[str, str], seconds: int, rounds: int) -> Load:
    loads = [wrk(url, headers, seconds, CONNECTIONS) for _ in range(rounds)]
    assert all(load.non_2xx == 0 for load in loads), loads
    return Load(
        median([load.requests_per_second for load in loads]),
        median([load.p50_ms for load in loads]),
        median([load.p99_ms for load in loads]),
        0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    token = TokenCodec(SECRET).issue(sub="user-7", org="acme", roles=[Role.USER], sites=["s1"])
    auth = {"Authorization": f"Bearer {token}"}
    consent = "/v1/sites/s1/consent?app_id=app-7&scopes=read"
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        with uvicorn_app("bench.bare_app:app") as bare:
            bare_load = measure(bare + consent, {}, args.seconds, args.rounds)
        with governance_server(args.small, Path(scratch)) as url:
            health = measure(url + "/health", {}, args.seconds, args.rounds)
            small = measure(url + consent, auth, args.seconds, args.rounds)
        with governance_server(args.large, Path(scratch)) as url:
            large = measure(url + consent, auth, args.seconds, args.rounds)
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>6}")
    results.append(
        row(
            "consent decisions/s vs bare FastAPI constant",
            small.requests_per_second,
            bare_load.requests_per_second,
            "req/s",
            ">= 0.8",
        )
    )
    results.append(
        row(
            "consent decisions/s vs /health of the same process",
            small.requests_per_second,
            health.requests_per_second,
            "req/s",
            ">= 0.8",
        )
    )
    results.append(
        row(
            "consent p50 latency (ms) vs bare FastAPI",
            small.p50_ms,
            bare_load.p50_ms,
            "ms",
            "report",
        )
    )
    results.append(
        row(
            "consent p99 latency (ms) vs bare FastAPI",
            small.p99_ms,
            bare_load.p99_ms,
            "ms",
            "report",
        )
    )
    results.append(
        row(
            f"consent p50 (ms), {args.large:,} installs vs {args.small:,}",
            large.p50_ms,
            small.p50_ms,
            "ms",
            "ratio <= 1.2",
        )
    )
    results.append(
        row(
            f"consent req/s, {args.large:,} installs vs {args.small:,}",
            large.requests_per_second,
            small.requests_per_second,
            "req/s",
            "report",
        )
    )
    save(results, Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
