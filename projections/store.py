"""Where read models live: SQLite beside the embedded event store, or PostgreSQL.

SQL is written once with psycopg's named placeholders (`%(name)s`) and bound parameters; the
SQLite store rewrites the placeholders to its own `:name` style.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from governance.outage import Breaker

Row = dict[str, Any]
RECONNECT_TIMEOUT = 0.5  # seconds
Params = Mapping[str, Any]


class Tx(Protocol):
    """A unit of work on the view store: everything in it commits together or not at all."""

    def execute(self, sql: str, params: Params | None = None) -> int: ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def one(self, sql: str, params: Params | None = None) -> Row | None: ...

    def all(self, sql: str, params: Params | None = None) -> list[Row]: ...


class ViewStore(Protocol):
    dialect: str

    def transaction(self) -> AbstractContextManager[Tx]: ...

    def read(self) -> AbstractContextManager[Tx]: ...

    def close(self) -> None: ...


@lru_cache(maxsize=512)
def _to_sqlite(sql: str) -> str:
    return re.sub(r"%\((\w+)\)s", r":\1", sql)


class SQLiteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | None = None) -> int:
        return self._conn.execute(_to_sqlite(sql), dict(params or {})).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._conn.executemany(_to_sqlite(sql), [dict(r) for r in rows])

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        row = self._conn.execute(_to_sqlite(sql), dict(params or {})).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        return [dict(r) for r in self._conn.execute(_to_sqlite(sql), dict(params or {}))]


class SQLiteViewStore:
    """One SQLite file, a connection per thread, WAL so readers never wait for the projector."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SQLiteTx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        yield SQLiteTx(self._conn())

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class PostgresTx:
    """The views' SQL on one connection (the pool's, or a replay's load), rows as dicts."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | None = None) -> int:
        cur = self._conn.execute(sql, params or {}, prepare=True)
        return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql, rows)

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        with self._conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params or {}, prepare=True).fetchone()

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        with self._conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params or {}, prepare=True).fetchall()


class PostgresViewStore:
    """A connection pool on DATABASE_URL, every connection confined to the configured schema."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        schema: str,
        pool_size: int,
        timeout: float = 5.0,
        breaker: Breaker | None = None,
    ) -> None:
        self.schema = schema
        self._breaker = breaker
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "row_factory": dict_row,
                "options": f"-c search_path={schema}",
                "connect_timeout": 5,
            },
            timeout=timeout,
            # Give up reconnecting soon in an outage: the next request after it then connects
            # at once instead of waiting for a far-off retry (the breaker keeps requests away).
            reconnect_timeout=RECONNECT_TIMEOUT,
            open=True,
            connection_class=psycopg.Connection[Row],
        )
        if breaker is not None:
            breaker.on_recovery(self.pool.drain)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._guard(), self.pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._guard(), self.pool.connection() as conn:
            yield PostgresTx(conn)

    def _guard(self) -> AbstractContextManager[None]:
        return self._breaker.guard() if self._breaker is not None else nullcontext()

    def close(self) -> None:
        self.pool.close()
