"""The relay publishing a backlog to Kafka, against kafka-python producing the same messages.

    python -m bench.relay_throughput [--sites 200] [--rounds 3] [--profile]

Needs DATABASE_URL (PostgreSQL) and KAFKA_BOOTSTRAP_SERVERS. Writes a backlog into a fresh
PostgreSQL schema with the real domain: mostly installs (each its own Grant stream), a few policy
changes per site (each also publishes a policy snapshot to the compacted topic). Each round:
- baseline: a KafkaProducer with the relay's own settings (`producer_config`: acks=all,
  idempotent, same batch size, linger and compression) sends the very messages the relay sends
  (same topics, keys, values and headers, built beforehand) and flushes once at the end;
- figure: the real relay (`RelayProcess`) publishes the log from position 0 to the head, each
  batch acknowledged before its position is recorded, exactly as `governance relay` does.
Each round uses fresh topics, so both write into empty partitions. Medians of the rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from bench.report import load_average, median, row, save
from bench.schemas import migrated_schema
from governance.application import GovernanceApplication
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.site import Site, UserInstalls
from governance.eventstore import event_store_env
from governance.relay.main import RelayProcess, local_pages, producer_config
from governance.relay.messages import Message
from governance.relay.pages import ChildPages
from governance.relay.publisher import HEADERS
from governance.relay.topics import ensure_topics
from governance.runtime import Runtime


def fill(runtime: Runtime, sites: int, users: int, apps: int, changes: int) -> int:
    admin = Actor("olga")
    for n in range(sites):
        site = Site.register("acme", f"s{n}", f"Site {n}", admin)
        grants = []
        for app in range(apps):
            request = InstallRequest("acme", f"s{n}", f"app{app}", f"App {app}", ["read"], 1)
            for user in range(users):
                grant = Grant.open(f"s{n}", f"app{app}", f"u{user}", datetime.now(UTC))
                grant.install(
                    request, Actor(f"u{user}"), installed_by=InstalledBy.USER, removal_epoch=0
                )
                grants.append(grant)
        for change in range(changes):
            state = UserInstalls.BLOCKED if change % 2 == 0 else UserInstalls.ALLOWED
            site.set_user_installs(state, admin)
        runtime.application.save(site, *grants)
    return runtime.application.head_position()


def fresh_topics(settings: Settings) -> Settings:
    run = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={"events_topic": f"bench-{run}.events", "policy_topic": f"bench-{run}.site-policy"}
    )


def messages_of(settings: Settings, head: int) -> list[Message]:
    """Every message the relay would send for the log, built with the relay's own code."""
    application = GovernanceApplication(env=event_store_env(settings, create_table=False))
    try:
        pages = local_pages(application, settings)
        return list(pages.writer(pages.recorder.select_raw(0, head, head)))
    finally:
        application.close()


@dataclass
class Timing:
    """Wall-clock seconds, and the CPU seconds this process's threads used meanwhile (and the
    relay's pages process, when it has one)."""

    seconds: float = 0.0
    cpu: float = 0.0
    child_cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    yield timing
    timing.seconds = time.perf_counter() - wall
    timing.cpu = time.process_time() - cpu


def produce_directly(settings: Settings, messages: list[Message]) -> Timing:
    """kafka-python alone: send every message with the relay's producer settings, flush, check."""
    defaults = Settings.model_fields
    topics = {
        defaults["events_topic"].default: settings.events_topic,
        defaults["policy_topic"].default: settings.policy_topic,
    }
    ensure_topics(settings)
    producer = KafkaProducer(**producer_config(settings))
    try:
        producer.partitions_for(settings.events_topic)  # metadata outside the timing
        producer.partitions_for(settings.policy_topic)
        with timed() as timing:
            futures = [
                producer.send(topics[m.topic], key=m.key, value=m.value, headers=HEADERS)
                for m in messages
            ]
            producer.flush(timeout=settings.kafka_timeout)
        assert all(future.succeeded() for future in futures)
        return timing
    finally:
        producer.close(timeout=settings.kafka_timeout)


def relay_backlog(settings: Settings, head: int, profile: Path | None) -> Timing:
    """The real relay from position 0 to the head; the producer is connected outside the timing."""
    process = RelayProcess(settings)
    try:
        process.relay.connect()  # and the pages process, if any
        pages = process.relay.pages
        gc.freeze()  # as `governance relay` does before its loop
        profiler = cProfile.Profile() if profile else None
        child_cpu = pages.cpu_seconds if isinstance(pages, ChildPages) else 0.0
        with timed() as timing:
            if profiler:
                profiler.enable()
            while process.relay.run_batch():
                pass
            if profiler:
                profiler.disable()
        if isinstance(pages, ChildPages):
            timing.child_cpu = pages.cpu_seconds - child_cpu
        assert process.positions.get() == head, "the relay stopped short of the head"
        if profiler and profile:
            profile.parent.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(profile)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return timing
    finally:
        process.close()


def delete_topics(servers: str, topics: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=servers.split(","))
    try:
        existing = set(admin.list_topics())
        admin.delete_topics([t for t in topics if t in existing])
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=200, help="each holds users x apps installs")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--changes", type=int, default=4, help="policy changes per site")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, help="relay_batch_size (default: the setting's)")
    parser.add_argument("--profile", action="store_true", help="cProfile the relay's last round")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=os.environ["DATABASE_URL"],
        database_schema=f"bench_relay_{run}",
        kafka_bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        jwt_secret="bench-" + run * 4,
    )
    if args.batch:
        settings = settings.model_copy(update={"relay_batch_size": args.batch})
    used_topics: list[str] = []
    with migrated_schema(settings):
        runtime = Runtime(settings)
        head = fill(runtime, args.sites, args.users, args.apps, args.changes)
        runtime.close()
        messages = messages_of(settings, head)
        print(f"backlog: {head:,} events, {len(messages):,} messages; {load_average()}")
        relay_rates, direct_rates = [], []
        try:
            for n in range(args.rounds):
                direct = fresh_topics(settings)
                relayed = fresh_topics(settings)
                used_topics += [direct.events_topic, direct.policy_topic]
                used_topics += [relayed.events_topic, relayed.policy_topic]
                baseline = produce_directly(direct, messages)
                last = n == args.rounds - 1
                profile = Path("test-output/bench/relay.prof") if args.profile and last else None
                relayed_timing = relay_backlog(relayed, head, profile)
                direct_rates.append(head / baseline.seconds)
                relay_rates.append(head / relayed_timing.seconds)
                print(
                    f"  round {n + 1}: relay {relay_rates[-1]:,.0f} events/s"
                    f" ({relayed_timing.cpu / head * 1e6:.0f} us CPU/event in this process"
                    f" + {relayed_timing.child_cpu / head * 1e6:.0f} in its pages process),"
                    f" kafka-python directly {direct_rates[-1]:,.0f} events/s"
                    f" ({baseline.cpu / head * 1e6:.0f} us CPU/event); {load_average()}",
                    flush=True,
                )
        finally:
            assert settings.kafka_bootstrap_servers is not None
            delete_topics(settings.kafka_bootstrap_servers, used_topics)
    result = row(
        f"relay to Kafka, {head:,}-event backlog (events/s) vs kafka-python directly",
        median(relay_rates),
        median(direct_rates),
        "events/s",
        ">= 0.7",
    )
    save([result], Path("test-output/bench/results.jsonl"))


if __name__ == "__main__":
    main()
