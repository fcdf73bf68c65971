"""The relay's, the consumers' and the in-process dispatchers' /metrics, as Prometheus scrapes them.

The relay and the consumers run as in `governance relay` and `governance consume`, on the real
broker, each serving its own /metrics on a free port; the embedded dispatchers' lag is on the
API's /metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient

from consumers.main import ConsumerProcess
from governance.api.app import create_app
from governance.application import GovernanceApplication
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.site import ExistingUserInstalls, UserInstalls
from governance.relay.main import RelayProcess
from governance.runtime import Runtime
from tests.integration.test_observability import sample, series
from tests.support.kafka import delete_topics, with_kafka

RELAY_LAG = "governance_relay_lag_events"
PUBLISHED = "governance_relay_published_messages_total"
CONSUMER_LAG = "governance_consumer_lag_messages"
MESSAGES = "governance_consumer_messages_total"
DISPATCHER_LAG = "governance_dispatcher_lag_events"
# Nothing listens here: enforce-block cannot reach the API, so the block waits as lag.
NO_API = "http://127.0.0.1:9"


@pytest.fixture
def relayed(settings: Settings, kafka_servers: str) -> Iterator[Settings]:
    configured = with_kafka(settings, kafka_servers, reaction_retry_max=0.5)
    yield configured
    delete_topics(kafka_servers, configured.events_topic, configured.policy_topic)


class Running:
    """A worker process's loop in a thread, and its /metrics served on a free port."""

    def __init__(self, process: RelayProcess | ConsumerProcess, *, start: bool = True) -> None:
        self.process = process
        self.server = process.metrics.serve("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.port}/metrics"
        self.thread = threading.Thread(target=process.run, daemon=True)
        self._start = start

    def __enter__(self) -> Running:
        if self._start:
            self.start()
        return self

    def start(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.process.close_soon()
        if self.thread.ident is not None:
            self.thread.join(timeout=30)
        self.server.close()
        self.process.close()
        assert not self.thread.is_alive()

    def scrape(self) -> str:
        answer = httpx2.get(self.url, timeout=5)
        assert answer.status_code == 200
        return answer.text

    def scrape_until(self, done: Callable[[str], bool], timeout: float = 30) -> str:
        return eventually(self.scrape, done, timeout)


def eventually(read: Callable[[], str], done: Callable[[str], bool], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    page = read()
    while not done(page):
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout} s the page still reads:\n{page}")
        time.sleep(0.1)
        page = read()
    return page


def total(page: str, name: str, **labels: str) -> float:
    """The sum of a family's series that carry `labels` (0 when there are none)."""
    return sum(
        sample(page, name, **series_labels) or 0.0
        for series_labels in series(page, name)
        if all(series_labels.get(k) == v for k, v in labels.items())
    )


def block_and_remove(application: GovernanceApplication, site: str) -> None:
    application.register_site("acme", site, site.upper(), Actor("olga"))
    application.set_user_installs(
        site,
        UserInstalls.BLOCKED,
        Actor("olga"),
        reason="review",
        existing_user_installs=ExistingUserInstalls.REMOVE,
    )


def publish_all(settings: Settings, sites: int) -> int:
    """Write a site's registration per site and publish them all; return how many events."""
    relay = RelayProcess(settings)
    for n in range(sites):
        relay.application.register_site("acme", f"s{n}", f"Site {n}", Actor("olga"))
    head = relay.application.head_position()
    with Running(relay) as running:
        running.scrape_until(lambda page: sample(page, RELAY_LAG, relay=settings.events_topic) == 0)
    return head


def test_the_relay_reports_its_lag_and_what_it_published(relayed: Settings) -> None:
    topic = relayed.events_topic
    relay = RelayProcess(relayed)
    for n in range(3):
        relay.application.register_site("acme", f"s{n}", f"Site {n}", Actor("olga"))
    head = relay.application.head_position()
    with Running(relay, start=False) as running:
        backlog = running.scrape()  # not started yet: the whole log is its backlog
        running.start()
        published = running.scrape_until(
            lambda page: (
                sample(page, RELAY_LAG, relay=topic) == 0
                and sample(page, PUBLISHED, topic=topic) == 3
            )
        )
    assert head == 3
    assert sample(backlog, RELAY_LAG, relay=topic) == head
    assert sample(backlog, "governance_relay_position", relay=topic) == 0
    assert sample(backlog, PUBLISHED, topic=topic) == 0
    assert sample(published, "governance_relay_position", relay=topic) == head
    assert sample(published, "governance_event_log_head_position") == head
    # Each registration also sets the site's policy: one snapshot each on the compacted topic.
    assert sample(published, PUBLISHED, topic=relayed.policy_topic) == 3
    assert sample(published, "governance_relay_failures_total", cause="kafka") == 0
    assert (sample(published, "governance_relay_batch_duration_seconds_count") or 0) >= 1


def test_a_consumer_reports_its_lag_per_partition_and_reaches_zero(relayed: Settings) -> None:
    events = publish_all(relayed, sites=4)
    with Running(ConsumerProcess("webhooks", relayed)) as consumer:
        page = consumer.scrape_until(
            lambda page: (
                len(series(page, CONSUMER_LAG)) == relayed.topic_partitions
                and total(page, MESSAGES, consumer="webhooks") == events
                and total(page, CONSUMER_LAG) == 0
            )
        )
    group = relayed.consumer_group_prefix + "webhooks"
    assert sorted(labels["partition"] for labels in series(page, CONSUMER_LAG)) == ["0", "1", "2"]
    for labels in series(page, CONSUMER_LAG):
        assert (labels["group"], labels["topic"]) == (group, relayed.events_topic)
    assert sample(page, MESSAGES, consumer="webhooks", outcome="applied") == events
    assert sample(page, MESSAGES, consumer="webhooks", outcome="failed") == 0


def test_an_event_a_consumer_cannot_apply_shows_as_its_lag(relayed: Settings) -> None:
    settings = relayed.model_copy(update={"service_api_url": NO_API})
    relay = RelayProcess(settings)
    block_and_remove(relay.application, "s1")
    with Running(relay), Running(ConsumerProcess("enforce-block", settings)) as consumer:
        # The registration is not for it; the block is, and waits for the API with its partition.
        page = consumer.scrape_until(
            lambda page: (
                total(page, MESSAGES, consumer="enforce-block", outcome="failed") >= 1
                and total(page, MESSAGES, consumer="enforce-block", outcome="ignored") == 1
                and total(page, CONSUMER_LAG) == 1
            )
        )
    assert sample(page, MESSAGES, consumer="enforce-block", outcome="applied") == 0
    assert [v for v in lags(page) if v] == [1.0]


def lags(page: str) -> list[float]:
    return [sample(page, CONSUMER_LAG, **labels) or 0.0 for labels in series(page, CONSUMER_LAG)]


def test_the_api_shows_each_in_process_consumers_lag(settings: Settings) -> None:
    quick = settings.model_copy(update={"relay_idle_wait": 0.05, "service_api_url": NO_API})
    runtime = Runtime(quick)
    try:
        runtime.start_reactions()
        with TestClient(create_app(runtime=runtime)) as client:
            block_and_remove(runtime.application, "s1")
            head = runtime.application.head_position()
            page = eventually(
                lambda: client.get("/metrics").text,
                lambda page: (
                    sample(page, DISPATCHER_LAG, consumer="webhooks") == 0
                    and total(page, MESSAGES, consumer="enforce-block", outcome="failed") >= 1
                ),
            )
    finally:
        runtime.close()
    # webhooks took both events; enforce-block waits at the block for the API.
    assert sample(page, "governance_dispatcher_position", consumer="webhooks") == head
    assert sample(page, DISPATCHER_LAG, consumer="enforce-block") == 1
    assert sample(page, "governance_dispatcher_position", consumer="enforce-block") == head - 1
    assert sample(page, MESSAGES, consumer="webhooks", outcome="applied") == 2
    assert sample(page, MESSAGES, consumer="enforce-block", outcome="ignored") == 1
