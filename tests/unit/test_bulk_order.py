"""On PostgreSQL a replay loads some tables in sorted runs, so their index builds sort less."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from projections import bulk
from projections.base import Projection
from projections.store import Tx
from projections.timeline import TimelineProjection


class Recording(bulk.BulkTarget):
    """The buffering of a PostgreSQL target, with the loads written down instead of COPYed."""

    sorts_rows = True

    def __init__(self, projections: Sequence[Projection]) -> None:
        super().__init__(projections)
        self.loads: list[tuple[str, list[tuple[Any, ...]]]] = []

    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.loads.append((table, list(rows)))

    def tx(self) -> Tx:
        raise NotImplementedError

    def _execute(self, statement: str) -> None:
        pass

    def _track(self, name: str, position: int) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_rows_are_loaded_in_the_declared_order_in_runs_of_bounded_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk, "_SORTED_RUN_ROWS", 4)
    target = Recording([TimelineProjection()])
    audit = target.rows("timeline", ("position", "org_id", "site_id"))
    names = target.rows("timeline_apps", ("site_id", "app_id", "app_name"))
    audit.extend([(1, "o2", "s"), (2, "o1", "s"), (3, "o2", "s")])
    names.append(("s", "a", "A"))
    target.maybe_flush()
    assert target.loads == []  # short of a run, and of a flush of the unordered tables
    audit.extend([(4, "o3", "s"), (5, "o1", "s")])
    target.maybe_flush()
    # One run, sorted by org and site (stable: log order within one); the unordered table waits.
    assert target.loads == [
        (
            "timeline",
            [(2, "o1", "s"), (5, "o1", "s"), (1, "o2", "s"), (3, "o2", "s"), (4, "o3", "s")],
        )
    ]
    audit.extend([(7, "o1", "s"), (6, "o2", "s")])
    target.flush()
    assert target.loads[1:] == [
        ("timeline", [(7, "o1", "s"), (6, "o2", "s")]),
        ("timeline_apps", [("s", "a", "A")]),
    ]
    assert audit == [] and names == []  # emptied in place: the folds hold these lists
