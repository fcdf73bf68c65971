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
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.report import median, row, save
from bench.seed import seed_installs
from bench.servers import PYTHON, Load, free_port, wait_for
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.runtime import Runtime, migrate

SECRET = "bench-secret-" + "x" * 32
CONSENT = "/v1/sites/s1/consent?app_id=app-7&scopes=read"
RESULTS = Path("test-output/bench/results.jsonl")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def uvicorn(app_spec: str, env: dict[str, str], *, factory: bool = False) -> Iterator[Server]:
    """One uvicorn process with the options every HTTP figure uses (the baseline's too)."""
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", app_spec, "--port", str(port)]
    command += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    if factory:
        command.append("--factory")
    proc = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/docs", timeout=120)
        yield Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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


@dataclass(frozen=True)
class Run:
    load: Load
    cpu_us: float  # the server process's CPU time (all its threads) per request answered


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    headers: dict[str, str],
    seconds: int,
    connections: int,
    script: Path | None = None,
    pid: int | None = None,
) -> Run:
    """One wrk run (one thread); with `pid`, also the server's CPU time per request.

    CPU per request hardly depends on what else the shared machine runs, unlike rates and
    latencies, which is why it is printed beside them.
    """
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    used = cpu_seconds(pid) - before if pid is not None else 0.0
    answered = re.search(r"(\d+) requests in", out)
    count = int(answered.group(1)) if answered else 0
    return Run(parse_wrk(out), used / count * 1e6 if count else 0.0)


def parse_wrk(out: str) -> Load:
    def millis(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if match is None:
            raise ValueError(f"wrk printed a latency I cannot read: {text!r}")
        units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
        return float(match.group(1)) * units[match.group(2)]

    def find(pattern: str) -> str:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{out}")
        return match.group(1)

    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Load(
        float(find(r"Requests/sec:\s+([\d.]+)")),
        millis(find(r"^\s+50%\s+(\S+)")),
        millis(find(r"^\s+99%\s+(\S+)")),
        int(errors.group(1)) if errors else 0,
    )


def medians(runs: list[Run]) -> Load:
    loads = [run.load for run in runs]
    return Load(
        median([load.requests_per_second for load in loads]),
        median([load.p50_ms for load in loads]),
        median([load.p99_ms for load in loads]),
        sum(load.non_2xx for load in loads),
    )


def cpu_median(runs: list[Run]) -> float:
    return median([run.cpu_us for run in runs])


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
    print(f"consent over HTTP, {backend}, {args.installs:,} installs, load {load_average()}")
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
            loads.append(load_average())
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
