"""Consent latency with 1,000,000 installs stored against 1,000, and the API process's memory.

Two stores, each with N installs on site s1 of one org (N = --small and --large, 1 event per
install), written in bulk through the real domain and recorder (`bench.seed`) and projected by
the real bulk replay (`governance replay`'s), kept under var/bench/ (SQLite) or in the schema
bench_consent_<N> of DATABASE_URL (PostgreSQL) and reused by later runs. Both are served at
once, the same way as bench.consent; rounds alternate between them. Two workloads, each wrk:
- hot: one caller asks the same question again and again (a consent screen being shown);
- cold: 1,000 callers (spread over the store's users) ask about 50 apps in turn: 50,000
  different questions, more than the API keeps in memory, so each is read from the views.
Then the API process's peak resident memory (VmHWM from /proc) after serving all of it.

    python -m bench.consent_scale [--large 1000000] [--small 1000] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from operator import attrgetter
from pathlib import Path

from bench.consent import RESULTS, governance_env, settings_of, token
from bench.report import load_average, load_numbers, row, save
from bench.seed import seed_installs
from bench.servers import Run, Server, cpu_median, medians, uvicorn, wrk
from governance.runtime import Runtime, migrate

DATA = Path("var/bench")
HOT = "/v1/sites/s1/consent?app_id=app-7&scopes=read"
CALLERS, APPS = 1_000, 50


def prepared(installs: int) -> dict[str, str]:
    """The environment of a store holding `installs` installs and their read models."""
    postgres = bool(os.environ.get("DATABASE_URL"))
    env = governance_env(
        DATA / f"consent-{installs}", f"bench_consent_{installs}" if postgres else None
    )
    settings = settings_of(env)
    migrate(settings)
    runtime = Runtime(settings, create_tables=False)
    try:
        stored = runtime.application.recorder.max_notification_id() or 0
        if stored == 0:
            began = time.perf_counter()
            seed_installs(runtime, "s1", installs)
            seeded = time.perf_counter()
            runtime.rebuilder().replay()
            done = time.perf_counter()
            print(
                f"  {installs:,} installs: stored in {seeded - began:.0f} s,"
                f" read models rebuilt in {done - seeded:.0f} s"
            )
        elif stored < installs:
            raise SystemExit(f"{settings.data_dir}: {stored} events, not {installs}; remove it")
        elif runtime.projector.position() < stored:
            # Read models this code has and the store's lack (kept from an older tree): build
            # them now, not while the consent path is measured.
            runtime.rebuilder().replay()
    finally:
        runtime.close()
    return env


def cold_script(installs: int, directory: Path) -> Path:
    """A wrk script asking 1,000 callers x 50 apps in turn (users spread over the store)."""
    stride = max(1, installs // CALLERS)
    tokens = ",\n".join(f'"{token(f"user-{k * stride}")}"' for k in range(CALLERS))
    script = directory / f"cold-{installs}.lua"
    script.write_text(
        f"local tokens = {{\n{tokens}\n}}\n"
        f"local apps = {APPS}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local caller = (n % #tokens) + 1\n"
        "  local app = math.floor(n / #tokens) % apps\n"
        '  local path = "/v1/sites/s1/consent?app_id=app-" .. app .. "&scopes=read"\n'
        '  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. tokens[caller]})\n'
        "end\n",
        encoding="utf-8",
    )
    return script


def peak_memory_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of a process, in MB (10^6 bytes, as the target)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        int(fields["VmHWM"].split()[0]) * 1024 / 1e6,
        int(fields["VmRSS"].split()[0]) * 1024 / 1e6,
    )


@contextmanager
def served(sizes: list[int]) -> Iterator[dict[int, Server]]:
    with ExitStack() as stack:
        servers = {
            n: stack.enter_context(
                uvicorn("governance.api.app:create_app", prepared(n), factory=True)
            )
            for n in sizes
        }
        yield servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    print(f"consent vs store size, {backend}, {load_average()}")
    DATA.mkdir(parents=True, exist_ok=True)
    sizes = [args.small, args.large]
    scripts = {n: cold_script(n, DATA) for n in sizes}
    auth = {"Authorization": f"Bearer {token()}"}
    hot: dict[int, list[Run]] = {n: [] for n in sizes}
    cold: dict[int, list[Run]] = {n: [] for n in sizes}
    loads: list[str] = []
    with served(sizes) as servers:
        for n in sizes:  # warm up: fill the caches, compile the queries
            wrk(servers[n].url + HOT, auth, 1, args.connections)
            wrk(servers[n].url + HOT, {}, 1, args.connections, scripts[n])
        for r in range(args.rounds):
            # Alternate the order (ABBA) so a drift of the machine's load favours neither.
            order = sizes if r % 2 == 0 else sizes[::-1]
            for n in order:
                server = servers[n]
                hot[n].append(
                    wrk(server.url + HOT, auth, args.seconds, args.connections, pid=server.pid)
                )
            for n in order[::-1]:
                server = servers[n]
                cold[n].append(
                    wrk(
                        server.url + HOT, {}, args.seconds, args.connections, scripts[n], server.pid
                    )
                )
            loads.append(load_numbers())
            line = "  ".join(
                f"{n:,}: hot {hot[n][-1].load.p50_ms:.2f} ms {hot[n][-1].cpu_us:.0f} us,"
                f" cold {cold[n][-1].load.p50_ms:.2f} ms {cold[n][-1].cpu_us:.0f} us"
                for n in sizes
            )
            print(f"  round {r + 1}: p50, CPU/request {line}  (load average {loads[-1]})")
        memory = {n: peak_memory_mb(servers[n].pid) for n in sizes}
    small, large = args.small, args.large
    h = {n: medians(hot[n]) for n in sizes}
    c = {n: medians(cold[n]) for n in sizes}
    assert all(load.non_2xx == 0 for load in [*h.values(), *c.values()]), (h, c)
    big, few = f"{large:,} installs", f"{small:,}"
    print(f"{'figure':<58} {'value':>12} {'baseline':>12} {'ratio':>6}")
    # Each workload's latencies and rate, then the server's CPU per request, large vs small.
    results = [
        row(f"consent {what}, {kind}, {big} vs {few}", pick(m[large]), pick(m[small]), unit, target)
        for kind, m in (("hot", h), ("cold", c))
        for what, pick, unit, target in (
            ("p50 (ms)", attrgetter("p50_ms"), "ms", "<= 1.2"),
            ("p99 (ms)", attrgetter("p99_ms"), "ms", "report"),
            ("req/s", attrgetter("requests_per_second"), "req/s", "report"),
        )
    ]
    results += [
        row(
            f"server CPU/request (us), {kind}, {big} vs {few}",
            cpu_median(runs[large]),
            cpu_median(runs[small]),
            "us",
            "report",
        )
        for kind, runs in (("hot", hot), ("cold", cold))
    ]
    results.append(
        row(
            f"API peak RSS (MB), {large:,} events stored vs {small:,}",
            memory[large][0],
            memory[small][0],
            "MB",
            "<= 300 MB",
        )
    )
    print(
        f"resident now (MB): {large:,}: {memory[large][1]:.0f}, {small:,}: {memory[small][1]:.0f}"
    )
    print(f"load average after each round: {' | '.join(loads)}")
    save(results, RESULTS, load_average=loads, backend=backend)


if __name__ == "__main__":
    main()
