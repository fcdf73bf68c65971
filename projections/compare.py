"""Compares two generations of the read models, table by table: `governance replay --check`.

Both sides are read inside their own snapshot, sorted by every column, and walked side by side;
memory grows only with the differences found.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from projections.generations import Generations, PostgresGenerations, SQLiteGenerations


@dataclass(frozen=True)
class TableDifference:
    table: str
    columns: Sequence[str]
    only_live: Counter[tuple[Any, ...]]
    only_rebuilt: Counter[tuple[Any, ...]]
    truncated: bool = False

    @property
    def count(self) -> tuple[int, int]:
        return sum(self.only_live.values()), sum(self.only_rebuilt.values())


def diff_rows(
    live: Iterator[tuple[Any, ...]], rebuilt: Iterator[tuple[Any, ...]], cap: int = 10_000
) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]], bool]:
    """Rows only on one side of two sorted streams, in memory bounded by the differences.

    Both streams come sorted by the same database, so equal tables give equal sequences; a row
    that appears out of step is held until its twin turns up on the other side.
    """
    only: tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]] = (Counter(), Counter())
    end: tuple[Any, ...] = (object(),)  # equal to no row
    for pair in zip_longest(live, rebuilt, fillvalue=end):
        if pair[0] == pair[1]:
            continue
        for side, row in enumerate(pair):
            if row is end:
                continue
            mine, other = only[side], only[1 - side]
            if other[row]:
                other[row] -= 1
                if not other[row]:
                    del other[row]
            else:
                mine[row] += 1
        if len(only[0]) + len(only[1]) > cap:
            return only[0], only[1], True
    return only[0], only[1], False


class SnapshotReader(ABC):
    """One generation's tables as of one moment, read in sorted order for comparison."""

    @abstractmethod
    def positions(self) -> dict[str, int]: ...

    @abstractmethod
    def tables(self) -> list[str]: ...

    @abstractmethod
    def columns(self, table: str) -> list[str]: ...

    @abstractmethod
    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]: ...

    @abstractmethod
    def close(self) -> None: ...


class SQLiteSnapshot(SnapshotReader):
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("BEGIN")  # the first read fixes the snapshot (WAL)

    def positions(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT name, position FROM projection_tracking")
        return {name: int(position) for name, position in rows}

    def tables(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return sorted(name for (name,) in rows)

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")]

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        yield from self._conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"  # noqa: S608 - catalog names
        )

    def close(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


class PostgresSnapshot(SnapshotReader):
    def __init__(self, url: str, schema: str) -> None:
        self._schema = schema
        self._conn = psycopg.connect(url, connect_timeout=5)
        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        self._cursors = 0

    def positions(self) -> dict[str, int]:
        rows = self._conn.execute(
            sql.SQL("SELECT name, position FROM {}").format(
                sql.Identifier(self._schema, "projection_tracking")
            )
        )
        return {str(name): int(position) for name, position in rows}

    def tables(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (self._schema,),
        )
        return sorted(str(name) for (name,) in rows)

    def columns(self, table: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (self._schema, table),
        )
        return [str(name) for (name,) in rows]

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        self._cursors += 1
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(self._schema, table),
            sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(columns))),
        )
        # A server-side cursor: the table streams through in pages, whatever its size.
        with self._conn.cursor(name=f"diff_{self._cursors}") as cursor:
            cursor.itersize = 5000
            cursor.execute(query)
            yield from cursor

    def close(self) -> None:
        self._conn.rollback()
        self._conn.close()


def snapshot(generations: Generations, generation: int) -> SnapshotReader:
    if isinstance(generations, SQLiteGenerations):
        return SQLiteSnapshot(generations.path(generation))
    assert isinstance(generations, PostgresGenerations)
    return PostgresSnapshot(generations.url, generations.schema_of(generation))


@dataclass(frozen=True)
class Check:
    """What `governance replay --check` found: the live generation against a fresh rebuild."""

    live: int
    positions: Mapping[str, int]
    differences: Sequence[TableDifference]
    notes: Sequence[str]

    @property
    def clean(self) -> bool:
        return not self.differences and not self.notes


def compare(
    live: SnapshotReader, rebuilt: SnapshotReader
) -> tuple[list[TableDifference], list[str]]:
    differences: list[TableDifference] = []
    notes: list[str] = []
    for table in sorted((set(live.tables()) | set(rebuilt.tables())) - {"projection_tracking"}):
        live_columns, rebuilt_columns = live.columns(table), rebuilt.columns(table)
        if sorted(live_columns) != sorted(rebuilt_columns):
            notes.append(
                f"{table}: the live table has columns {live_columns},"
                f" a rebuild gives {rebuilt_columns}"
            )
            continue
        only_live, only_rebuilt, truncated = diff_rows(
            live.rows(table, rebuilt_columns), rebuilt.rows(table, rebuilt_columns)
        )
        if only_live or only_rebuilt:
            differences.append(
                TableDifference(table, rebuilt_columns, only_live, only_rebuilt, truncated)
            )
    return differences, notes
