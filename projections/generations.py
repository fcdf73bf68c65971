"""Generations of the read models: rebuild into new tables while serving, then switch.

Every read model of generation N lives in its own place: the PostgreSQL schema
`<schema>_views_<N>`, or the SQLite file `views-<N>.sqlite` beside the event store. A one-row
table in the event store's database (`view_generation`) names the live generation and the one
before it. Processes follow that pointer (`GenerationalViewStore`, at most once a second) and keep
serving the old generation until they see it move; `governance replay` builds generation N+1 from
position zero, catches it up with the log, then switches the pointer. Each projection's SQL is
the same in every generation: only the schema or the file differs.
"""

from __future__ import annotations

import fcntl
import logging
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from governance.outage import Breaker
from projections.store import PostgresViewStore, SQLiteViewStore, Tx, ViewStore

log = logging.getLogger(__name__)

POINTER_TABLE = "view_generation"
_POINTER_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " live INTEGER NOT NULL, previous INTEGER, switched_at BIGINT NOT NULL)"
)


class NoLiveGeneration(RuntimeError):
    """The read models were never created: run `governance migrate` first."""


class ReplayRunning(RuntimeError):
    """Another `governance replay` holds the lock on this store."""


class Generations(ABC):
    """Where generations live on one backend, and the pointer naming the live one."""

    dialect: str

    @abstractmethod
    def ensure_pointer(self) -> None: ...

    @abstractmethod
    def pointer(self) -> tuple[int | None, int | None]:
        """(live, previous); live is None before the first generation exists."""

    @abstractmethod
    def _write_pointer(self, live: int, previous: int | None) -> None: ...

    @abstractmethod
    def existing(self) -> list[int]:
        """Every generation that has storage, live or not (half-built ones included)."""

    @abstractmethod
    def create(self, generation: int) -> None: ...

    @abstractmethod
    def drop(self, generation: int) -> None: ...

    @abstractmethod
    def open(self, generation: int) -> ViewStore: ...

    @abstractmethod
    def location(self, generation: int) -> str:
        """A schema name or a file path, for messages."""

    @abstractmethod
    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the replay lock (raises ReplayRunning when another process holds it)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections held for the pointer."""

    def live(self) -> int | None:
        return self.pointer()[0]

    def next_number(self) -> int:
        live, previous = self.pointer()
        return max([0, *self.existing(), live or 0, previous or 0]) + 1

    def switch(self, generation: int) -> None:
        """Make `generation` live; the one it replaces becomes `previous` (kept for now)."""
        live, _ = self.pointer()
        self._write_pointer(generation, live)

    def forget_previous(self) -> None:
        live, _ = self.pointer()
        if live is not None:
            self._write_pointer(live, None)

    def ensure_live(self) -> int:
        """The live generation, creating the first (empty) one when there is none yet."""
        self.ensure_pointer()
        live = self.live()
        if live is None:
            live = self.next_number()
            self.create(live)
            self._write_pointer(live, None)
        return live

    def drop_unused(self) -> list[int]:
        """Drop every generation but the live one (the previous one included): before a replay."""
        live = self.live()
        dropped = [g for g in self.existing() if g != live]
        if dropped:
            self.forget_previous()
        for generation in dropped:
            self.drop(generation)
        return dropped


def _now_micros() -> int:
    return time.time_ns() // 1000


class SQLiteGenerations(Generations):
    """`views-<N>.sqlite` files in the data directory; the pointer in the event store's file."""

    dialect = "sqlite"
    _FILE = re.compile(r"^views-(\d+)\.sqlite$")

    def __init__(self, data_dir: Path, events_db: Path) -> None:
        self.data_dir = data_dir
        self._events_db = events_db
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _pointer_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self._events_db, isolation_level=None, check_same_thread=False, timeout=10
            )
        return self._conn

    def ensure_pointer(self) -> None:
        with self._lock:
            self._pointer_conn().execute(_POINTER_DDL.format(POINTER_TABLE))

    def pointer(self) -> tuple[int | None, int | None]:
        with self._lock:
            try:
                row = (
                    self._pointer_conn()
                    .execute(f"SELECT live, previous FROM {POINTER_TABLE} WHERE id = 1")  # noqa: S608
                    .fetchone()
                )
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return None, None
                raise
        return (row[0], row[1]) if row else (None, None)

    def _write_pointer(self, live: int, previous: int | None) -> None:
        with self._lock:
            self._pointer_conn().execute(
                f"INSERT INTO {POINTER_TABLE} (id, live, previous, switched_at)"  # noqa: S608
                " VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET live = excluded.live,"
                " previous = excluded.previous, switched_at = excluded.switched_at",
                (live, previous, _now_micros()),
            )

    def path(self, generation: int) -> Path:
        return self.data_dir / f"views-{generation}.sqlite"

    def existing(self) -> list[int]:
        if not self.data_dir.exists():
            return []
        found = (self._FILE.match(p.name) for p in self.data_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def create(self, generation: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(self.path(generation)).close()

    def drop(self, generation: int) -> None:
        path = self.path(generation)
        parts = self.data_dir.glob(f"views-{generation}.part-*.sqlite*")  # a crashed replay's
        for file in [*(Path(str(path) + s) for s in ("", "-wal", "-shm", "-journal")), *parts]:
            file.unlink(missing_ok=True)

    def open(self, generation: int) -> ViewStore:
        return SQLiteViewStore(self.path(generation))

    def location(self, generation: int) -> str:
        return str(self.path(generation))

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "replay.lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReplayRunning("another `governance replay` is running here") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresGenerations(Generations):
    """Schemas `<schema>_views_<N>`; the pointer in the event store's schema."""

    dialect = "postgres"

    def __init__(
        self, url: str, schema: str, pool_size: int, breaker: Breaker | None = None
    ) -> None:
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.breaker = breaker
        self._prefix = f"{schema}_views_"
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._table = sql.Identifier(schema, POINTER_TABLE)

    def schema_of(self, generation: int) -> str:
        name = f"{self._prefix}{generation}"
        if len(name) > 63:
            raise ValueError(f"schema name {name!r} is longer than PostgreSQL allows (63)")
        return name

    def _execute(
        self, query: sql.SQL | sql.Composed, params: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    cur = self._conn.execute(query, params)
                    return cur.fetchall() if cur.description else []
                except psycopg.OperationalError:
                    # A dropped connection is retried once on a fresh one.
                    self._conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def ensure_pointer(self) -> None:
        self._execute(sql.SQL(_POINTER_DDL).format(self._table))

    def pointer(self) -> tuple[int | None, int | None]:
        try:
            rows = self._execute(
                sql.SQL("SELECT live, previous FROM {} WHERE id = 1").format(self._table)
            )
        except psycopg.errors.UndefinedTable:
            return None, None
        if not rows:
            return None, None
        live, previous = rows[0]
        return int(live), (int(previous) if previous is not None else None)  # type: ignore[call-overload]

    def _write_pointer(self, live: int, previous: int | None) -> None:
        self._execute(
            sql.SQL(
                "INSERT INTO {} (id, live, previous, switched_at) VALUES (1, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET live = excluded.live,"
                " previous = excluded.previous, switched_at = excluded.switched_at"
            ).format(self._table),
            (live, previous, _now_micros()),
        )

    def existing(self) -> list[int]:
        rows = self._execute(
            sql.SQL("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)"),
            (self._prefix,),
        )
        suffixes = (str(name)[len(self._prefix) :] for (name,) in rows)
        return sorted(int(s) for s in suffixes if s.isdigit())

    def create(self, generation: int) -> None:
        self._execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(self.schema_of(generation))
            )
        )

    def drop(self, generation: int) -> None:
        self._execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema_of(generation))
            )
        )

    def open(self, generation: int) -> ViewStore:
        return PostgresViewStore(
            self.url, self.schema_of(generation), self.pool_size, breaker=self.breaker
        )

    def location(self, generation: int) -> str:
        return f"schema {self.schema_of(generation)}"

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # A session-level advisory lock, on a connection of its own, for the whole replay.
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            key = f"governance replay {self.schema}"
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
            ).fetchone()
            if row is None or not row[0]:
                raise ReplayRunning("another `governance replay` is running on this schema")
            yield

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class GenerationalViewStore:
    """The live generation's view store, following the pointer at most once per `interval`.

    Until a process sees the pointer move it keeps reading and projecting into the generation it
    has; a replay keeps that one (as `previous`) until the next replay, so nothing is pulled away
    from a request in flight. The store it replaced is closed on the following switch.
    """

    def __init__(self, generations: Generations, interval: float = 1.0) -> None:
        self.dialect = generations.dialect
        self.generations = generations
        self.interval = interval
        self.generation: int | None = None
        self._store: ViewStore | None = None
        self._retired: list[ViewStore] = []
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> ViewStore:
        now = time.monotonic()
        if self._store is None or now - self._checked >= self.interval:
            with self._lock:
                if self._store is None or now - self._checked >= self.interval:
                    self._follow()
                    self._checked = now
        assert self._store is not None
        return self._store

    def refresh(self) -> ViewStore:
        """Look at the pointer now (after a replay in this process, or in tests)."""
        with self._lock:
            self._follow()
            self._checked = time.monotonic()
        assert self._store is not None
        return self._store

    def _follow(self) -> None:
        try:
            live = self.generations.live()
        except (psycopg.Error, sqlite3.Error) as error:
            if self._store is None:
                raise
            log.warning(
                "could not read the live view generation, keeping %s: %s", self.generation, error
            )
            return
        if live is None:
            raise NoLiveGeneration("the read models do not exist yet: run `governance migrate`")
        if live == self.generation:
            return
        store = self.generations.open(live)
        for old in self._retired:
            old.close()
        self._retired = [self._store] if self._store is not None else []
        self._store, self.generation = store, live
        log.info("serving read models of generation %s", live)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self.current().transaction() as tx:
            yield tx

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self.current().read() as tx:
            yield tx

    def close(self) -> None:
        with self._lock:
            for store in [*self._retired, *([self._store] if self._store else [])]:
                store.close()
            self._retired, self._store, self.generation = [], None, None
        self.generations.close()
