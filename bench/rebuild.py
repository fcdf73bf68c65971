"""How fast `governance replay` rebuilds every read model, next to reading the same log raw.

    python -m bench.rebuild --events 1000000 --backend sqlite --backend postgres --rounds 3

The log is written once with the real domain and recorder (bench/generate.py) and kept for later
runs: SQLite under var/bench/, PostgreSQL in the schema bench_<events> of DATABASE_URL. Each round
reads the whole log raw with `recorder.select_notifications` (the baseline), then replays it into
a new generation; the medians are printed with their ratio. Each round also prints the load
average around it (other processes on the machine slow it down) and the CPU seconds the replay
used in this process and in its worker processes (the PostgreSQL server's are not counted).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.generate import generate
from bench.report import row, save
from governance.config import Settings
from governance.runtime import Runtime, migrate

DATA = Path("var/bench")
PAGE = 5000


@dataclass
class Round:
    read_rate: float
    rebuild_rate: float
    rebuild_seconds: float
    parent_cpu: float
    workers_cpu: float
    load: tuple[float, float]
    phases: dict[str, float]


def settings_for(backend: str, events: int) -> Settings:
    common = {"jwt_secret": "bench", "kafka_bootstrap_servers": None}
    if backend == "sqlite":
        return Settings(data_dir=DATA / f"sqlite-{events}", database_url=None, **common)  # type: ignore[arg-type]
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL to benchmark PostgreSQL")
    return Settings(
        data_dir=DATA / f"postgres-{events}",
        database_url=url,
        database_schema=f"bench_{events}",
        **common,  # type: ignore[arg-type]
    )


def prepare(settings: Settings, events: int) -> Runtime:
    migrate(settings)
    runtime = Runtime(settings, create_tables=False)
    stored = runtime.application.recorder.max_notification_id() or 0
    if stored == 0:
        print(f"  writing {events:,} events with the real domain and recorder...", flush=True)
        written, seconds = generate(runtime.application, events)
        print(f"  wrote {written:,} events in {seconds:.0f} s ({written / seconds:,.0f}/s)")
    elif stored < events:
        raise SystemExit(f"{settings.data_dir}: holds {stored} events, not {events}; remove it")
    return runtime


def read_raw(runtime: Runtime) -> tuple[int, float]:
    recorder = runtime.application.recorder
    started = time.perf_counter()
    position, count = 0, 0
    while page := recorder.select_notifications(
        start=position, limit=PAGE, inclusive_of_start=False
    ):
        count += len(page)
        position = page[-1].id
    return count, time.perf_counter() - started


def one_round(runtime: Runtime) -> Round:
    count, read_seconds = read_raw(runtime)
    load = os.getloadavg()[0]
    started, cpu = time.perf_counter(), time.process_time()
    rebuilder = runtime.rebuilder()
    rebuilder.replay()
    seconds = time.perf_counter() - started
    return Round(
        count / read_seconds,
        count / seconds,
        seconds,
        time.process_time() - cpu,
        rebuilder.workers_cpu,
        (load, os.getloadavg()[0]),
        dict(rebuilder.phases),
    )


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    results = []
    for backend in args.backend or ["sqlite", "postgres"]:
        print(f"{backend}:", flush=True)
        runtime = prepare(settings_for(backend, args.events), args.events)
        try:
            rounds = []
            for n in range(args.rounds):
                done = one_round(runtime)
                rounds.append(done)
                print(
                    f"  round {n + 1}: raw read {done.read_rate:,.0f} events/s,"
                    f" rebuild {done.rebuild_rate:,.0f} events/s ({done.rebuild_seconds:.1f} s;"
                    f" CPU {done.parent_cpu:.1f} s here + {done.workers_cpu:.1f} s in workers;"
                    f" load {done.load[0]:.1f} -> {done.load[1]:.1f})",
                    flush=True,
                )
                phases = ", ".join(f"{name} {s:.1f} s" for name, s in done.phases.items())
                print(f"    phases: {phases}", flush=True)
            results.append((backend, rounds))
        finally:
            runtime.close()
    print(f"\nmedians of {args.rounds} rounds, {args.events:,} events:")
    print(f"{'backend':10} {'raw read/s':>12} {'rebuild/s':>12} {'ratio':>7} {'seconds':>8}")
    rows: list[dict[str, object]] = []
    for backend, rounds in results:
        read = statistics.median(r.read_rate for r in rounds)
        rebuild = statistics.median(r.rebuild_rate for r in rounds)
        seconds = statistics.median(r.rebuild_seconds for r in rounds)
        print(f"{backend:10} {read:12,.0f} {rebuild:12,.0f} {rebuild / read:7.3f} {seconds:8.1f}")
        rows.append(row(f"rebuild ({backend}) vs raw read", rebuild, read, "events/s", ">= 0.3"))
        rows.append(row(f"rebuild ({backend})", rebuild, None, "events/s", ">= 40,000 events/s"))
    save(rows, Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
