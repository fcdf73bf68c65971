"""Recomputes the hash chain over the stored log and finds where it was tampered with.

The log and the chain are read side by side, in pages, inside one read snapshot: memory stays
flat whatever the size of the log. The first position where they disagree is reported with the
kind of change it looks like:

- edited: the event stored at a position is not the one its seal describes (content changed);
- deleted: a sealed event is gone (with or without its seal);
- inserted: an event that was never sealed, or a seal the next one does not chain to;
- reordered: the event sealed at a position now sits at another one (positions swapped);
- truncated / rewritten: the log does not reach, or does not match, a published head.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg import sql

from governance.audit.seal import CHAIN_SUFFIX, GENESIS, Seal, canonical_id, link, seal_all
from governance.config import Settings
from governance.eventstore import EVENTS_TABLE, sqlite_events_path

_PAGE = 5000


class Tampering(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    REWRITTEN = "rewritten"


@dataclass(frozen=True)
class Head:
    """A position and the chain's hash there: what `governance audit head` publishes."""

    position: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.hash.hex()}@{self.position}"

    @classmethod
    def parse(cls, text: str) -> Head:
        digest, _, position = text.strip().partition("@")
        try:
            parsed = cls(int(position), bytes.fromhex(digest))
        except ValueError:
            parsed = None
        if parsed is None or len(parsed.hash) != 32 or parsed.position < 1:
            raise ValueError("expected HASH@POSITION: 64 hex digits, '@', a position")
        return parsed


@dataclass(frozen=True)
class Problem:
    position: int
    kind: Tampering
    message: str


@dataclass(frozen=True)
class Verification:
    checked: int  # events whose seals were recomputed and matched
    head: Head | None  # the last intact link
    problem: Problem | None

    @property
    def intact(self) -> bool:
        return self.problem is None


class StoredRow(NamedTuple):
    position: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


class ChainStore(ABC):
    """The stored log and its seals, read inside one snapshot."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def events(self, after: int, limit: int) -> Sequence[StoredRow]: ...

    @abstractmethod
    def seals(self, after: int, limit: int) -> Sequence[Seal]: ...

    @abstractmethod
    def position_of(self, originator_id: str, originator_version: int) -> int | None: ...

    @abstractmethod
    def last_seal(self) -> Seal | None: ...

    @abstractmethod
    def adopt(self) -> int:
        """Seal a log stored before the chain existed (only while the chain is empty)."""


def _paged(fetch: Callable[[int, int], Sequence[Any]], key: Callable[[Any], int]) -> Iterator[Any]:
    after = 0
    while True:
        page = fetch(after, _PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        after = key(page[-1])


def verify(store: ChainStore, published: Head | None = None) -> Verification:
    with store.snapshot():
        return _Walk(store, published).run()


class _Walk:
    def __init__(self, store: ChainStore, published: Head | None) -> None:
        self.store = store
        self.published = published
        self.position, self.hash = 0, GENESIS
        self.checked = 0

    def result(self, problem: Problem | None = None) -> Verification:
        head = Head(self.position, self.hash) if self.position else None
        return Verification(self.checked, head, problem)

    def run(self) -> Verification:
        events = _paged(self.store.events, lambda e: e.position)
        seals = _paged(self.store.seals, lambda s: s.position)
        event, seal = next(events, None), next(seals, None)
        while event is not None or seal is not None:
            if seal is None or (event is not None and event.position < seal.position):
                assert event is not None
                return self.result(
                    Problem(
                        event.position,
                        Tampering.INSERTED,
                        f"an event is stored at position {event.position} that was never sealed",
                    )
                )
            if event is None or seal.position < event.position:
                return self.result(
                    Problem(
                        seal.position,
                        Tampering.DELETED,
                        f"the event sealed at position {seal.position} is no longer stored",
                    )
                )
            problem = self.link(event, seal)
            if problem is not None:
                return self.result(problem)
            event, seal = next(events, None), next(seals, None)
        return self.result(self.against_published(end=True))

    def link(self, event: StoredRow, seal: Seal) -> Problem | None:
        at = event.position
        problem = self.against_published(end=False, upcoming=at)
        if problem is not None:
            return problem
        if seal.previous > self.position:
            return Problem(
                seal.previous,
                Tampering.DELETED,
                f"the event sealed at position {seal.previous} was deleted with its seal"
                f" (position {at} chains to it)",
            )
        if seal.previous < self.position:
            return Problem(
                self.position,
                Tampering.INSERTED,
                f"the event at position {self.position} was inserted with a forged seal"
                f" (position {at} chains to {seal.previous})",
            )
        if (event.originator_id, event.originator_version) != (
            seal.originator_id,
            seal.originator_version,
        ):
            return self.misplaced(event, seal)
        digest = link(
            self.hash,
            at,
            event.originator_id,
            event.originator_version,
            event.topic,
            event.state,
        )
        if digest != seal.hash:
            return Problem(
                at,
                Tampering.EDITED,
                f"the event at position {at} does not match its seal: it (or its seal) was changed",
            )
        self.position, self.hash = at, digest
        self.checked += 1
        return None

    def misplaced(self, event: StoredRow, seal: Seal) -> Problem:
        at = event.position
        elsewhere = self.store.position_of(seal.originator_id, seal.originator_version)
        if elsewhere is not None:
            return Problem(
                at,
                Tampering.REORDERED,
                f"position {at} holds another event than the one sealed there,"
                f" which now sits at position {elsewhere}",
            )
        return Problem(
            at,
            Tampering.EDITED,
            f"the event at position {at} was replaced: its stream or version differs from its seal",
        )

    def against_published(self, *, end: bool, upcoming: int | None = None) -> Problem | None:
        """Compare with the published head once the walk reaches (or passes) its position."""
        head = self.published
        if head is None or self.position > head.position:
            return None
        if self.position == head.position:
            if self.hash != head.hash:
                return Problem(
                    head.position,
                    Tampering.REWRITTEN,
                    f"the chain up to position {head.position} differs from the published head:"
                    " events before it were changed and the chain recomputed",
                )
            return None
        if end or (upcoming is not None and upcoming > head.position):
            return Problem(
                head.position,
                Tampering.TRUNCATED if end else Tampering.REWRITTEN,
                f"position {head.position} of the published head is no longer in the log"
                + (f"; it ends at {self.position}" if end else ""),
            )
        return None


class SQLiteChainStore(ChainStore):
    def __init__(self, path: Path, events_table: str = "stored_events") -> None:
        self._path = path
        self._events = events_table
        self._chain = events_table + CHAIN_SUFFIX
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=10)
        return self._conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self._conn = None

    def events(self, after: int, limit: int) -> Sequence[StoredRow]:
        rows = self.conn.execute(
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {self._events}"  # noqa: S608
            " WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, limit),
        )
        return [StoredRow(p, canonical_id(o), v, t, bytes(s)) for p, o, v, t, s in rows]

    def seals(self, after: int, limit: int) -> Sequence[Seal]:
        rows = self.conn.execute(
            f"SELECT position, previous, originator_id, originator_version, hash FROM {self._chain}"  # noqa: S608
            " WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [Seal(p, q, o, v, bytes(h)) for p, q, o, v, h in rows]

    def position_of(self, originator_id: str, originator_version: int) -> int | None:
        row = self.conn.execute(
            f"SELECT rowid FROM {self._events}"  # noqa: S608
            " WHERE originator_id = ? AND originator_version = ?",
            (UUID(originator_id).hex, originator_version),
        ).fetchone()
        return int(row[0]) if row else None

    def last_seal(self) -> Seal | None:
        with self.snapshot():
            page = self.conn.execute(
                f"SELECT position, previous, originator_id, originator_version, hash"  # noqa: S608
                f" FROM {self._chain} ORDER BY position DESC LIMIT 1"
            ).fetchall()
        if not page:
            return None
        position, previous, originator_id, version, digest = page[0]
        return Seal(position, previous, originator_id, version, bytes(digest))

    def adopt(self) -> int:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=10)
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._conn = conn
            if self.conn.execute(f"SELECT 1 FROM {self._chain} LIMIT 1").fetchone():  # noqa: S608
                conn.execute("ROLLBACK")
                return 0
            count = 0
            head: tuple[int, bytes] | None = None
            for page in _pages(self.events):
                seals = seal_all(head, [e.position for e in page], page)
                conn.executemany(
                    f"INSERT INTO {self._chain} (position, previous, originator_id,"  # noqa: S608
                    " originator_version, hash) VALUES (?, ?, ?, ?, ?)",
                    [tuple(s.__dict__.values()) for s in seals],
                )
                head = (seals[-1].position, seals[-1].hash)
                count += len(seals)
            conn.execute("COMMIT")
            return count
        finally:
            conn.close()
            self._conn = None


def _pages(fetch: Callable[[int, int], Sequence[StoredRow]]) -> Iterator[Sequence[StoredRow]]:
    after = 0
    while page := fetch(after, _PAGE):
        yield page
        after = page[-1].position


class PostgresChainStore(ChainStore):
    def __init__(self, url: str, schema: str, events_table: str = EVENTS_TABLE) -> None:
        self._url = url
        self._events = sql.Identifier(schema, events_table)
        self._chain = sql.Identifier(schema, events_table + CHAIN_SUFFIX)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    @property
    def conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        assert self._conn is not None, "read inside snapshot()"
        return self._conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with psycopg.connect(self._url, connect_timeout=5) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None
                conn.rollback()

    def events(self, after: int, limit: int) -> Sequence[StoredRow]:
        rows = self.conn.execute(
            sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            ).format(self._events),
            (after, limit),
            prepare=True,
        )
        return [StoredRow(p, canonical_id(o), v, t, bytes(s)) for p, o, v, t, s in rows]

    def seals(self, after: int, limit: int) -> Sequence[Seal]:
        rows = self.conn.execute(
            sql.SQL(
                "SELECT position, previous, originator_id, originator_version, hash"
                " FROM {} WHERE position > %s ORDER BY position LIMIT %s"
            ).format(self._chain),
            (after, limit),
            prepare=True,
        )
        return [Seal(p, q, o, v, bytes(h)) for p, q, o, v, h in rows]

    def position_of(self, originator_id: str, originator_version: int) -> int | None:
        row = self.conn.execute(
            sql.SQL(
                "SELECT notification_id FROM {}"
                " WHERE originator_id = %s AND originator_version = %s"
            ).format(self._events),
            (UUID(originator_id), originator_version),
        ).fetchone()
        return int(row[0]) if row else None

    def last_seal(self) -> Seal | None:
        with self.snapshot():
            row = self.conn.execute(
                sql.SQL(
                    "SELECT position, previous, originator_id, originator_version, hash"
                    " FROM {} ORDER BY position DESC LIMIT 1"
                ).format(self._chain)
            ).fetchone()
        if row is None:
            return None
        position, previous, originator_id, version, digest = row
        return Seal(position, previous, originator_id, version, bytes(digest))

    def adopt(self) -> int:
        with psycopg.connect(self._url, connect_timeout=5) as conn:
            # The writers' own lock: no event is stored while the backlog is sealed.
            conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self._events))
            self._conn = conn
            try:
                if conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(self._chain)).fetchone():
                    return 0
                count = 0
                head: tuple[int, bytes] | None = None
                for page in _pages(self.events):
                    seals = seal_all(head, [e.position for e in page], page)
                    with conn.cursor() as cur:
                        cur.executemany(
                            sql.SQL(
                                "INSERT INTO {} (position, previous, originator_id,"
                                " originator_version, hash) VALUES (%s, %s, %s, %s, %s)"
                            ).format(self._chain),
                            [tuple(s.__dict__.values()) for s in seals],
                        )
                    head = (seals[-1].position, seals[-1].hash)
                    count += len(seals)
                return count
            finally:
                self._conn = None


def chain_store(settings: Settings) -> ChainStore:
    if settings.database_url is None:
        return SQLiteChainStore(sqlite_events_path(settings))
    return PostgresChainStore(settings.database_url, settings.database_schema)
