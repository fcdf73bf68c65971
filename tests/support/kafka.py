"""What a downstream team does with kafka-python: subscribe, read, decode JSON."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient

from governance.config import Settings


def with_kafka(settings: Settings, servers: str, **overrides: object) -> Settings:
    """The settings, publishing to fresh topics on `servers` with quick timeouts."""
    run = uuid.uuid4().hex[:10]
    update: dict[str, object] = {
        "kafka_bootstrap_servers": servers,
        "events_topic": f"t-{run}.events",
        "policy_topic": f"t-{run}.site-policy",
        "consumer_group_prefix": f"t-{run}.",
        "kafka_timeout": 10.0,
        "relay_idle_wait": 0.05,
    }
    return settings.model_copy(update=update | overrides)


def delete_topics(servers: str, *topics: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        existing = set(admin.list_topics())
        gone = [t for t in topics if t in existing]
        if gone:
            admin.delete_topics(gone)
    finally:
        admin.close()


class Reader:
    """A downstream consumer in its own group, collecting every record it is given."""

    def __init__(self, servers: str, topic: str) -> None:
        self.records: list[Any] = []
        self._lock = threading.Condition()
        self._consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id="downstream-" + uuid.uuid4().hex[:8],
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        # Like a downstream team, subscribe to a topic that exists (the relay creates it).
        deadline = time.monotonic() + 30
        while topic not in self._consumer.topics():
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} did not appear within 30 s")
            time.sleep(0.1)
        self._consumer.subscribe([topic])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.poll(timeout_ms=200)
            with self._lock:
                for records in batch.values():
                    self.records.extend(records)
                self._lock.notify_all()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(r.value) for r in self.records]

    def wait_until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not done([json.loads(r.value) for r in self.records]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"after {timeout} s the reader has {len(self.records)}")
                self._lock.wait(min(remaining, 0.2))

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        self.wait_until(lambda events: len(events) >= count, timeout)
        return self.events()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


@contextmanager
def reading(servers: str, topic: str) -> Iterator[Reader]:
    reader = Reader(servers, topic)
    try:
        yield reader
    finally:
        reader.close()
