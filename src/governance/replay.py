"""`governance replay`: rebuild every read model from position zero, then switch to the result.

The service keeps serving the live generation meanwhile; processes follow the switch within a
second. `--check` rebuilds into a scratch generation instead and prints how it differs from the
live one, table by table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from governance.config import Settings
from governance.runtime import Runtime
from projections.compare import Check

_EXAMPLES = 5


class _Rate(ProgressColumn):
    """Events per second since the start (rich's own speed column smooths over 30 s)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0
        rate = task.completed / elapsed if elapsed > 0 else 0
        return Text(f"{rate:,.0f} events/s", style="progress.data.speed")


@contextmanager
def _bar(console: Console, label: str) -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


def replay(settings: Settings, *, check: bool, console: Console) -> int:
    """Run the replay (or the check); return the process exit code."""
    runtime = Runtime(settings, create_tables=False)
    try:
        with _bar(console, "replay") as progress:
            task = progress.add_task("rebuilding" if not check else "rebuilding (check)")

            def advance(position: int, head: int) -> None:
                progress.update(task, completed=position, total=max(head, position))

            started = time.perf_counter()
            rebuilder = runtime.rebuilder(progress=advance)
            if not check:
                generation = rebuilder.replay()
            else:
                result = rebuilder.check()
        seconds = time.perf_counter() - started
        head = runtime.application.recorder.max_notification_id() or 0
        if not check:
            where = runtime.views.generations.location(generation)
            console.print(
                f"generation {generation} is live ({where}): {head:,} events in {seconds:.1f} s"
                f" ({head / seconds if seconds else 0:,.0f} events/s)"
            )
            return 0
        return _report(result, console)
    finally:
        runtime.close()


def _report(result: Check, console: Console) -> int:
    positions = sorted(set(result.positions.values()))
    at = ", ".join(str(p) for p in positions)
    if result.clean:
        console.print(
            f"no difference: a rebuild up to position {at} equals generation {result.live}"
        )
        return 0
    console.print(f"generation {result.live} differs from a rebuild up to position {at}:")
    for note in result.notes:
        console.print(f"  {note}", markup=False)
    for difference in result.differences:
        live, rebuilt = difference.count
        more = " (stopped counting)" if difference.truncated else ""
        console.print(
            f"  {difference.table}: {live} rows only in the live views,"
            f" {rebuilt} only in the rebuild{more}",
            markup=False,
        )
        for label, rows in (("live", difference.only_live), ("rebuild", difference.only_rebuilt)):
            for row in list(rows)[:_EXAMPLES]:
                shown = dict(zip(difference.columns, row, strict=True))
                console.print(f"    only in {label}: {shown}", markup=False)
    return 1
