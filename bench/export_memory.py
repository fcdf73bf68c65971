"""Peak memory of `governance audit export` for 10k and 100k events: it should not grow.

    python -m bench.export_memory [--events 100000]

Uses the SQLite log that bench/rebuild.py wrote (var/bench/sqlite-<events>), writes JSONL and CSV
to /dev/null and reports tracemalloc's peak for the first 10% and for all of the events.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path

from bench.rebuild import prepare, settings_for
from bench.report import row, save
from governance.audit.export import Format, Selection, records, write
from governance.runtime import Runtime


def peak(runtime: Runtime, events: int, form: Format) -> tuple[int, float]:
    app = runtime.application
    with open(os.devnull, "w") as out:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            rows = records(app.recorder, app.mapper, Selection())
            first = (row for _, row in zip(range(events), rows, strict=False))
            assert write(first, out, form) == events
            return tracemalloc.get_traced_memory()[1], time.perf_counter() - started
        finally:
            tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    runtime = prepare(settings_for("sqlite", args.events), args.events)
    results = []
    try:
        for form in Format:
            peaks = []
            for events in (args.events // 10, args.events):
                bytes_, seconds = peak(runtime, events, form)
                peaks.append(bytes_ / 2**20)
                print(
                    f"{form.value:5} {events:>9,} events: peak {bytes_ / 2**20:6.2f} MiB,"
                    f" {events / seconds:,.0f} events/s"
                )
            name = f"audit export ({form.value}) peak MiB, {args.events:,} vs {args.events // 10:,}"
            results.append(row(name, peaks[1], peaks[0], "MiB", "report (flat)"))
    finally:
        runtime.close()
    save(results, Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
