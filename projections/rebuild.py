"""Rebuilds every read model from position zero into a new generation, then switches to it.

A replay reads the log once, in pages, decodes each event once and hands it to every projection's
fold (see `Projection.fold`): folds keep current state in memory and emit rows, which are loaded
in bulk (executemany on SQLite, COPY on PostgreSQL) into tables whose secondary indexes are built
after the load. Projections without a fold are then built row by row by the ordinary batched
projector, which also catches every projection up with the events written during the rebuild.

Exactly once: the bulk phase writes the rows and the tracking positions they reach in one
transaction on a generation nobody reads yet; a crash leaves a half-built generation that the
next replay drops. From there on the ordinary projector applies each event once per projection.
"""

from __future__ import annotations

import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import ApplicationRecorder, Mapper
from psycopg import sql

from projections.base import Fold, Projection
from projections.generations import (
    Generations,
    PostgresGenerations,
    SQLiteGenerations,
)
from projections.projector import TRACKING_TABLE, Projector
from projections.store import ViewStore

# Called with (position reached, head position) as the rebuild goes.
Progress = Callable[[int, int], None]
_INDEX = re.compile(r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\b", re.IGNORECASE)
_FLUSH_ROWS = 50_000


def _quiet(_: int, __: int) -> None:
    pass


class BulkTarget(ABC):
    """A new generation being loaded: tables first, rows in bulk, indexes and positions last."""

    def __init__(self, projections: Sequence[Projection]) -> None:
        statements = [s for p in projections for s in p.tables]
        self._tables = [TRACKING_TABLE, *(s for s in statements if not _INDEX.match(s))]
        self._indexes = [s for s in statements if _INDEX.match(s)]
        self._names = [p.name for p in projections]
        self._buffers: dict[str, tuple[Sequence[str], list[tuple[Any, ...]]]] = {}

    def rows(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The buffer a fold appends `table`'s rows to (the same list on every call)."""
        if table in self._buffers:
            known, buffer = self._buffers[table]
            if tuple(known) != tuple(columns):
                raise ValueError(f"{table}: rows with columns {columns}, earlier {known}")
            return buffer
        created: list[tuple[Any, ...]] = []
        self._buffers[table] = (tuple(columns), created)
        return created

    def maybe_flush(self) -> None:
        if sum(len(buffer) for _, buffer in self._buffers.values()) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        for table, (columns, buffer) in self._buffers.items():
            if buffer:
                self._load(table, columns, buffer)
                buffer.clear()  # in place: folds hold this very list

    def create(self) -> None:
        for statement in self._tables:
            self._execute(statement)

    def finish(self, positions: Mapping[str, int]) -> None:
        """Build the indexes, record every projection's position, and commit it all."""
        self.flush()
        for statement in self._indexes:
            self._execute(statement)
        for name in self._names:
            self._track(name, positions.get(name, 0))
        self._commit()

    @abstractmethod
    def _execute(self, statement: str) -> None: ...

    @abstractmethod
    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def _track(self, name: str, position: int) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class SQLiteBulkTarget(BulkTarget):
    """Loads a `views-<N>.sqlite` file with journaling off; it is not live until the switch."""

    def __init__(self, path: Path, projections: Sequence[Projection]) -> None:
        super().__init__(projections)
        self._path = path
        self._conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=OFF",
            "PRAGMA synchronous=OFF",
            "PRAGMA locking_mode=EXCLUSIVE",
            "PRAGMA cache_size=-262144",
            "PRAGMA temp_store=MEMORY",
        ):
            self._conn.execute(pragma)
        self._conn.execute("BEGIN")

    def _execute(self, statement: str) -> None:
        self._conn.execute(statement)

    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in columns)
        self._conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 - names from the projections
            rows,
        )

    def _track(self, name: str, position: int) -> None:
        self._conn.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def _commit(self) -> None:
        self._conn.execute("COMMIT")
        # Back to what the serving store expects, and on disk before anyone is pointed at it.
        self._conn.execute("PRAGMA locking_mode=NORMAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.close()
        fd = os.open(self._path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._conn.close()


class PostgresBulkTarget(BulkTarget):
    """Loads a generation's schema with COPY in one transaction, indexes built at the end."""

    def __init__(self, url: str, schema: str, projections: Sequence[Projection]) -> None:
        super().__init__(projections)
        self._conn = psycopg.connect(url, options=f"-c search_path={schema}", connect_timeout=5)
        # Nothing reads this schema before the switch: a crash means a new replay anyway.
        self._conn.execute("SET synchronous_commit = off")
        self._conn.execute("SET maintenance_work_mem = '256MB'")

    def _execute(self, statement: str) -> None:
        self._conn.execute(statement.encode())  # DDL from the projections' own modules

    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with self._conn.cursor() as cur, cur.copy(copy) as loading:
            for row in rows:
                loading.write_row(row)

    def _track(self, name: str, position: int) -> None:
        self._conn.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def _commit(self) -> None:
        self._conn.execute("ANALYZE")
        self._conn.commit()
        self._conn.close()

    def close(self) -> None:
        self._conn.close()


def bulk_target(
    generations: Generations, generation: int, projections: Sequence[Projection]
) -> BulkTarget:
    if isinstance(generations, SQLiteGenerations):
        return SQLiteBulkTarget(generations.path(generation), projections)
    assert isinstance(generations, PostgresGenerations)
    return PostgresBulkTarget(generations.url, generations.schema_of(generation), projections)


@dataclass
class Rebuilder:
    """Builds generations from the log: `replay` for real, `check` to compare with the live one."""

    generations: Generations
    recorder: ApplicationRecorder
    mapper: Mapper[Any]
    projections: Sequence[Projection]
    batch_size: int = 1000
    page: int = 5000
    progress: Progress = field(default=_quiet)

    def replay(self) -> int:
        """Build the next generation, catch it up, switch to it; return its number."""
        with self.generations.exclusive():
            self.generations.drop_unused()
            generation = self.generations.next_number()
            self.generations.create(generation)
            store = self.build(generation)
            try:
                projector = self._projector(store, self.projections)
                self._catch_up(projector)
                self.generations.switch(generation)
                # Whatever was written between the last batch and the switch.
                projector.catch_up()
            finally:
                store.close()
        return generation

    def check(self) -> Check:
        """Rebuild into a scratch generation, up to where the live one is, and compare them."""
        with self.generations.exclusive():
            return _check(self)

    def build(self, generation: int, limits: Mapping[str, int] | None = None) -> ViewStore:
        """Fill `generation` from position zero up to the head (or to each projection's limit)."""
        head = self.recorder.max_notification_id() or 0
        stops = {p.name: (limits[p.name] if limits else head) for p in self.projections}
        target = bulk_target(self.generations, generation, self.projections)
        try:
            target.create()
            folded = {p.name: fold for p in self.projections if (fold := p.fold(target))}
            reached = self._fold(folded, stops, max(stops.values(), default=0), target)
            target.finish({name: min(reached, stops[name]) for name in folded})
        except BaseException:
            target.close()
            raise
        store = self.generations.open(generation)
        for projection in self.projections:
            if projection.name not in folded:
                projector = self._projector(store, [projection])
                projector.catch_up(stop=stops[projection.name] if limits else None)
        return store

    def _fold(
        self, folds: Mapping[str, Fold], stops: Mapping[str, int], stop: int, target: BulkTarget
    ) -> int:
        position = 0
        self.progress(0, stop)
        active = [(stops[name], fold.apply) for name, fold in folds.items()]
        if not active:
            return 0
        decode = self.mapper.to_domain_event
        while position < stop:
            page = self.recorder.select_notifications(
                start=position, limit=self.page, stop=stop, inclusive_of_start=False
            )
            if not page:
                break
            for notification in page:
                event = decode(notification)
                at = notification.id
                for limit, apply in active:
                    if at <= limit:
                        apply(event, at)
            position = page[-1].id
            target.maybe_flush()
            self.progress(position, stop)
        for fold in folds.values():
            fold.finish()
        return stop if position >= stop else position

    def _projector(self, store: ViewStore, projections: Sequence[Projection]) -> Projector:
        return Projector(self.recorder, self.mapper, store, projections, self.batch_size)

    def _catch_up(self, projector: Projector) -> None:
        while True:
            head = self.recorder.max_notification_id() or 0
            if not projector.run_batch():
                return
            self.progress(projector.position(), head)


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


def _check(rebuilder: Rebuilder) -> Check:
    generations = rebuilder.generations
    live = generations.live()
    if live is None:
        raise RuntimeError("there is no live generation to check: run `governance migrate`")
    scratch = generations.next_number()
    generations.create(scratch)
    try:
        current = snapshot(generations, live)
        try:
            positions = current.positions()
            names = [p.name for p in rebuilder.projections]
            notes = [
                f"{name}: not built in the live generation yet"
                for name in names
                if name not in positions
            ]
            limits = {name: positions.get(name, 0) for name in names}
            rebuilder.build(scratch, limits).close()
            rebuilt = snapshot(generations, scratch)
            try:
                differences, more = compare(current, rebuilt)
            finally:
                rebuilt.close()
        finally:
            current.close()
    finally:
        generations.drop(scratch)
    return Check(live, limits, differences, [*notes, *more])
