"""The embedded default's transport: without Kafka, the same CloudEvents reach the same reactions.

One dispatcher per consumer tails the event log like the projector, with its own position (as
each consumer has its own group on Kafka, so one that is stuck holds up no other), and hands
every event, enveloped and JSON-encoded exactly as the relay publishes it, to its processor.
The processor drops events it already applied, so a restart that replays part of a batch
changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper, PersistenceError

from consumers.processing import STORE_ERRORS, Processor, ReactionFailed
from governance.published import describe
from governance.relay.envelope import cloudevent, encode
from projections.store import ViewStore

log = logging.getLogger(__name__)

TABLE = """CREATE TABLE IF NOT EXISTS dispatch_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)"""
_RETRYABLE: tuple[type[Exception], ...] = (ReactionFailed, PersistenceError, *STORE_ERRORS)


class EmbeddedDispatcher:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        views: ViewStore,
        processor: Processor,
        *,
        source: str,
        batch_size: int,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.views = views
        self.processor = processor
        self.source = source
        self.batch_size = batch_size
        self.wake = threading.Event()

    @staticmethod
    def create_table(views: ViewStore) -> None:
        with views.transaction() as tx:
            tx.execute(TABLE)

    def position(self) -> int:
        with self.views.read() as tx:
            row = tx.one(
                "SELECT position FROM dispatch_positions WHERE name = %(n)s",
                {"n": self.processor.name},
            )
        return int(row["position"]) if row else 0

    def run_batch(self) -> int:
        """Dispatch the next batch; return how many events it held (0: caught up)."""
        notifications = self.recorder.select_notifications(
            start=self.position(), limit=self.batch_size, inclusive_of_start=False
        )
        done = None
        try:
            for notification in notifications:
                published = describe(notification.id, self.mapper.to_domain_event(notification))
                event = json.loads(encode(cloudevent(published, self.source)))
                self.processor.process(event)
                done = notification.id
        finally:
            if done is not None:
                self._advance(done)
        return len(notifications)

    def run(self, stop: threading.Event, idle_wait: float) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                dispatched = self.run_batch()
                backoff = 0.2
            except _RETRYABLE as error:
                # E.g. the API is not listening yet: this event waits, none overtakes it.
                log.warning("%s paused: %s", self.processor.name, error)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if dispatched == 0:
                self.wake.wait(idle_wait)
                self.wake.clear()

    def _advance(self, position: int) -> None:
        with self.views.transaction() as tx:
            tx.execute(
                "INSERT INTO dispatch_positions (name, position) VALUES (%(n)s, %(p)s)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                {"n": self.processor.name, "p": position},
            )
