"""From a command accepted over HTTP to its event in a downstream consumer's hands, on Kafka.

    python -m bench.command_latency [--commands 3000] [--rate 50]

Needs DATABASE_URL (PostgreSQL) and KAFKA_BOOTSTRAP_SERVERS. Runs what production runs
(docker-compose.yml), each as its own process on a fresh schema and fresh topics: the API
(`governance serve`, projector off), the projector (`governance project`) and the relay
(`governance relay`). This process plays an end user and a downstream team at once: it installs
apps over HTTP at a steady rate, each as a different user, and a kafka-python consumer reads
the events topic. For each command, latency = the message's arrival at the consumer minus the
moment the 201 response was read; the two are matched by the response's X-Event-Position and
the CloudEvent's `position`. Both clocks are this process's, so no clock skew enters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx2
from kafka import KafkaConsumer, TopicPartition

from bench.relay_throughput import delete_topics
from bench.report import load_average, row, save
from bench.schemas import migrated_schema
from bench.servers import PYTHON, free_port, wait_for
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.domain.actor import Actor
from governance.runtime import Runtime

SECRET = "bench-latency-" + "x" * 32
LOGS = Path("test-output/bench")


@contextmanager
def service(name: str, args: list[str], env: dict[str, str]) -> Iterator[None]:
    """`governance <args>` as its own process, its output kept in test-output/bench/<name>.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "governance", *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=30)


class Arrivals:
    """A downstream consumer of the events topic, noting when each position arrived."""

    def __init__(self, servers: str, topic: str) -> None:
        self.at: dict[int, float] = {}
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=servers.split(","), enable_auto_commit=False
        )
        deadline = time.monotonic() + 60
        while not self._consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the relay did not create {topic} within 60 s")
            time.sleep(0.2)
            self._consumer.poll(0)  # refreshes metadata
        partitions = [
            TopicPartition(topic, p) for p in self._consumer.partitions_for_topic(topic) or ()
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_end(*partitions)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=100)
            arrived = time.perf_counter()
            for records in batches.values():
                for record in records:
                    self.at[int(json.loads(record.value)["position"])] = arrived

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def send_commands(api: str, tokens: list[str], rate: float, first_user: int) -> dict[int, float]:
    """Install an app once per token at `rate` per second; the position -> accepted moment."""
    accepted: dict[int, float] = {}
    interval = 1.0 / rate
    with httpx2.Client(base_url=api, timeout=10) as client:
        start = time.perf_counter()
        for n, token in enumerate(tokens):
            pause = start + n * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            response = client.post(
                "/v1/sites/s1/installations",
                json={
                    "app_id": f"app-{(first_user + n) % 50}",
                    "app_name": "App",
                    "scopes": ["read"],
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            done = time.perf_counter()
            assert response.status_code == 201, response.text
            accepted[int(response.headers["X-Event-Position"])] = done
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=50.0, help="commands per second")
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    servers = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    settings = Settings(
        database_url=os.environ["DATABASE_URL"],
        database_schema=f"bench_latency_{run}",
        kafka_bootstrap_servers=servers,
        events_topic=f"bench-{run}.events",
        policy_topic=f"bench-{run}.site-policy",
        jwt_secret=SECRET,
    )
    port = free_port()
    env = {
        "GOVERNANCE_DATABASE_SCHEMA": settings.database_schema,
        "GOVERNANCE_EVENTS_TOPIC": settings.events_topic,
        "GOVERNANCE_POLICY_TOPIC": settings.policy_topic,
        "GOVERNANCE_JWT_SECRET": SECRET,
        "GOVERNANCE_RUN_PROJECTOR": "false",
        "GOVERNANCE_METRICS_PORT": "0",
        "GOVERNANCE_LOG_LEVEL": "warning",
    }
    codec = TokenCodec(SECRET)
    total = args.warmup + args.commands
    tokens = [
        codec.issue(sub=f"user-{n}", org="acme", roles=[Role.USER], sites=["s1"])
        for n in range(total)
    ]
    with migrated_schema(settings), ExitStack() as stack:
        runtime = Runtime(settings.model_copy(update={"run_projector": False}))
        runtime.application.register_site("acme", "s1", "Bench site", Actor("olga"))
        runtime.close()
        stack.callback(delete_topics, servers, [settings.events_topic, settings.policy_topic])
        stack.enter_context(service("latency-relay", ["relay"], env))
        stack.enter_context(service("latency-projector", ["project"], env))
        stack.enter_context(service("latency-api", ["serve", "--port", str(port)], env))
        api = f"http://127.0.0.1:{port}"
        wait_for(api + "/ready", timeout=60)
        arrivals = Arrivals(servers, settings.events_topic)
        stack.callback(arrivals.close)
        print(f"sending {total:,} commands at {args.rate:g}/s; {load_average()}", flush=True)
        send_commands(api, tokens[: args.warmup], args.rate, 0)
        accepted = send_commands(api, tokens[args.warmup :], args.rate, args.warmup)
        deadline = time.monotonic() + 30
        while not accepted.keys() <= arrivals.at.keys() and time.monotonic() < deadline:
            time.sleep(0.1)
        missing = accepted.keys() - arrivals.at.keys()
        assert not missing, f"{len(missing)} accepted commands never reached the consumer"
        latencies = [(arrivals.at[p] - accepted[p]) * 1000 for p in accepted]
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(
        f"{len(latencies):,} commands: p50 {p50:.1f} ms, p90 {percentile(latencies, 0.9):.1f} ms,"
        f" p99 {p99:.1f} ms, max {max(latencies):.1f} ms; {load_average()}"
    )
    results = [
        row(
            f"command accepted -> consumer received, p50 (ms), {args.rate:g} commands/s",
            p50,
            None,
            "ms",
            "<= 20 ms",
        ),
        row(
            f"command accepted -> consumer received, p99 (ms), {args.rate:g} commands/s",
            p99,
            None,
            "ms",
            "<= 100 ms",
        ),
    ]
    save(results, LOGS / "results.jsonl")


if __name__ == "__main__":
    main()
