"""What the relay process measures: how far it is behind the log, what it published, what failed."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Sequence

from prometheus_client import Counter, Histogram

from governance.observability.metrics import Metrics, behind
from governance.relay.messages import Message, Topics
from governance.relay.positions import PositionStore

# A batch is a read, a produce of up to a few hundred messages and a write: milliseconds to a
# second when all is well; the broker's timeout (seconds) when it is not.
_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CAUSES = ("kafka", "event_store")


class RelayMeter:
    """Counts what each batch came to (a `RelayObserver`)."""

    def __init__(self, metrics: Metrics, topics: Topics) -> None:
        self.messages = Counter(
            "governance_relay_published_messages",
            "Messages the broker acknowledged, by topic (events, and the policy snapshots).",
            ["topic"],
            registry=metrics.registry,
        )
        self.failures = Counter(
            "governance_relay_failures",
            "Batches that failed and go again from the recorded position, by cause"
            " (kafka, event_store).",
            ["cause"],
            registry=metrics.registry,
        )
        self.duration = Histogram(
            "governance_relay_batch_duration_seconds",
            "From reading a batch of events to recording its position, for batches that held any.",
            buckets=_BATCH_BUCKETS,
            registry=metrics.registry,
        )
        # Every series from the start, at 0, so a rate over the first failure is not missed.
        for topic in (topics.events, topics.policy):
            self.messages.labels(topic)
        for cause in CAUSES:
            self.failures.labels(cause)

    def published(self, messages: Sequence[Message], seconds: float) -> None:
        for topic, count in Tally(m.topic for m in messages).items():
            self.messages.labels(topic).inc(count)
        self.duration.observe(seconds)

    def failed(self, cause: str) -> None:
        self.failures.labels(cause).inc()


def relay_metrics(
    name: str, head: Callable[[], int], positions: PositionStore, topics: Topics
) -> tuple[Metrics, RelayMeter]:
    """The relay process's metrics; its lag is read when scraped, like the projections'."""
    metrics = Metrics()
    metrics.scraped.track(
        "governance_event_log_head_position",
        "The last position written to the event log.",
        "application",
        lambda: {name: float(head())},
    )
    metrics.scraped.track(
        "governance_relay_position",
        "The last log position the broker acknowledged, by relay (its events topic).",
        "relay",
        lambda: {positions.name: float(positions.get())},
    )
    metrics.scraped.track(
        "governance_relay_lag_events",
        "Log positions the relay is behind the head (an upper bound: ids may have gaps).",
        "relay",
        lambda: behind(head(), {positions.name: positions.get()}),
    )
    return metrics, RelayMeter(metrics, topics)
