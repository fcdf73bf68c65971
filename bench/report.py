"""Printing figures beside their baselines, with medians of several rounds."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def machine() -> str:
    cores = os.cpu_count()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cores} cores ({cpu_model()}), {memory_gib:.0f} GiB, Python {platform.python_version()}"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_numbers() -> str:
    """The 1, 5 and 15 minute load averages, e.g. "1.20 0.80 0.50"."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def load_average() -> str:
    """Printed beside every figure: the machine is shared, and load explains a slow round."""
    return f"load average {load_numbers()}"


def row(
    name: str, figure: float, baseline: float | None, unit: str, target: str
) -> dict[str, object]:
    ratio = figure / baseline if baseline else None
    printed_ratio = f"{ratio:.3f}" if ratio is not None else "-"
    printed_base = f"{baseline:,.1f}" if baseline is not None else "-"
    columns = f"{figure:>12,.1f} {printed_base:>12} {printed_ratio:>6}"
    print(f"{name:<58} {columns}  {unit}  target {target}")
    return {
        "name": name,
        "figure": figure,
        "baseline": baseline,
        "ratio": ratio,
        "unit": unit,
        "target": target,
    }


def save(results: list[dict[str, object]], path: Path, **context: object) -> None:
    """Append this run to a JSON lines file, for BENCHMARKS.md; `context` (e.g. the backend)
    is added to every result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [{**result, **context} for result in results]
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load": load_average(),
        "results": results,
    }
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
