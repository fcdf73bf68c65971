"""How fast the relay publishes a backlog: events/s from position 0 to the head, acknowledged.

    DATABASE_URL=postgresql://... KAFKA_BOOTSTRAP_SERVERS=host:port \\
        .venv/bin/python bench/relay_throughput.py --sites 100 --users 20 --apps 5

Writes into a fresh PostgreSQL schema and fresh topics (both removed at the end). The mix is
what a live system holds: mostly installs (each its own Grant stream), a few policy changes
per site (each also publishes a policy snapshot to the compacted topic).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime

import psycopg
from kafka.admin import KafkaAdminClient
from psycopg import sql

from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.site import Site, UserInstalls
from governance.relay.main import RelayProcess
from governance.runtime import Runtime, migrate


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--changes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=os.environ["DATABASE_URL"],
        database_schema=f"bench_{run}",
        kafka_bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        events_topic=f"bench-{run}.events",
        policy_topic=f"bench-{run}.site-policy",
        relay_batch_size=args.batch,
        jwt_secret="bench-" + run,  # type: ignore[arg-type]
    )
    migrate(settings)
    try:
        runtime = Runtime(settings)
        head = fill(runtime, args.sites, args.users, args.apps, args.changes)
        runtime.close()
        relay = RelayProcess(settings)
        relay.relay.run_batch()  # connect and create the topics outside the timing
        started = time.perf_counter()
        while relay.relay.run_batch():
            pass
        elapsed = time.perf_counter() - started
        assert relay.positions.get() == head
        relay.close()
        print(
            f"{head} events in {elapsed:.2f} s: {head / elapsed:,.0f} events/s"
            f" (batch {args.batch}, {args.sites * args.changes} policy snapshots)"
        )
    finally:
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(settings.database_schema)
                )
            )
        admin = KafkaAdminClient(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        admin.delete_topics([settings.events_topic, settings.policy_topic])
        admin.close()


if __name__ == "__main__":
    main()
