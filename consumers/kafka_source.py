"""Feeds a processor from its own Kafka consumer group; offsets are committed after the effect.

A partition's records are processed in order. When one cannot be processed now, the partition is
rewound to it and retried after a backoff, so nothing after it overtakes it. Offsets are
committed only up to what was processed; a crash before the commit redelivers those records,
and the processor drops them by event id.

Its lag (end offset minus committed offset, per partition) is measured by the polling thread
after each poll, from what the consumer already knows (the highwater mark of the last fetch and
the offsets committed here): no broker round trip per scrape.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from consumers.cloudevents import InvalidEvent, parse
from consumers.processing import STORE_ERRORS, Outcome, Processor, ReactionFailed

log = logging.getLogger(__name__)

RETRYABLE: tuple[type[Exception], ...] = (ReactionFailed, *STORE_ERRORS)
# (group, topic, partition) -> messages not yet processed and committed.
Lag = dict[tuple[str, ...], float]


def open_consumer(bootstrap_servers: str, topic: str, group_id: str, stop: threading.Event) -> Any:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=100,
        # The relay creates the topic, with its settings.
        allow_auto_create_topics=False,
        # A member that died (SIGKILL, lost host) holds its partitions until its session
        # expires; 10 s instead of 45 s lets a restarted consumer take over sooner.
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
    )
    # Subscribe only once the topic exists: a group that joins while the topic is being created
    # can be left with no partitions and never rebalance (seen with kafka-python 3.0 on KRaft).
    while topic not in consumer.topics():
        log.info("waiting for topic %s", topic)
        if stop.wait(1.0):
            break
    consumer.subscribe([topic])
    return consumer


class KafkaSource:
    def __init__(self, consumer: Any, processor: Processor, retry_max: float) -> None:
        self.consumer = consumer
        self.processor = processor
        self.retry_max = retry_max
        self._backoff = 0.2
        self._committed: dict[TopicPartition, int] = {}
        # Replaced whole after each poll, so the metrics thread reads one consistent snapshot.
        self.lag: Lag = {}

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, finishing the records in hand first."""
        while not stop.is_set():
            batch = self.consumer.poll(timeout_ms=500)
            failed = False
            for partition, records in batch.items():
                failed |= self._process(partition, records)
            self._measure()
            if failed:
                stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, self.retry_max)
            elif batch:
                self._backoff = 0.2

    def _process(self, partition: Any, records: list[Any]) -> bool:
        """Process in order up to the first failure; commit what was done. True if one failed."""
        done: int | None = None
        failed = False
        for record in records:
            try:
                self.processor.process(parse(record.value))
            except InvalidEvent as error:
                # Not a CloudEvent of our contract: no retry can help; say so and go on.
                log.error("skipping %s offset %s: %s", partition, record.offset, error)
                self.processor.report(Outcome.INVALID)
            except RETRYABLE as error:
                log.warning(
                    "%s will retry %s offset %s: %s",
                    self.processor.name,
                    partition,
                    record.offset,
                    error,
                )
                self.consumer.seek(partition, record.offset)
                failed = True
                break
            done = record.offset
        if done is not None:
            self._commit(partition, done + 1)
        return failed

    def _commit(self, partition: Any, offset: int) -> None:
        try:
            self.consumer.commit({partition: OffsetAndMetadata(offset, "", -1)})
            self._committed[partition] = offset
        except KafkaError as error:
            # E.g. the partition moved to another member: it gets the records again, and drops
            # the ones processed here by their ids.
            log.warning("commit of %s at %s failed: %s", partition, offset, error)

    def _measure(self) -> None:
        """Each assigned partition's end offset minus its committed offset; before this member
        commits one, its position, which starts at the group's committed offset."""
        group = str(self.consumer.config["group_id"])
        assigned = self.consumer.assignment()
        # A partition that moves away and back may have been committed further by another member.
        self._committed = {p: o for p, o in self._committed.items() if p in assigned}
        lag: Lag = {}
        for partition in assigned:
            end = self.consumer.highwater(partition)  # known once a fetch has answered
            if end is None:
                continue
            done = self._committed.get(partition)
            if done is None:
                done = self._position(partition)
            if done is None:
                continue
            lag[(group, partition.topic, str(partition.partition))] = float(max(end - done, 0))
        self.lag = lag

    def _position(self, partition: TopicPartition) -> int | None:
        try:
            position: int | None = self.consumer.position(partition, timeout_ms=1000)
        except KafkaError:
            return None
        return position

    def close(self) -> None:
        self.consumer.close(autocommit=False)
