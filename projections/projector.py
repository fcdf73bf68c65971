"""Applies the event log to the read models in batches, exactly once.

Each batch is one view-store transaction: it locks the projections' tracking rows, reads the next
notifications after the lowest position, applies them, and advances the positions. A crash rolls
the whole batch back, so a restart resumes at the last committed position and nothing is applied
twice; a second projector waits on the tracking rows instead of applying the same batch again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper, PersistenceError
from psycopg import Error as PostgresError

from projections.base import Projection
from projections.store import Tx, ViewStore

log = logging.getLogger(__name__)

TRACKING_TABLE = """CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)"""
_LOCK_POSITIONS = {
    "sqlite": "SELECT name, position FROM projection_tracking",
    "postgres": "SELECT name, position FROM projection_tracking FOR UPDATE",
}


class Projector:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        store: ViewStore,
        projections: Sequence[Projection],
        batch_size: int = 1000,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.store = store
        self.projections = projections
        self.batch_size = batch_size
        self.wake = threading.Event()
        self._progress = threading.Condition()
        self.batches = 0  # batches committed by this projector, for `wait_progress`

    def create_tables(self) -> None:
        with self.store.transaction() as tx:
            tx.execute(TRACKING_TABLE)
            for projection in self.projections:
                for statement in projection.tables:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO projection_tracking (name, position) VALUES (%(n)s, 0)"
                    " ON CONFLICT (name) DO NOTHING",
                    {"n": projection.name},
                )

    def positions(self) -> dict[str, int]:
        with self.store.read() as tx:
            rows = tx.all("SELECT name, position FROM projection_tracking")
        return {row["name"]: int(row["position"]) for row in rows}

    def position(self) -> int:
        """The log position every read model has reached."""
        positions = self.positions()
        return min(positions.get(p.name, 0) for p in self.projections)

    def run_batch(self, stop: int | None = None) -> int:
        """Apply the next batch (up to position `stop`); return how many notifications it covered.

        0 means caught up (with the log, or with `stop`).
        """
        with self.store.transaction() as tx:
            done = self._lock_positions(tx)
            start = min(done.values())
            notifications = self.recorder.select_notifications(
                start=start,
                limit=self.batch_size,
                stop=stop,
                inclusive_of_start=False,
            )
            if notifications:
                last = notifications[-1].id
            else:
                return 0
            if last <= start:
                return 0
            events = [(n.id, self.mapper.to_domain_event(n)) for n in notifications]
            for projection in self.projections:
                reached = done[projection.name]
                for position, event in events:
                    if position > reached:
                        projection.apply(tx, event, position)
                if last > reached:
                    tx.execute(
                        "UPDATE projection_tracking SET position = %(p)s WHERE name = %(n)s",
                        {"p": last, "n": projection.name},
                    )
        with self._progress:
            self.batches += 1
            self._progress.notify_all()
        return max(len(notifications), 1)

    def catch_up(self, stop: int | None = None) -> None:
        while self.run_batch(stop):
            pass

    def run(self, stop: threading.Event, idle_wait: float) -> None:
        """Project until `stop` is set, sleeping when idle until woken or `idle_wait` passes."""
        self._log_positions("projector started")
        backoff = 0.1
        while not stop.is_set():
            try:
                applied = self.run_batch()
                backoff = 0.1
            except (PersistenceError, PostgresError, OSError) as error:
                # The database is away: keep the position we have and try again shortly.
                log.warning("projector paused: %s", error)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if applied == 0:
                self.wake.wait(idle_wait)
                self.wake.clear()
        self._log_positions("projector stopped at a batch boundary")

    def _log_positions(self, message: str) -> None:
        """Where each read model is: a restart must go on from the positions it stopped at."""
        try:
            positions = self.positions()
        except (PersistenceError, PostgresError, OSError, sqlite3.Error):
            positions = {}
        log.info(message, extra={"positions": positions})

    def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until every read model has reached `position`; False when `timeout` ran out."""
        deadline = time.monotonic() + timeout
        while self.position() < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Woken at once by an in-process projector; polls when the projector runs elsewhere.
            with self._progress:
                self._progress.wait(min(remaining, 0.02))
        return True

    def wait_progress(self, seen: int, timeout: float) -> int:
        """Wait until this projector commits a batch after the `seen`-th, or `timeout` passes.

        Returns the count of batches now: pass it back as `seen` to wait for the next one.
        """
        with self._progress:
            self._progress.wait_for(lambda: self.batches != seen, timeout)
            return self.batches

    def _lock_positions(self, tx: Tx) -> dict[str, int]:
        rows = tx.all(_LOCK_POSITIONS[self.store.dialect])
        known = {row["name"]: int(row["position"]) for row in rows}
        return {p.name: known[p.name] for p in self.projections}
