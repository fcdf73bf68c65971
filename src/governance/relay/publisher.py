"""Publishes the global event log to Kafka, in order, at least once.

Each batch: read the notifications after the last one sent, send every event (keyed by site id,
so one site's events share a partition and keep their order) and, after a policy change, the
site's policy snapshot. A batch's last position is recorded only once the broker acknowledged
all of its messages and all of the batches before it. A crash or a broker outage before that
point re-sends the batches from the recorded position, so downstream sees an event at least once
and drops repeats by its id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import PersistenceError
from kafka.errors import KafkaError
from psycopg import Error as PostgresError

from governance.relay.envelope import STRUCTURED_CONTENT_TYPE
from governance.relay.messages import Message
from governance.relay.pages import Batch, Pages
from governance.relay.positions import PositionStore

log = logging.getLogger(__name__)

HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


class PublishFailed(Exception):
    """The broker did not acknowledge every message of a batch in time."""


@dataclass(frozen=True)
class InFlight:
    batch: Batch
    sent: list[Any]  # the producer's futures, one per message
    started: float  # perf_counter when its page was taken up


class RelayObserver(Protocol):
    """Told what each batch came to (the relay process counts it for /metrics)."""

    def published(self, messages: Sequence[Message], seconds: float) -> None:
        """The broker acknowledged the batch's messages and its position is recorded."""

    def failed(self, cause: str) -> None:
        """A batch failed (cause: kafka or event_store) and will be sent again."""


class Relay:
    def __init__(
        self,
        pages: Pages,
        positions: PositionStore,
        connect: Callable[[], Any],
        *,
        batch_size: int,
        timeout: float,
        observer: RelayObserver | None = None,
    ) -> None:
        self.pages = pages  # read and written in this process or a child of its own
        self.positions = positions
        self.batch_size = batch_size
        self.timeout = timeout
        self.wake = threading.Event()
        self.observer = observer
        # Makes a producer (and makes sure the topics exist); called again after a failure.
        self._connect = connect
        self._producer: Any = None
        # Pages are asked for by one thread of its own, in log order, so that the next page's
        # database round trip and encoding (here, or in the pages process) overlap this one's
        # sends and the broker's acknowledgements.
        self._reader: ThreadPoolExecutor | None = None
        self._next: Future[Batch | None] | None = None  # read while this batch is sent
        self._in_flight: InFlight | None = None  # sent, its position not yet recorded
        self._first_page = max(batch_size // 8, 1)
        self._page = self._first_page  # the size of the next page read
        self._position: int | None = None  # as recorded; read from the store when unknown

    def connect(self) -> None:
        """Make the producer, if there is none, and with it the topics; start the pages' reader."""
        if self._producer is None:
            self._producer = self._connect()
        self.pages.start()

    def run_batch(self) -> int:
        """Publish the next batch; return how many events it held (0: caught up).

        Through a backlog, two batches overlap: this one is handed to the producer while the
        one before it is still being acknowledged, and the next one is read and encoded
        meanwhile, so neither the broker's round trips nor the position writes leave the
        producer idle. A batch's position is recorded only once all of its messages, and all
        of the batches before it, are acknowledged; a failure at any point forgets everything
        not recorded, and the next call sends it again from the recorded position.
        """
        self.connect()  # at once, so the topics exist before any event
        try:
            return self._next_batch(time.perf_counter())
        except BaseException:
            self._page = self._first_page
            self._next = None
            self._in_flight = None
            self._position = None
            raise

    def _next_batch(self, started: float) -> int:
        reading, self._next = self._next, None
        if self._position is None:
            self._position = self.positions.get()  # once, and again after a failure
        if reading is None:
            after = self._position if self._in_flight is None else self._in_flight.batch.last
            reading = self._read_from(after)
        batch = reading.result()
        if batch is None:
            self._settle_all()
            return 0
        backlog = batch.full  # more is likely waiting
        # Pages grow through a backlog from a small first one, whose events go out sooner.
        self._page = min(self._page * 2, self.batch_size) if backlog else self._first_page
        if backlog and self.pages.parallel:
            self._next = self._read_from(batch.last)  # read beside the sends below
        sent = [
            self._producer.send(m.topic, key=m.key, value=m.value, headers=HEADERS)
            for m in batch.messages
        ]
        previous, self._in_flight = self._in_flight, InFlight(batch, sent, started)
        if backlog:
            # Read on (if not yet), and leave this batch in flight. The one before it was sent a
            # whole batch ago: its acknowledgements are in, or nearly (this batch's records
            # filled the producer's last buffers behind it).
            if self._next is None:
                # In this process, after the sends: reading beside them only takes turns with
                # them for the interpreter lock.
                self._next = self._read_from(batch.last)
            if previous is not None:
                self._settle(previous)
        else:
            # A short batch means the relay is caught up: flush at once, for the lowest latency.
            if previous is not None:
                self._settle(previous)
            self._settle_all()
        return batch.count

    def _settle_all(self) -> None:
        """Flush the producer and record the batch in flight, if any, once acknowledged."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            self._producer.flush(timeout=self.timeout)
            self._settle(in_flight)

    def _settle(self, in_flight: InFlight) -> None:
        """Wait until the broker acknowledged every message of the batch; record its position."""
        deadline = time.monotonic() + self.timeout
        for future in in_flight.sent:
            if future.is_done:
                if future.failed():
                    raise PublishFailed(f"not acknowledged: {future.exception}")
                continue
            try:
                future.get(timeout=max(deadline - time.monotonic(), 0.0))
            except Exception as error:
                raise PublishFailed(f"not acknowledged: {error}") from error
        self._record(in_flight.batch.last)
        if self.observer is not None:
            messages = in_flight.batch.messages
            self.observer.published(messages, time.perf_counter() - in_flight.started)

    def _record(self, position: int) -> None:
        self._position = None  # unknown until the store has it
        self.positions.set(position)
        self._position = position

    def _read_from(self, position: int) -> Future[Batch | None]:
        """The page after `position`, read by the reader thread (after any read before it, so
        one read ahead that a failure left behind never runs beside the next)."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-reader")
        return self._reader.submit(self.pages.read, position, self._page)

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
        self._finish()

    def _finish(self) -> None:
        """On a graceful stop, record the batch in flight once the broker acknowledged it (if it
        does not in time, the next start sends the batch again)."""
        if self._in_flight is None:
            return
        try:
            self._settle_all()
        except (KafkaError, PublishFailed, PersistenceError, PostgresError, OSError) as error:
            log.warning("stopped with a batch unrecorded, to be sent again: %s", error)
            self._in_flight = None
            self._position = None

    def close(self) -> None:
        self._next = None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.shutdown(wait=True, cancel_futures=True)  # before the event store closes
        self.pages.close()
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
