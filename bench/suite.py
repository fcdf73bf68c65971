"""Every benchmark, one after the other, and the results table in BENCHMARKS.md and the README.

    make bench                 # python -m bench.suite
    make bench QUICK=1         # python -m bench.suite --quick: small sizes, one round
    python -m bench.suite --only relay_throughput --only command_latency

Starts PostgreSQL and Kafka the way `make test` does (scripts/postgres.sh, scripts/kafka.sh):
servers already answering at DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (or the scripts' default
ports) are reused, and only what this run started is stopped at the end. Installs wrk with
apt-get when it is missing. Each benchmark runs as its own process (`python -m bench.<module>`);
the rows it saved to test-output/bench/results.jsonl (bench.report.save) during its run make the
table, which replaces the part of BENCHMARKS.md and README.md between the results markers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.report import load_average, machine
from bench.servers import require
from bench.table import Outcome, replace_section, results_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-output" / "bench" / "results.jsonl"
DOCUMENTS = (ROOT / "BENCHMARKS.md", ROOT / "README.md")


@dataclass(frozen=True)
class Entry:
    """One benchmark: `python -m bench.<module> <args>` (`quick` for `--quick`)."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    needs: frozenset[str] = field(default_factory=frozenset)  # "wrk"


ENTRIES: tuple[Entry, ...] = (
    Entry(
        "relay to Kafka",
        "relay_throughput",
        ("--sites", "200", "--rounds", "5"),  # short rounds (~1 s): more of them
        ("--sites", "40", "--rounds", "1"),
    ),
    Entry(
        "command -> consumer latency",
        "command_latency",
        ("--commands", "3000", "--rate", "50"),
        ("--commands", "300", "--rate", "50", "--warmup", "50"),
    ),
    Entry(
        "install commands over HTTP",
        "install_throughput",
        ("--rounds", "3", "--seconds", "8", "--without-group-commit"),
        ("--rounds", "1", "--seconds", "3"),
        needs=frozenset({"wrk"}),
    ),
    Entry(
        "consent decisions over HTTP",
        "consent",
        ("--large", "20000", "--small", "1000", "--seconds", "8", "--rounds", "3"),
        ("--large", "2000", "--small", "1000", "--seconds", "2", "--rounds", "1"),
        needs=frozenset({"wrk"}),
    ),
    Entry("consent with 1M installs vs 1k", "consent_scale", needs=frozenset({"wrk"})),
    Entry(
        "rebuild of the read models",
        "rebuild",
        ("--events", "1000000", "--rounds", "3", "--backend", "postgres"),
        ("--events", "100000", "--rounds", "1", "--backend", "postgres"),
    ),
    Entry(
        "audit export memory",
        "export_memory",
        ("--events", "100000"),
        ("--events", "10000"),
    ),
)


def answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            return True
    except OSError:
        return False


def _script(name: str, command: str) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), command],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout.strip()


def _address(url: str) -> str:
    """host:port of a postgresql:// URL (or of the first bootstrap server)."""
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].split(",", 1)[0]


@contextmanager
def servers() -> Iterator[None]:
    """PostgreSQL and Kafka in os.environ, started here only if nothing answered already."""
    started: list[str] = []
    try:
        for script, variable in (
            ("postgres.sh", "DATABASE_URL"),
            ("kafka.sh", "KAFKA_BOOTSTRAP_SERVERS"),
        ):
            was_up = answers(_address(_script(script, "url")))
            os.environ[variable] = _script(script, "start")
            if not was_up:
                started.append(script)
        yield
    finally:
        for script in reversed(started):
            subprocess.run(["bash", str(ROOT / "scripts" / script), "stop"], check=False)


def saved_rows(offset: int) -> tuple[list[dict[str, object]], int]:
    """Rows appended to results.jsonl after byte `offset`, and the new end of the file."""
    if not RESULTS.exists():
        return [], 0
    with RESULTS.open("rb") as handle:
        handle.seek(offset)
        tail = handle.read()
    rows = [r for line in tail.splitlines() if line.strip() for r in json.loads(line)["results"]]
    return rows, offset + len(tail)


def run(entry: Entry, quick: bool, have_wrk: bool) -> Outcome:
    print(f"\n== {entry.name}: bench.{entry.module}; {load_average()}", flush=True)
    if importlib.util.find_spec(f"bench.{entry.module}") is None:
        print(f"   module missing: bench/{entry.module}.py is not in this tree", flush=True)
        return Outcome(entry.name, entry.module, "module missing")
    if "wrk" in entry.needs and not have_wrk:
        return Outcome(entry.name, entry.module, "skipped: wrk could not be installed")
    command = [
        sys.executable,
        "-m",
        f"bench.{entry.module}",
        *(entry.quick if quick else entry.args),
    ]
    print("   " + " ".join(["python", *command[1:]]), flush=True)
    _, offset = saved_rows(0)
    began = time.monotonic()
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    seconds = time.monotonic() - began
    rows, _ = saved_rows(offset)
    status = "ok" if code == 0 else f"failed (exit {code})"
    if code == 0 and not rows:
        status = "ok, no rows saved (figures in its output)"
    print(f"   {status} in {seconds:.0f} s; {load_average()}", flush=True)
    return Outcome(entry.name, entry.module, status, rows, seconds, " ".join(command[2:]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round each")
    parser.add_argument("--only", action="append", help="a module name, e.g. relay_throughput")
    parser.add_argument(
        "--no-docs", action="store_true", help="leave BENCHMARKS.md and README.md as they are"
    )
    args = parser.parse_args(argv)
    entries = [e for e in ENTRIES if not args.only or e.module in args.only]
    started_at = datetime.now(UTC)
    load_before = load_average()
    began = time.monotonic()
    have_wrk = require("wrk", "wrk")
    with servers():
        outcomes = [run(entry, args.quick, have_wrk) for entry in entries]
    command = "make bench" + (" QUICK=1" if args.quick else "")
    if args.only:
        command = "python -m bench.suite " + " ".join(
            (["--quick"] if args.quick else []) + [f"--only {m}" for m in args.only]
        )
    section = results_section(
        outcomes,
        command=command,
        machine=machine() + f", {platform.system()} {platform.release()}",
        date=started_at.strftime("%Y-%m-%d %H:%M UTC"),
        load=f"{load_before} before, {load_average()} after",
        minutes=(time.monotonic() - began) / 60,
    )
    print("\n" + section)
    if not args.no_docs:
        for document in DOCUMENTS:
            document.write_text(replace_section(document.read_text(encoding="utf-8"), section))
            print(f"updated {document.name}")
    # A module another branch brings is reported, not counted as a failure.
    failed = [o for o in outcomes if not o.status.startswith(("ok", "module missing"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
