"""Loading a new generation in bulk: tables first, rows by executemany or COPY, indexes last.

A fold appends rows to the lists `rows()` hands out; `flush()` loads what they hold and empties
them in place. Secondary indexes are built once the rows are in, which is much cheaper than
maintaining them row by row.
"""

from __future__ import annotations

import os
import queue
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from projections.base import Projection, has_fold
from projections.projector import TRACKING_TABLE
from projections.store import PostgresTx, SQLiteTx, Tx

_INDEX = re.compile(r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\b", re.IGNORECASE)
_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_FLUSH_ROWS = 50_000
# Rows a table with a load order holds before loading them as one sorted run. The index builds
# gain as much from runs of 50,000 rows as from one run per worker (1M audit rows in 2 or 20
# runs, same build times), and short runs load while the folds go on instead of all at the end.
_SORTED_RUN_ROWS = 100_000


def table_names(projection: Projection) -> list[str]:
    return [m.group(1) for s in projection.tables if (m := _TABLE.match(s))]


class BulkTarget(ABC):
    """The tables of some projections in a generation that nobody reads yet."""

    def __init__(self, projections: Sequence[Projection]) -> None:
        statements = [s for p in projections if has_fold(p) for s in p.tables]
        # Read models without a fold are written by their handlers, as the projector does:
        # their tables have every key and index from the start.
        self._keyed = [
            TRACKING_TABLE,
            *(s for p in projections if not has_fold(p) for s in p.tables),
        ]
        self._tables = [*self._keyed, *(s for s in statements if not _INDEX.match(s))]
        self._indexes = [s for s in statements if _INDEX.match(s)]
        self.table_names = [name for p in projections for name in table_names(p)]
        self._buffers: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {}
        self._order: dict[str, tuple[str, ...]] = {}
        if self.sorts_rows:
            for p in projections:
                if has_fold(p):
                    self._order.update((t, tuple(c)) for t, c in p.load_order.items())

    # Whether the tables with a `load_order` are loaded in that order (sorted runs).
    sorts_rows = False

    def rows(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The list a fold appends `table`'s rows to (the same list on every call)."""
        if table in self._buffers:
            known, buffer = self._buffers[table]
            if known != tuple(columns):
                raise ValueError(f"{table}: rows with columns {columns}, earlier {known}")
            return buffer
        created: list[tuple[Any, ...]] = []
        self._buffers[table] = (tuple(columns), created)
        return created

    def maybe_flush(self) -> None:
        pending = 0
        for table, (columns, buffer) in self._buffers.items():
            if table not in self._order:
                pending += len(buffer)
            elif len(buffer) >= _SORTED_RUN_ROWS:
                self._load_buffer(table, columns, buffer)
        if pending >= _FLUSH_ROWS:
            for table, (columns, buffer) in self._buffers.items():
                if buffer and table not in self._order:
                    self._load_buffer(table, columns, buffer)

    def flush(self) -> None:
        for table, (columns, buffer) in self._buffers.items():
            if buffer:
                self._load_buffer(table, columns, buffer)

    def _load_buffer(
        self, table: str, columns: tuple[str, ...], buffer: list[tuple[Any, ...]]
    ) -> None:
        if table in self._order:
            # Stable sorts, last column first (one per column: cheaper than a key of tuples).
            for column in reversed(self._order[table]):
                buffer.sort(key=itemgetter(columns.index(column)))
        self._load(table, columns, buffer)
        buffer.clear()  # in place: folds hold this very list

    def create_tables(self) -> None:
        for statement in self._tables:
            self._execute(statement)

    def build_indexes(self, parallel: int = 1) -> None:
        for statement in self._indexes:
            self._execute(statement)

    def track(self, positions: Mapping[str, int]) -> None:
        for name, position in positions.items():
            self._track(name, position)

    def finish(self, positions: Mapping[str, int]) -> None:
        """Load what is left, build the indexes, record the positions, commit it all."""
        self.flush()
        self.build_indexes()
        self.track(positions)
        self.commit()

    @abstractmethod
    def tx(self) -> Tx:
        """The load's own transaction, for handlers writing row by row."""

    @abstractmethod
    def _execute(self, statement: str) -> None: ...

    @abstractmethod
    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def _track(self, name: str, position: int) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class SQLiteBulkTarget(BulkTarget):
    """A `views-<N>.sqlite` file (or a worker's part of it), written with journaling off."""

    def __init__(self, path: Path, projections: Sequence[Projection]) -> None:
        super().__init__(projections)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=OFF",
            "PRAGMA synchronous=OFF",
            "PRAGMA locking_mode=EXCLUSIVE",
            "PRAGMA cache_size=-262144",
            "PRAGMA temp_store=MEMORY",
            "PRAGMA threads=4",  # helper threads for the sorts behind CREATE INDEX
        ):
            self._conn.execute(pragma)
        self._conn.execute("BEGIN")

    def tx(self) -> Tx:
        self._conn.row_factory = sqlite3.Row  # what the handlers' reads expect
        return SQLiteTx(self._conn)

    def _execute(self, statement: str) -> None:
        self._conn.execute(statement)

    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in columns)
        self._conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 - names from the projections
            rows,
        )

    def absorb(self, part: Path, tables: Sequence[str]) -> None:
        """Copy a worker's tables into this file (inside SQLite, no rows through Python)."""
        self._conn.execute("ATTACH DATABASE ? AS part", (str(part),))
        for table in tables:
            self._conn.execute(f"INSERT INTO main.{table} SELECT * FROM part.{table}")  # noqa: S608
        self._conn.execute("COMMIT")  # DETACH is refused inside a transaction
        self._conn.execute("DETACH DATABASE part")
        self._conn.execute("BEGIN")

    def _track(self, name: str, position: int) -> None:
        self._conn.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def commit(self) -> None:
        self._conn.execute("COMMIT")
        # Back to what the serving store expects, and on disk before anyone is pointed at it.
        self._conn.execute("PRAGMA locking_mode=NORMAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._conn.close()


# A primary key declared in a CREATE TABLE: on a column, or as a clause of its own.
_COLUMN_KEY = re.compile(r"^[ \t]*(\w+)[ \t]+[^,\n]*?[ \t]PRIMARY[ \t]+KEY\b", re.I | re.M)
_TABLE_KEY = re.compile(r",\s*PRIMARY\s+KEY\s*\(([^)]*)\)", re.IGNORECASE)


def without_primary_key(statement: str) -> tuple[str, str | None]:
    """A CREATE TABLE without its primary key, and the ALTER TABLE that adds it back.

    COPY into a table whose key already exists inserts each row into the key's b-tree: measured
    on 600,000 audit rows, loading then adding the key took 30% less server time than loading
    into the keyed table, and it moves that work out of the phase where the workers need the CPU.
    """
    table = _TABLE.match(statement)
    if table is None:
        return statement, None
    if found := _TABLE_KEY.search(statement):
        columns = found.group(1)
        statement = statement[: found.start()] + statement[found.end() :]
    elif found := _COLUMN_KEY.search(statement):
        columns = found.group(1)
        key = re.compile(r"[ \t]+PRIMARY[ \t]+KEY\b", re.IGNORECASE)
        line_end = statement.find("\n", found.start() + 1)
        line_end = len(statement) if line_end < 0 else line_end
        line = key.sub("", statement[found.start() : line_end], count=1)
        statement = statement[: found.start()] + line + statement[line_end:]
    else:
        return statement, None
    return statement, f"ALTER TABLE {table.group(1)} ADD PRIMARY KEY ({columns.strip()})"


class PostgresBulkTarget(BulkTarget):
    """A generation's schema, loaded with COPY; nothing reads it before the switch.

    Primary keys, like the other indexes, are built once the rows are in (`without_primary_key`):
    nothing writes these tables but the load, whose rows are unique by construction, and the keys
    exist before the projector or anyone else touches them.

    The tables with a `load_order` are loaded in sorted runs of that order: on the 1M rows of the
    audit index (then a table of its own, ordered by organization), building its four indexes
    took 5.9 s of server CPU instead of 8.7 s in the order of the log.
    """

    sorts_rows = True

    def __init__(self, url: str, schema: str, projections: Sequence[Projection]) -> None:
        super().__init__(projections)
        keys = []
        for number, statement in enumerate(self._tables):
            if statement in self._keyed:
                continue  # written with ON CONFLICT while loading: keep its key
            self._tables[number], key = without_primary_key(statement)
            if key is not None:
                keys.append(key)
        self._indexes = [*keys, *self._indexes]
        self._url, self._options = url, f"-c search_path={schema}"
        self._conn = psycopg.connect(url, options=self._options, connect_timeout=5)
        # A crash before the switch means a new replay anyway: no need to wait for the disk.
        self._conn.execute("SET synchronous_commit = off")
        self._conn.execute("SET maintenance_work_mem = '256MB'")
        self._column_types: dict[str, dict[str, str]] = {}

    def tx(self) -> Tx:
        return PostgresTx(self._conn)

    def _execute(self, statement: str) -> None:
        self._conn.execute(statement.encode())  # DDL from the projections' own modules

    def _load(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        types = self._types(table, columns)
        with self._conn.cursor() as cur, cur.copy(copy) as loading:
            # Binary rows need each column's type; they cost the client half of text rows.
            loading.set_types(types)
            for row in rows:
                loading.write_row(row)

    def _types(self, table: str, columns: Sequence[str]) -> list[str]:
        if table not in self._column_types:
            found = self._conn.execute(
                "SELECT column_name, udt_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            ).fetchall()
            self._column_types[table] = {str(name): str(udt) for name, udt in found}
        known = self._column_types[table]
        return [known[column] for column in columns]

    def build_indexes(self, parallel: int = 1) -> None:
        """Build the indexes, then ANALYZE every table. With `parallel` > 1, in that many sessions
        at once: the server builds them side by side (what this session loaded is committed
        first)."""
        analyze = [sql.SQL("ANALYZE {}").format(sql.Identifier(t)) for t in self.table_names]
        if parallel <= 1:
            super().build_indexes()
            for table in analyze:
                self._conn.execute(table)
        else:
            self._conn.commit()
            # The ANALYZEs queue behind the indexes: a table's waits for its index builds (their
            # locks conflict), and the sessions done with indexes analyze the others meanwhile.
            pending: queue.SimpleQueue[str | sql.Composed] = queue.SimpleQueue()
            for index in self._indexes:
                pending.put(index)
            for table in analyze:
                pending.put(table)
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                sessions = [pool.submit(self._session, pending) for _ in range(parallel)]
                for session in sessions:
                    session.result()

    def _session(self, pending: queue.SimpleQueue[str | sql.Composed]) -> None:
        """One session running statements from `pending` until none is left."""
        with psycopg.connect(self._url, options=self._options, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            while True:
                try:
                    statement = pending.get_nowait()
                except queue.Empty:
                    return
                conn.execute(statement.encode() if isinstance(statement, str) else statement)

    def _track(self, name: str, position: int) -> None:
        self._conn.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True)
class TargetSpec:
    """Where a generation is loaded, in a form that travels to a worker process."""

    path: Path | None = None  # SQLite
    url: str | None = None  # PostgreSQL
    schema: str | None = None

    def open(self, projections: Sequence[Projection], part: int | None = None) -> BulkTarget:
        if self.path is not None:
            return SQLiteBulkTarget(self.part(part) if part is not None else self.path, projections)
        assert self.url is not None and self.schema is not None
        return PostgresBulkTarget(self.url, self.schema, projections)

    def part(self, number: int) -> Path:
        """A worker's own file (SQLite allows one writer per file); merged by `absorb`."""
        assert self.path is not None
        return self.path.with_name(f"{self.path.stem}.part-{number}.sqlite")
