"""The relay process's composition root: `governance relay`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer

from governance.application import GovernanceApplication
from governance.audit.seal import SealingPostgresRecorder, SealingSQLiteRecorder
from governance.config import Settings
from governance.eventstore import EVENTS_TABLE, event_store_env
from governance.observability.relay import relay_metrics
from governance.outage import database_breaker, guard_event_store
from governance.relay.messages import MessageWriter, Topics
from governance.relay.pages import ChildPages, LocalPages, Pages
from governance.relay.positions import open_positions
from governance.relay.publisher import Relay
from governance.relay.topics import ensure_topics
from projections.listen import listen_for_events


def producer_config(settings: Settings) -> dict[str, Any]:
    """A producer that keeps one key's messages in order across retries (idempotent, acks=all)."""
    if settings.kafka_bootstrap_servers is None:
        raise RuntimeError("the relay needs Kafka: set KAFKA_BOOTSTRAP_SERVERS")
    timeout_ms = int(settings.kafka_timeout * 1000)
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "acks": "all",
        "enable_idempotence": True,
        # Records wait in memory until the batch is flushed: fewer, fuller produce requests.
        "linger_ms": 50,
        "batch_size": 256 * 1024,
        # Only the relay creates topics, with their settings (the policy topic is compacted).
        "allow_auto_create_topics": False,
        "max_block_ms": timeout_ms,
        "request_timeout_ms": max(timeout_ms // 2, 1000),
        "delivery_timeout_ms": timeout_ms,
        "bootstrap_timeout_ms": timeout_ms,
    }


def connect(settings: Settings) -> Any:
    config = producer_config(settings)
    ensure_topics(settings)
    producer = KafkaProducer(**config)
    try:
        # The topics' partitions now, not in the first batch's first send (which waited ~70 ms
        # per topic for them, with the batch's sends behind it).
        for topic in (settings.events_topic, settings.policy_topic):
            producer.partitions_for(topic)
    except BaseException:
        producer.close(timeout=0)
        raise
    return producer


# Seconds a new pages process may take to be ready: it imports the application and connects.
PAGES_START_TIMEOUT = 60.0


def local_pages(application: GovernanceApplication, settings: Settings) -> LocalPages:
    """Pages of `application`'s log read and written in this process."""
    recorder = application.recorder
    assert isinstance(recorder, SealingPostgresRecorder | SealingSQLiteRecorder)
    topics = Topics(settings.events_topic, settings.policy_topic)
    writer = MessageWriter(
        application.mapper, application.repository, topics, settings.cloudevents_source
    )
    return LocalPages(recorder, writer)


def open_pages(settings: Settings) -> tuple[LocalPages, Callable[[], None]]:
    """The pages process's own: its event store (behind its own breaker), and how to close it."""
    application = GovernanceApplication(env=event_store_env(settings, create_table=False))
    breaker = database_breaker(settings)
    if breaker is not None:
        guard_event_store(application.recorder, breaker)
    return local_pages(application, settings), application.close


class RelayProcess:
    """The application's event log, the relay's position beside it, and the producer."""

    def __init__(self, settings: Settings) -> None:
        if settings.kafka_bootstrap_servers is None:
            raise RuntimeError("the relay needs Kafka: set KAFKA_BOOTSTRAP_SERVERS")
        self.settings = settings
        embedded = not settings.uses_postgres  # with PostgreSQL, `governance migrate` made tables
        self.application = GovernanceApplication(
            env=event_store_env(settings, create_table=embedded)
        )
        # While PostgreSQL is away, reads fail at once and the relay's own backoff waits.
        breaker = database_breaker(settings)
        if breaker is not None:
            guard_event_store(self.application.recorder, breaker)
        self.positions = open_positions(settings, breaker)
        if embedded:
            self.positions.create_table()
        topics = Topics(settings.events_topic, settings.policy_topic)
        self.metrics, meter = relay_metrics(
            self.application.name, self.application.head_position, self.positions, topics
        )
        pages: Pages
        if settings.relay_pages_process:
            pages = ChildPages(settings, open_pages, start_timeout=PAGES_START_TIMEOUT)
        else:
            pages = local_pages(self.application, settings)
        self.relay = Relay(
            pages,
            self.positions,
            lambda: connect(settings),
            batch_size=settings.relay_batch_size,
            timeout=settings.kafka_timeout,
            observer=meter,
        )
        self._stop = threading.Event()

    def run(self) -> None:
        """Publish until `close_soon()`; PostgreSQL wakes the relay on every commit (NOTIFY)."""
        if self.settings.database_url is not None:
            listener = threading.Thread(
                target=listen_for_events,
                args=(self.settings.database_url, EVENTS_TABLE, self.relay.wake, self._stop),
                daemon=True,
            )
            listener.start()
        self.relay.run(self._stop, self.settings.relay_idle_wait)

    def close_soon(self) -> None:
        """Stop after the batch in flight (safe from a signal handler)."""
        self._stop.set()
        self.relay.wake.set()

    def close(self) -> None:
        self._stop.set()
        self.relay.close()
        self.positions.close()
        self.application.close()
