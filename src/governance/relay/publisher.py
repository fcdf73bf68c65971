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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import Mapper, PersistenceError
from kafka.errors import KafkaError
from psycopg import Error as PostgresError

from governance.audit.seal import RawRow
from governance.relay.envelope import STRUCTURED_CONTENT_TYPE
from governance.relay.messages import Message, MessageWriter, Topics
from governance.relay.positions import PositionStore

log = logging.getLogger(__name__)

_END = 2**63 - 1  # no upper bound on the positions read


class RawLog(Protocol):
    """The event store's plain-row read (governance.audit.seal): no library objects per row."""

    def select_raw(self, after: int, limit: int, stop: int) -> Sequence[RawRow]: ...


HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


class PublishFailed(Exception):
    """The broker did not acknowledge every message of a batch in time."""


@dataclass(frozen=True)
class Batch:
    messages: list[Message]
    last: int  # the position of its last event
    count: int  # events (a policy change adds a snapshot message)


class RelayObserver(Protocol):
    """Told what each batch came to (the relay process counts it for /metrics)."""

    def published(self, messages: Sequence[Message], seconds: float) -> None:
        """The broker acknowledged the batch's messages and its position is recorded."""

    def failed(self, cause: str) -> None:
        """A batch failed (cause: kafka or event_store) and will be sent again."""


class Relay:
    def __init__(
        self,
        recorder: RawLog,
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
        self.messages = MessageWriter(mapper, repository, topics, source)
        self.positions = positions
        self.batch_size = batch_size
        self.timeout = timeout
        self.wake = threading.Event()
        self.observer = observer
        # Makes a producer (and makes sure the topics exist); called again after a failure.
        self._connect = connect
        self._producer: Any = None
        # Pages are read and written into messages by one thread of their own, in log order:
        # the next page's database round trip and encoding overlap this one's sends and the
        # broker's acknowledgement (both wait, mostly, with the interpreter lock released).
        self._reader: ThreadPoolExecutor | None = None
        self._next: Future[Batch | None] | None = None  # read while this batch is sent
        self._position: int | None = None  # as recorded; read from the store when unknown

    def connect(self) -> None:
        """Make the producer, if there is none, and with it the topics."""
        if self._producer is None:
            self._producer = self._connect()

    def run_batch(self) -> int:
        """Publish the next batch; return how many events it held (0: caught up).

        While a full batch is sent and acknowledged, the next one is read and encoded (the
        relay's own work overlaps the broker's). A batch's position is recorded only once all
        of its messages are acknowledged, so a failure at any point sends it again. A failed
        read ahead is raised by the next call, which reads it again.
        """
        self.connect()  # at once, so the topics exist before any event
        started = time.perf_counter()
        reading, self._next = self._next, None
        if self._position is None:
            self._position = self.positions.get()  # once, and again after a failure
        if reading is None:
            reading = self._read_from(self._position)
        batch = reading.result()
        if batch is None:
            return 0
        sent = [
            self._producer.send(m.topic, key=m.key, value=m.value, headers=HEADERS)
            for m in batch.messages
        ]
        # A full batch means a backlog: read on while the broker acknowledges. A short one
        # means the relay is caught up: flush at once, for the lowest latency.
        if batch.count == self.batch_size:
            self._next = self._read_from(batch.last)
        self._acknowledged(sent)
        self._record(batch.last)
        if self.observer is not None:
            self.observer.published(batch.messages, time.perf_counter() - started)
        return batch.count

    def _record(self, position: int) -> None:
        self._position = None  # unknown until the store has it
        self.positions.set(position)
        self._position = position

    def _read_from(self, position: int) -> Future[Batch | None]:
        """The page after `position`, read by the reader thread (after any read before it, so
        one read ahead that a failure left behind never runs beside the next)."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-reader")
        return self._reader.submit(self._read, position)

    def _read(self, position: int) -> Batch | None:
        rows = self.recorder.select_raw(position, self.batch_size, _END)
        if not rows:
            return None
        return Batch(list(self.messages(rows)), rows[-1][0], len(rows))

    def _acknowledged(self, futures: list[Any]) -> None:
        """Wait for the broker; on any failure forget the batch read ahead (it starts later)."""
        try:
            self._producer.flush(timeout=self.timeout)
            for future in futures:
                if not future.succeeded():
                    raise PublishFailed(f"not acknowledged: {future.exception or 'timed out'}")
        except BaseException:
            self._next = None
            self._position = None
            raise

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
        self._next = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.shutdown(wait=True, cancel_futures=True)  # before the event store closes
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
