"""Seals every stored event into a SHA-256 hash chain, in the transaction that stores it.

(These recorders also read events by position, for the pages of the audit trail.)

Each event's seal is `SHA-256(previous seal || canonical encoding of the event)`, kept in a table
beside the event store (`<events table>_chain`). The recorders below are the library's own with
one step added: after the events are inserted, and while the insert still holds the log's write
lock, they read the chain's head and insert one seal per new event. An event therefore never
commits without its seal, and no other writer can slip in between the head read and the seals.

The encoding is documented in docs/audit.md so that anyone can recompute the chain.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composable, Identifier

GENESIS = bytes(32)  # the "previous seal" of the first event
# A stored event as a plain row: position, originator id, version, topic, state.
RawRow = tuple[int, Any, int, str, bytes]
CHAIN_SUFFIX = "_chain"


class RawReader(Protocol):
    """A recorder that reads plain rows (`select_raw` below), skipping the library's objects: the
    relay's pages and a replay read the log this way."""

    def select_raw(self, after: int, limit: int, stop: int) -> Sequence[RawRow]: ...


@dataclass(frozen=True)
class Seal:
    """One link of the chain: the event it seals, the link before it, and the hash."""

    position: int
    previous: int
    originator_id: str
    originator_version: int
    hash: bytes


def canonical_id(originator_id: UUID | str) -> str:
    """UUIDs in their canonical text form, whichever way the backend stores them."""
    if isinstance(originator_id, UUID):
        return str(originator_id)
    try:
        return str(UUID(originator_id))
    except ValueError:
        return originator_id


def encode(
    position: int, originator_id: UUID | str, originator_version: int, topic: str, state: bytes
) -> bytes:
    """Length-prefixed big-endian fields: no two different events share an encoding."""
    oid = canonical_id(originator_id).encode()
    name = topic.encode()
    return b"".join(
        (
            struct.pack(">qI", position, len(oid)),
            oid,
            struct.pack(">qI", originator_version, len(name)),
            name,
            struct.pack(">I", len(state)),
            bytes(state),
        )
    )


def link(
    previous: bytes,
    position: int,
    originator_id: UUID | str,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    digest = hashlib.sha256(previous)
    digest.update(encode(position, originator_id, originator_version, topic, state))
    return digest.digest()


class Sealable(Protocol):
    """What the chain covers of a stored event (a StoredEvent, or a row read back)."""

    @property
    def originator_id(self) -> UUID | str: ...
    @property
    def originator_version(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def state(self) -> bytes: ...


def seal_all(
    head: tuple[int, bytes] | None, positions: Sequence[int], events: Sequence[Sealable]
) -> list[Seal]:
    """Seals for events just stored at `positions` (ascending, in the order they were given)."""
    if len(positions) != len(events):
        raise ValueError(f"{len(positions)} positions for {len(events)} events")
    previous, digest = head or (0, GENESIS)
    seals = []
    for position, event in zip(sorted(positions), events, strict=True):
        digest = link(
            digest,
            position,
            event.originator_id,
            event.originator_version,
            event.topic,
            event.state,
        )
        oid = canonical_id(event.originator_id)
        seals.append(Seal(position, previous, oid, event.originator_version, digest))
        previous = position
    return seals


def _rows(seals: Iterable[Seal]) -> list[tuple[int, int, str, int, bytes]]:
    return [(s.position, s.previous, s.originator_id, s.originator_version, s.hash) for s in seals]


def rendered(statement: Composable | str | bytes) -> bytes:
    """A statement as the bytes psycopg sends (identifiers quoted without a connection).

    psycopg composes an `sql.Composed` statement again on every execute; bytes it takes as they
    are, and caches their parsing.
    """
    if isinstance(statement, Composable):
        return statement.as_bytes(None)
    return statement.encode() if isinstance(statement, str) else statement


class SealingPostgresRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL recorder, sealing each insert under its exclusive table lock."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        if datastore.enable_db_functions:
            # The insert function skips the table lock (and this step): never seal without it.
            raise ValueError("the hash chain needs POSTGRES_ENABLE_DB_FUNCTIONS to be off")
        self.chain_table_name = events_table_name + CHAIN_SUFFIX
        self.check_identifier_length(self.chain_table_name)
        table = (Identifier(datastore.schema), Identifier(self.chain_table_name))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (position bigint PRIMARY KEY,"
                " previous bigint NOT NULL, originator_id text NOT NULL,"
                " originator_version bigint NOT NULL, hash bytea NOT NULL)"
            ).format(*table)
        )
        self._select_head = rendered(
            SQL("SELECT position, hash FROM {}.{} ORDER BY position DESC LIMIT 1").format(*table)
        )
        self._insert_seals = rendered(
            SQL(
                "INSERT INTO {}.{} (position, previous, originator_id, originator_version, hash)"
                " VALUES (%s, %s, %s, %s, %s)"
            ).format(*table)
        )
        self._select_raw = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE notification_id > %s AND notification_id <= %s"
            " ORDER BY notification_id LIMIT %s"
        ).format(Identifier(datastore.schema), Identifier(events_table_name))
        self._select_at = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE notification_id = ANY(%s) ORDER BY notification_id"
        ).format(Identifier(datastore.schema), Identifier(events_table_name))
        self._select_streams = rendered(
            SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}.{}"
                " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
            ).format(Identifier(datastore.schema), Identifier(events_table_name))
        )
        # The library's statements of every insert, rendered once too (psycopg runs bytes as
        # it runs a Composed statement; the library's attributes are only typed narrower).
        self.insert_events_statement = rendered(self.insert_events_statement)  # type: ignore[assignment]
        self.lock_table_statements = [rendered(s) for s in self.lock_table_statements]  # type: ignore[arg-type]
        self._notify = rendered(SQL("NOTIFY {}").format(Identifier(self.channel_name)))

    def _notify_channel(self, curs: Cursor[DictRow]) -> None:
        curs.execute(self._notify)

    def select_streams(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """The events of several aggregates in one statement (one snapshot, one round trip)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._select_streams, (list(originator_ids),), prepare=True, binary=True)
            return [StoredEvent(*row) for row in curs.fetchall()]

    def select_raw(self, after: int, limit: int, stop: int) -> list[RawRow]:
        """Plain rows (position, originator id, version, topic, state): a replay's fast read."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            # Binary results: the state arrives as bytes, not hex to decode (half the CPU).
            curs.execute(self._select_raw, (after, stop, limit), prepare=True, binary=True)
            return curs.fetchall()

    def select_notifications_at(self, positions: Sequence[int]) -> list[Notification]:
        """The events stored at `positions` (a page of the audit trail), in log order."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_at, (list(positions),), prepare=True)
            return [
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert ids is not None
        curs.execute(self._select_head, prepare=True)
        row = curs.fetchone()
        head = (int(row["position"]), bytes(row["hash"])) if row else None
        curs.executemany(self._insert_seals, _rows(seal_all(head, ids, stored_events)))
        return ids


class SealingSQLiteRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder, sealing each insert while it holds the write lock."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        self.chain_table_name = events_table_name + CHAIN_SUFFIX
        super().__init__(datastore, events_table_name)
        self._select_head = (
            f"SELECT position, hash FROM {self.chain_table_name}"  # noqa: S608 - fixed names
            " ORDER BY position DESC LIMIT 1"
        )
        self._insert_seals = (
            f"INSERT INTO {self.chain_table_name} (position, previous, originator_id,"  # noqa: S608
            " originator_version, hash) VALUES (?, ?, ?, ?, ?)"
        )

    def select_streams(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """The events of several aggregates in one statement (one snapshot)."""
        marks = ", ".join("?" for _ in originator_ids)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id, originator_version, topic, state"  # noqa: S608
                f" FROM {self.events_table_name} WHERE originator_id IN ({marks})"
                " ORDER BY originator_id, originator_version",
                [i.hex if isinstance(i, UUID) else i for i in originator_ids],
            )
            return [
                StoredEvent(
                    originator_id=self.convert_originator_id(row["originator_id"]),
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
                for row in c.fetchall()
            ]

    def select_raw(self, after: int, limit: int, stop: int) -> list[RawRow]:
        """Plain rows (position, originator id, version, topic, state): a replay's fast read."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state"  # noqa: S608
                f" FROM {self.events_table_name} WHERE rowid > ? AND rowid <= ?"
                " ORDER BY rowid LIMIT ?",
                (after, stop, limit),
            )
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples: no sqlite3.Row to copy each row out of
            rows: list[RawRow] = cursor.fetchall()
            return rows

    def select_notifications_at(self, positions: Sequence[int]) -> list[Notification]:
        """The events stored at `positions` (a page of the audit trail), in log order."""
        marks = ", ".join("?" for _ in positions)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state"  # noqa: S608
                f" FROM {self.events_table_name} WHERE rowid IN ({marks}) ORDER BY rowid",
                list(positions),
            )
            return [
                Notification(
                    id=row["rowid"],
                    originator_id=self.convert_originator_id(row["originator_id"]),
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
                for row in c.fetchall()
            ]

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.chain_table_name} (position INTEGER PRIMARY KEY,"
            " previous INTEGER NOT NULL, originator_id TEXT NOT NULL,"
            " originator_version INTEGER NOT NULL, hash BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The insert took the database's write lock: no other writer moves the head until commit.
        ids = super()._insert_events(c, stored_events, **kwargs)
        assert ids is not None
        c.execute(self._select_head)
        row = c.fetchone()
        head = (int(row["position"]), bytes(row["hash"])) if row else None
        c.executemany(self._insert_seals, _rows(seal_all(head, ids, stored_events)))
        return ids
