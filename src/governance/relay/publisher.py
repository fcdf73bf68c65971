"""Publishes the global event log to Kafka, in order, at least once.

Each batch: read the notifications after the recorded position, send every event (keyed by site
id, so one site's events share a partition and keep their order) and, after a policy change,
the site's policy snapshot; wait until the broker acknowledged all of them; only then record
the batch's last position. A crash or a broker outage before that point re-sends the batch, so
downstream sees an event at least once and drops repeats by its id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification, PersistenceError
from kafka.errors import KafkaError
from psycopg import Error as PostgresError

from governance.published import describe
from governance.relay.envelope import STRUCTURED_CONTENT_TYPE, cloudevent, encode
from governance.relay.policy import changes_policy, policy_snapshot
from governance.relay.positions import PositionStore

log = logging.getLogger(__name__)

_HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


class PublishFailed(Exception):
    """The broker did not acknowledge every message of a batch in time."""


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Topics:
    events: str
    policy: str


class RelayObserver(Protocol):
    """Told what each batch came to (the relay process counts it for /metrics)."""

    def published(self, messages: Sequence[Message], seconds: float) -> None:
        """The broker acknowledged the batch's messages and its position is recorded."""

    def failed(self, cause: str) -> None:
        """A batch failed (cause: kafka or event_store) and will be sent again."""


class Relay:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        repository: Any,
        positions: PositionStore,
        connect: Callable[[], Any],
        *,
        topics: Topics,
        source: str,
        batch_size: int,
        timeout: float,
        observer: RelayObserver | None = None,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.repository = repository
        self.positions = positions
        self.topics = topics
        self.source = source
        self.batch_size = batch_size
        self.timeout = timeout
        self.wake = threading.Event()
        self.observer = observer
        # Makes a producer (and makes sure the topics exist); called again after a failure.
        self._connect = connect
        self._producer: Any = None

    def run_batch(self) -> int:
        """Publish the next batch; return how many events it held (0: caught up)."""
        if self._producer is None:
            self._producer = self._connect()  # at once, so the topics exist before any event
        started = time.perf_counter()
        notifications = self.recorder.select_notifications(
            start=self.positions.get(), limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        messages = list(self.messages(notifications))
        self._publish(messages)
        self.positions.set(notifications[-1].id)
        if self.observer is not None:
            self.observer.published(messages, time.perf_counter() - started)
        return len(notifications)

    def messages(self, notifications: Sequence[Notification]) -> Iterator[Message]:
        for notification in notifications:
            event = self.mapper.to_domain_event(notification)
            published = describe(notification.id, event)
            key = published.site_id.encode()
            yield Message(self.topics.events, key, encode(cloudevent(published, self.source)))
            if changes_policy(event):
                snapshot = policy_snapshot(self.repository, event, published)
                yield Message(self.topics.policy, key, encode(snapshot))

    def _publish(self, messages: list[Message]) -> None:
        futures = [
            self._producer.send(m.topic, key=m.key, value=m.value, headers=_HEADERS)
            for m in messages
        ]
        self._producer.flush(timeout=self.timeout)
        for future in futures:
            if not future.succeeded():
                raise PublishFailed(f"not acknowledged: {future.exception or 'timed out'}")

    def run(self, stop: threading.Event, idle_wait: float) -> None:
        """Publish until `stop` is set; sleep when caught up until woken or `idle_wait` passed."""
        backoff = 0.2
        while not stop.is_set():
            try:
                published = self.run_batch()
                backoff = 0.2
            except (KafkaError, PublishFailed) as error:
                # Unacknowledged: the position stays, the batch goes again on a new connection
                # (the broker may have come back empty and need its topics again).
                log.warning("relay paused, Kafka: %s", error)
                self._failed("kafka")
                self._disconnect()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except (PersistenceError, PostgresError, OSError) as error:
                log.warning("relay paused, event store: %s", error)
                self._failed("event_store")
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published == 0:
                self.wake.wait(idle_wait)
                self.wake.clear()

    def close(self) -> None:
        self._disconnect()

    def _failed(self, cause: str) -> None:
        if self.observer is not None:
            self.observer.failed(cause)

    def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # kafka-python's close flushes first and gives up (leaving its threads running) while
        # records are pending; they expire within the delivery timeout, so a second try closes.
        for _ in range(2):
            try:
                producer.close(timeout=self.timeout)
                return
            except KafkaError as error:
                log.warning("closing the producer: %s", error)
