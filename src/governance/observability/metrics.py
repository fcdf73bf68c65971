"""Each process's Prometheus metrics, in its own registry.

Counters and histograms are updated where things happen (requests, commands, consent decisions);
lags are read when Prometheus scrapes, by cheap queries, so no thread polls the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from governance.reporting import CommandReport

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The consent path answers in about a millisecond: resolve that end finely.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Saves per event-store transaction (governance.groupcommit batches at most 64).
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# A `_created` series per counter doubles the scrape and tells nothing a restart does not.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The metrics one process exposes (each process has its own, as Prometheus expects)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        self.requests = Counter(
            "governance_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "governance_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "governance_commands",
            "Commands run by the application, by type and outcome"
            " (accepted, refused, conflicted, failed).",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.consent = Counter(
            "governance_consent_decisions",
            "Answers to consent screens, by decision (allow, deny) and reason.",
            ["decision", "reason"],
            registry=self.registry,
        )
        self.commit_batch_size = Histogram(
            "governance_commit_batch_size",
            "Commands' saves committed together in one event-store transaction.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.scraped = ScrapedGauges()
        self.registry.register(self.scraped)

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def command_done(self, report: CommandReport) -> None:
        self.commands.labels(report.command, str(report.outcome)).inc()

    def consent_decided(self, decision: str, reason: str) -> None:
        self.consent.labels(decision, reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve /metrics on its own port, for processes without an HTTP API (workers).

        Port 0 takes any free port (tests run many workers at once); the log names the one bound.
        """
        server, thread = start_http_server(port, host, registry=self.registry)
        served = MetricsServer(server, thread)
        log.info("serving /metrics on http://%s:%d/metrics", host, served.port)
        return served


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


Read = Callable[[], Mapping[str, float]]
# One value per combination of label values, in the order of the family's labels.
ReadLabelled = Callable[[], Mapping[tuple[str, ...], float]]


@dataclass(frozen=True)
class _Family:
    name: str
    documentation: str
    labels: tuple[str, ...]
    read: ReadLabelled


class ScrapedGauges(Collector):
    """Gauges computed at scrape time, one family per `track` call.

    A lag is registered in one line wherever its reader is built, e.g. the Kafka relay's:
    `metrics.scraped.track("governance_relay_lag_events", "...", "relay", lambda: ...)`.
    """

    def __init__(self) -> None:
        self._families: list[_Family] = []

    def track(self, name: str, documentation: str, label: str, read: Read) -> None:
        self.track_labelled(
            name, documentation, (label,), lambda: {(k,): v for k, v in read().items()}
        )

    def track_labelled(
        self, name: str, documentation: str, labels: tuple[str, ...], read: ReadLabelled
    ) -> None:
        self._families.append(_Family(name, documentation, labels, read))

    def collect(self) -> Iterable[Metric]:
        for family in self._families:
            try:
                values = family.read()
            except Exception as error:  # noqa: BLE001 - a store that is away must not fail the scrape
                log.warning("metric %s not read: %s", family.name, error)
                continue
            gauge = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            for key, value in sorted(values.items()):
                gauge.add_metric(key, value)
            yield gauge


def behind(head: int, positions: Mapping[str, int]) -> dict[str, float]:
    """How many log positions each reader is behind the head (ids have gaps: an upper bound)."""
    return {name: float(max(head - position, 0)) for name, position in positions.items()}
