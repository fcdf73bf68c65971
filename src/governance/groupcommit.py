"""Group commit: the saves of commands that arrive together share one transaction.

The event store takes an exclusive lock on the log for every insert (so that positions become
visible in order and tailing readers never skip one), which caps one-save transactions at a few
hundred per second however many threads write. Here the saves of one process queue up: the first
waiting thread (the leader) commits the queue, up to `max_batch` saves, in one transaction under
that one lock, while later arrivals queue for the next. A thread alone commits at once.

Each save keeps its own outcome. On PostgreSQL the leader first inserts the whole batch unless a
key is stored (two round trips under the lock: the insert, then the seals and the commit); if
any (aggregate, version) key was stored already, that transaction is rolled back and the leader
looks the keys up under the lock instead: a save that would conflict fails alone with
`IntegrityError` (optimistic concurrency, as if it had run by itself after the others) and the
others commit; each caller gets its own positions back. When the shared transaction fails for a
reason one save may have caused (a constraint, a trigger, bad data), every save of the batch is
committed again alone, so only the culprit fails; when the database is away, all of them fail.
Either way a batch is one transaction: nothing of it is ever half-written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore
from eventsourcing.utils import retry
from psycopg import Cursor, Pipeline
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from governance.audit.seal import (
    SealingPostgresRecorder,
    SealingSQLiteRecorder,
    _rows,
    canonical_id,
    rendered,
    seal_all,
)
from governance.outage import CONNECTION_ERRORS, DatabaseUnavailable

# Enough to fill the gap between one transaction and the next; bounded so a leader's own
# caller is not kept waiting for a huge transaction.
MAX_BATCH = 64
# Failures of the connection, not of a save's data: committing saves alone would not help.
_UNREACHABLE: tuple[type[Exception], ...] = (DatabaseUnavailable, *CONNECTION_ERRORS)

Key = tuple[str, int]


class PendingSave:
    """One caller's events, waiting for the transaction that stores them."""

    __slots__ = ("done", "error", "events", "positions", "woken")

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        self.positions: Sequence[int] = ()
        self.error: BaseException | None = None
        self.done = False
        # Set once the save is done, or when its thread is to lead the next batch.
        self.woken = threading.Event()

    def event_keys(self) -> list[Key]:
        return [(canonical_id(e.originator_id), e.originator_version) for e in self.events]

    def result(self) -> Sequence[int]:
        if self.error is not None:
            raise self.error
        return self.positions


Outcomes = dict[PendingSave, Sequence[int] | BaseException]
CommitBatch = Callable[[Sequence[PendingSave]], Outcomes]


class GroupCommitter:
    """Leader/follower batching of saves: one committing thread at a time per process."""

    def __init__(self, commit: CommitBatch, max_batch: int = MAX_BATCH) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self._queue: list[PendingSave] = []
        self._leading = False
        self._lock = threading.Lock()
        # Told the size of every batch committed (e.g. a histogram on /metrics).
        self.observers: list[Callable[[int], None]] = []

    @property
    def waiting(self) -> int:
        """Saves queued for the next transaction (not counting the one being committed)."""
        with self._lock:
            return len(self._queue)

    @property
    def committing(self) -> bool:
        """Whether a leader is committing a batch now."""
        with self._lock:
            return self._leading

    def submit(self, events: Sequence[StoredEvent]) -> Sequence[int]:
        """Store `events` atomically with whatever else is waiting; their positions, in order."""
        pending = PendingSave(events)
        with self._lock:
            self._queue.append(pending)
            follow, self._leading = self._leading, True
        if follow:
            # Each thread waits on its own event: a commit wakes only the saves it settled,
            # and the oldest waiting one to lead next (no herd of threads woken for nothing).
            pending.woken.wait()
            if pending.done:
                return pending.result()
        try:
            while not pending.done:
                with self._lock:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                try:
                    self._settle(batch)
                finally:
                    for other in batch:
                        other.woken.set()
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].woken.set()  # the lead passes on
                else:
                    self._leading = False
        return pending.result()

    def _settle(self, batch: Sequence[PendingSave]) -> None:
        outcomes: Outcomes
        try:
            outcomes = self._commit(batch)
        except _UNREACHABLE as exc:
            outcomes = dict.fromkeys(batch, exc)
        except Exception as exc:  # noqa: BLE001 - whatever it is, each caller gets it as its own
            if len(batch) > 1:  # one save may be the cause: commit each alone, so only it fails
                for one in batch:
                    self._settle([one])
                return
            outcomes = {batch[0]: exc}
        except BaseException as exc:  # e.g. KeyboardInterrupt: wake the followers, then stop
            outcomes = dict.fromkeys(batch, exc)
            self._record(outcomes)
            raise
        else:
            for observe in self.observers:
                observe(len(batch))
        self._record(outcomes)

    @staticmethod
    def _record(outcomes: Outcomes) -> None:
        for pending, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                pending.error = outcome
            else:
                pending.positions = outcome
            pending.done = True


def _sort_out(batch: Sequence[PendingSave], stored: set[Key]) -> tuple[list[PendingSave], Outcomes]:
    """The saves that can go in, in order, and a conflict for each of the others.

    A save conflicts when one of its keys is stored already or taken by an earlier save of the
    batch: exactly what the primary key would refuse had the saves committed one by one.
    """
    taken = set(stored)
    accepted: list[PendingSave] = []
    refused: Outcomes = {}
    for pending in batch:
        keys = pending.event_keys()
        clash = next((k for k in keys if k in taken), None)
        if clash is None and len(set(keys)) == len(keys):
            taken.update(keys)
            accepted.append(pending)
        else:
            what = f"version {clash[1]} of {clash[0]}" if clash else "a version twice"
            refused[pending] = IntegrityError(f"{what}: stored already, not saved")
    return accepted, refused


def _split(accepted: Sequence[PendingSave], positions: Sequence[int]) -> Outcomes:
    outcomes: Outcomes = {}
    start = 0
    for pending in accepted:
        end = start + len(pending.events)
        outcomes[pending] = positions[start:end]
        start = end
    return outcomes


class _AlreadyStored(Exception):
    """A key of the batch was stored already: sort the batch out save by save."""


class GroupCommittingPostgresRecorder(SealingPostgresRecorder):
    """The sealing PostgreSQL recorder, committing concurrent saves together."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.committer = GroupCommitter(self._commit_together)
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        self._select_stored = rendered(
            SQL(
                "SELECT originator_id, originator_version FROM {}.{}"
                " WHERE (originator_id, originator_version) IN"
                " (SELECT * FROM unnest(%s::{}[], %s::bigint[]))"
            ).format(schema, table, Identifier(datastore.originator_id_type))
        )
        self._insert_unless_stored = rendered(
            SQL(
                "INSERT INTO {}.{} (originator_id, originator_version, topic, state)"
                " SELECT * FROM unnest(%s::{}[], %s::bigint[], %s::text[], %s::bytea[])"
                " ON CONFLICT DO NOTHING"
                " RETURNING notification_id, originator_id, originator_version"
            ).format(schema, table, Identifier(datastore.originator_id_type))
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not _groupable(stored_events, kwargs):
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        return self.committer.submit(stored_events)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _commit_together(self, batch: Sequence[PendingSave]) -> Outcomes:
        try:
            return self._commit_unless_stored(batch)
        except _AlreadyStored:
            return self._commit_sorting_out(batch)

    @contextmanager
    def _locked(self) -> Iterator[tuple[Pipeline, Cursor[DictRow], Cursor[DictRow]]]:
        """A pipelined transaction holding the log's lock, its NOTIFY queued, and two cursors.

        The lock first: no other writer can store a key or move the chain's head until the
        transaction ends, and positions are handed out in commit order. An error of the
        database is raised once the pipeline has ended, as the library does.
        """
        failure: Exception | None = None
        with self.datastore.get_connection() as conn:
            with (
                conn.pipeline() as pipeline,
                conn.transaction(),
                conn.cursor() as curs,
                conn.cursor() as other,
            ):
                try:
                    self._lock_table(curs)
                    self._notify_channel(curs)
                    yield pipeline, curs, other
                except _AlreadyStored:
                    raise  # out through the transaction, which rolls the insert back
                except Exception as exc:  # noqa: BLE001 - see above
                    failure = exc
            if failure is not None:
                raise failure

    def _commit_unless_stored(self, batch: Sequence[PendingSave]) -> Outcomes:
        """The common case, no key stored already, in two round trips.

        Every event is inserted unless its key is stored (the table's primary key); if one was
        skipped, the transaction is rolled back and the batch sorted out key by key instead.
        """
        with self._locked() as (pipeline, curs, inserted):
            curs.execute(self._select_head, prepare=True)
            self._insert(inserted, batch)
            pipeline.sync()
            return self._seal(curs, _head(curs.fetchone()), inserted, batch)

    def _commit_sorting_out(self, batch: Sequence[PendingSave]) -> Outcomes:
        """Look the batch's keys up under the lock first: each conflicting save fails alone."""
        ids = [e.originator_id for p in batch for e in p.events]
        versions = [e.originator_version for p in batch for e in p.events]
        with self._locked() as (pipeline, curs, other):
            # All of it goes in one round trip (the pipeline), answered together.
            other.execute(self._select_stored, (ids, versions), prepare=True)
            curs.execute(self._select_head, prepare=True)
            head = _head(curs.fetchone())
            stored = {
                (canonical_id(r["originator_id"]), int(r["originator_version"]))
                for r in other.fetchall()
            }
            accepted, outcomes = _sort_out(batch, stored)
            if accepted:
                self._insert(other, accepted)
                pipeline.sync()
                outcomes.update(self._seal(curs, head, other, accepted))
        return outcomes

    def _insert(self, curs: Cursor[DictRow], saves: Sequence[PendingSave]) -> None:
        events = [e for p in saves for e in p.events]
        columns = (
            [e.originator_id for e in events],
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
        )
        curs.execute(self._insert_unless_stored, columns, prepare=True)

    def _seal(
        self,
        curs: Cursor[DictRow],
        head: tuple[int, bytes] | None,
        inserted: Cursor[DictRow],
        saves: Sequence[PendingSave],
    ) -> Outcomes:
        """Each save's positions, from the rows `_insert` returned, its events sealed in order.

        Raises `_AlreadyStored` when a key was skipped (stored already)."""
        stored = {
            (canonical_id(r["originator_id"]), int(r["originator_version"])): int(
                r["notification_id"]
            )
            for r in inserted.fetchall()
        }
        if len(stored) < sum(len(p.events) for p in saves):
            raise _AlreadyStored
        placed = [stored[k] for p in saves for k in p.event_keys()]
        events = [e for p in saves for e in p.events]
        in_order = sorted(zip(placed, events, strict=True), key=lambda pair: pair[0])
        seals = seal_all(head, [p for p, _ in in_order], [e for _, e in in_order])
        curs.executemany(self._insert_seals, _rows(seals))
        return _split(saves, placed)


def _groupable(events: Sequence[StoredEvent], kwargs: dict[str, Any]) -> bool:
    # The application passes `tracking=None`; a tracking record belongs to a process recorder.
    return bool(events) and all(value is None for value in kwargs.values())


def _head(row: Any) -> tuple[int, bytes] | None:
    return (int(row["position"]), bytes(row["hash"])) if row else None


class GroupCommittingSQLiteRecorder(SealingSQLiteRecorder):
    """The sealing SQLite recorder, committing concurrent saves together (one fsync for all)."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self.committer = GroupCommitter(self._commit_together)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not _groupable(stored_events, kwargs):
            return super().insert_events(stored_events, **kwargs)
        return self.committer.submit(stored_events)

    def _commit_together(self, batch: Sequence[PendingSave]) -> Outcomes:
        outcomes: Outcomes = {}
        events: list[StoredEvent] = []
        positions: list[int] = []
        with self.datastore.transaction(commit=True) as c:
            for pending in batch:
                inserted = self._insert_alone(c, pending)
                if isinstance(inserted, BaseException):
                    outcomes[pending] = inserted
                    continue
                outcomes[pending] = inserted
                events.extend(pending.events)
                positions.extend(inserted)
            if events:
                c.execute(self._select_head)
                head = _head(c.fetchone())
                c.executemany(self._insert_seals, _rows(seal_all(head, positions, events)))
        return outcomes

    def _insert_alone(
        self, c: SQLiteCursor, pending: PendingSave
    ) -> Sequence[int] | IntegrityError:
        # A savepoint per save: a conflict undoes that save's rows only (SQLite has no round
        # trips, so trying the insert costs less than looking the keys up first).
        c.execute("SAVEPOINT save")
        try:
            positions = SQLiteApplicationRecorder._insert_events(self, c, pending.events)
        except sqlite3.IntegrityError as exc:
            c.execute("ROLLBACK TO save")
            c.execute("RELEASE save")
            return IntegrityError(str(exc))
        c.execute("RELEASE save")
        assert positions is not None
        return positions
