"""A consumer process's composition root: `governance consume <name>`."""

from __future__ import annotations

import threading

from consumers.kafka_source import KafkaSource, open_consumer
from consumers.wiring import build
from governance.auth import TokenCodec
from governance.config import Settings
from governance.observability.consumers import consumer_metrics
from governance.outage import database_breaker
from governance.state import open_state_store


class ConsumerProcess:
    def __init__(self, name: str, settings: Settings) -> None:
        if settings.kafka_bootstrap_servers is None:
            raise RuntimeError("consumers read Kafka: set KAFKA_BOOTSTRAP_SERVERS")
        # The consumers' tables (and the endpoints the API writes) beside the events.
        self.views = open_state_store(settings, breaker=database_breaker(settings))
        self.consumer = build(
            name, settings, self.views, TokenCodec(settings.resolved_jwt_secret())
        )
        if not settings.uses_postgres:  # with PostgreSQL, `governance migrate` made the tables
            self.consumer.processor.create_tables()
        self.settings = settings
        self.name = name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.source: KafkaSource | None = None
        self.metrics = consumer_metrics(self.consumer.processor, lambda: self.source)

    def run(self) -> None:
        """Consume until `close_soon()`: the records in hand are finished and committed first."""
        for loop in self.consumer.loops:
            thread = threading.Thread(target=loop, args=(self._stop,), daemon=True)
            thread.start()
            self._threads.append(thread)
        servers = self.settings.kafka_bootstrap_servers
        assert servers is not None
        group = self.settings.consumer_group_prefix + self.name
        consumer = open_consumer(servers, self.settings.events_topic, group, self._stop)
        self.source = KafkaSource(
            consumer, self.consumer.processor, self.settings.reaction_retry_max
        )
        self.source.run(self._stop)

    def close_soon(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.source is not None:
            self.source.close()
        self.views.close()
