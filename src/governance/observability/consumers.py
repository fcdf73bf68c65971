"""What consumers measure, in their own processes (Kafka) or in the API's (the embedded default):
what became of the events each was given, and how far each is behind."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import Counter

from consumers.kafka_source import KafkaSource
from consumers.processing import Outcome, Processor
from governance.observability.metrics import Metrics, behind
from governance.relay.embedded import EmbeddedDispatcher


def count_outcomes(metrics: Metrics, processors: Sequence[Processor]) -> None:
    """One counter series per consumer and outcome, every one present from the start at 0."""
    messages = Counter(
        "governance_consumer_messages",
        "Events given to each consumer, by outcome: applied, duplicate (applied before, dropped),"
        " ignored (a type it does not react to), invalid (not of the contract: skipped),"
        " failed (retried later).",
        ["consumer", "outcome"],
        registry=metrics.registry,
    )
    for processor in processors:
        for outcome in Outcome:
            messages.labels(processor.name, outcome)
        processor.observers.append(lambda name, outcome: messages.labels(name, outcome).inc())


def consumer_metrics(processor: Processor, source: Callable[[], KafkaSource | None]) -> Metrics:
    """A consumer process's metrics; its lag is the polling thread's last measure."""
    metrics = Metrics()
    count_outcomes(metrics, [processor])

    def lag() -> dict[tuple[str, ...], float]:
        running = source()
        return dict(running.lag) if running is not None else {}

    metrics.scraped.track_labelled(
        "governance_consumer_lag_messages",
        "Messages on each partition not yet processed and committed by the consumer group"
        " (end offset minus committed offset, as of the consumer's last poll).",
        ("group", "topic", "partition"),
        lag,
    )
    return metrics


def dispatcher_metrics(
    metrics: Metrics, head: Callable[[], int], dispatchers: Sequence[EmbeddedDispatcher]
) -> None:
    """The embedded default's consumers, fed from the event log in the API's process."""
    count_outcomes(metrics, [d.processor for d in dispatchers])

    def positions() -> dict[str, int]:
        return {d.processor.name: d.position() for d in dispatchers}

    metrics.scraped.track(
        "governance_dispatcher_position",
        "The last log position each in-process consumer has been given (embedded default).",
        "consumer",
        lambda: {name: float(p) for name, p in positions().items()},
    )
    metrics.scraped.track(
        "governance_dispatcher_lag_events",
        "Log positions each in-process consumer is behind the head (an upper bound: ids may"
        " have gaps).",
        "consumer",
        lambda: behind(head(), positions()),
    )
