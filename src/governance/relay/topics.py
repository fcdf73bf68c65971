"""The relay's two topics, created with kafka-python's admin client when they are missing."""

from __future__ import annotations

import logging
from contextlib import suppress

from kafka.admin import ConfigResource, KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from governance.config import Settings

log = logging.getLogger(__name__)
_COMPACT = {"cleanup.policy": "compact"}


class _AdminClient(KafkaAdminClient):  # type: ignore[misc]
    """kafka-python 3.0 leaves its IO thread running when the bootstrap in `__init__` fails: one
    leaked thread per attempt while the broker is away. Close what it started, then re-raise."""

    def __init__(self, **config: object) -> None:
        try:
            super().__init__(**config)
        except KafkaError:
            self._closed = False
            self.close()
            raise


def topic_specs(settings: Settings) -> dict[str, dict[str, object]]:
    common: dict[str, object] = {
        "num_partitions": settings.topic_partitions,
        "replication_factor": settings.topic_replication_factor,
    }
    return {
        settings.events_topic: common,
        # Compaction keeps the last value per key: every site's current policy, without history.
        settings.policy_topic: common | {"configs": _COMPACT},
    }


def ensure_topics(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers is not None
    timeout_ms = int(settings.kafka_timeout * 1000)
    admin = _AdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        existing = set(admin.list_topics())
        missing = {
            name: spec for name, spec in topic_specs(settings).items() if name not in existing
        }
        if missing:
            log.info("creating topics %s", ", ".join(sorted(missing)))
            # Another relay (or a broker's auto-creation) may have been faster.
            with suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, timeout_ms=timeout_ms, wait_for_metadata=True)
        if settings.policy_topic in existing:
            # A consumer's auto-creation may have made it first, with the broker's default
            # cleanup policy (delete): compaction is what makes it a table of current policies.
            admin.alter_configs([ConfigResource("TOPIC", settings.policy_topic, _COMPACT)])
    finally:
        admin.close()
