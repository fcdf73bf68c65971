"""The relay on the real broker: every event once per run, in order per site, and the policies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka.admin import ConfigResource, KafkaAdminClient

from governance.auth import Role
from governance.config import Settings
from governance.domain.actor import Actor
from governance.published import describe
from governance.relay.main import RelayProcess
from governance.runtime import Runtime, migrate
from tests.conftest import Tokens, drop_schema, make_settings
from tests.support.kafka import delete_topics, reading, with_kafka


@pytest.fixture
def relayed(settings: Settings, kafka_servers: str) -> Iterator[Settings]:
    configured = with_kafka(settings, kafka_servers)
    yield configured
    delete_topics(kafka_servers, configured.events_topic, configured.policy_topic)


class RunningRelay:
    def __init__(self, settings: Settings) -> None:
        self.process = RelayProcess(settings)
        self.thread = threading.Thread(target=self.process.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.process.close_soon()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.process.close()


def logged_events(runtime: Runtime) -> list[tuple[str, int, str]]:
    """(event id, position, site id) of every event in the log, in log order."""
    recorder, mapper = runtime.application.recorder, runtime.application.mapper
    described = [
        describe(n.id, mapper.to_domain_event(n))
        for n in recorder.select_notifications(start=1, limit=10_000)
    ]
    return [(d.event_id, d.position, d.site_id) for d in described]


def scenario(client: TestClient, tokens: Tokens) -> None:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    for site in ("s1", "s2"):
        client.put(f"/v1/orgs/acme/sites/{site}", json={"name": site.upper()}, headers=admin)
        user = tokens.header("ann", Role.USER, sites=(site,))
        for app in ("wiki", "chat"):
            body = {"app_id": app, "app_name": app.title(), "scopes": ["read"]}
            assert client.post(
                f"/v1/sites/{site}/installations", json=body, headers=user
            ).is_success
    block = {"state": "blocked", "reason": "audit", "existing_user_installs": "remove"}
    assert client.put("/v1/sites/s1/policy/user-installs", json=block, headers=admin).is_success
    for state in ("blocked", "allowed"):
        body = {"state": state}
        assert client.put("/v1/sites/s2/policy/user-installs", json=body, headers=admin).is_success
    approve = {"status": "approved", "app_name": "CRM", "scopes": ["read"], "reason": "vetted"}
    assert client.put("/v1/sites/s1/apps/crm/approval", json=approve, headers=admin).is_success
    block_app = {"status": "blocked", "app_name": "Spy", "reason": "leaks"}
    assert client.put("/v1/sites/s2/apps/spy/approval", json=block_app, headers=admin).is_success


def test_every_event_is_published_as_a_cloudevent_in_order_per_site(
    client: TestClient, runtime: Runtime, tokens: Tokens, relayed: Settings, kafka_servers: str
) -> None:
    scenario(client, tokens)
    logged = logged_events(runtime)
    relay = RunningRelay(relayed)
    try:
        with reading(kafka_servers, relayed.events_topic) as reader:
            reader.wait_for(len(logged))
            records = list(reader.records)
    finally:
        relay.stop()
    events = [reader_event(r) for r in records]
    assert sorted(e["id"] for e in events) == sorted(i for i, _, _ in logged)
    for record, event in zip(records, events, strict=True):
        assert record.key == event["subject"].encode()
        assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")
    for site in ("s1", "s2"):
        positions = [e["position"] for e in events if e["subject"] == site]
        assert positions == sorted(positions) == [p for _, p, s in logged if s == site]
    blocked = next(e for e in events if e["type"].endswith("user_installs.blocked.v1"))
    assert blocked["data"]["existing_user_installs"] == "remove"
    assert blocked["data"]["policy_version"] == 2
    assert (blocked["data"]["actor"], blocked["data"]["reason"]) == ("olga", "audit")


def reader_event(record: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(record.value)
    return loaded


def test_the_policy_topic_is_compacted_and_holds_each_sites_current_policy(
    client: TestClient, tokens: Tokens, relayed: Settings, kafka_servers: str
) -> None:
    scenario(client, tokens)
    relay = RunningRelay(relayed)
    try:
        with reading(kafka_servers, relayed.policy_topic) as reader:
            # Registered x2, s1 blocked, s2 blocked then allowed, an app approved on s1 and one
            # blocked on s2; installs make no new value.
            values = reader.wait_for(7)
            time.sleep(0.5)  # room for a value too many
            values = reader.events()
    finally:
        relay.stop()
    assert len(values) == 7
    latest = {v["site_id"]: v for v in values}
    assert (latest["s1"]["user_installs"], latest["s1"]["policy_version"]) == ("blocked", 2)
    assert (latest["s2"]["user_installs"], latest["s2"]["policy_version"]) == ("allowed", 3)
    assert latest["s1"]["reason"] == "audit" and latest["s1"]["updated_by"] == "olga"
    assert latest["s1"]["type"] == "io.governance.site.policy.v1"
    crm = latest["s1"]["approved_apps"]
    assert [(a["app_id"], a["scopes"], a["reason"]) for a in crm] == [("crm", ["read"], "vetted")]
    assert latest["s1"]["blocked_apps"] == []
    assert [a["app_id"] for a in latest["s2"]["blocked_apps"]] == ["spy"]
    # Each value is the policy as of its own event, not as of when the relay ran.
    first_s1 = next(v for v in values if v["site_id"] == "s1")
    assert (first_s1["user_installs"], first_s1["approved_apps"]) == ("allowed", [])
    admin = KafkaAdminClient(bootstrap_servers=kafka_servers)
    try:
        configs = admin.describe_configs(
            [ConfigResource("TOPIC", relayed.policy_topic, ["cleanup.policy"])]
        )
    finally:
        admin.close()
    assert configs["topic"][relayed.policy_topic]["cleanup.policy"]["value"] == "compact"


def test_on_postgres_the_relay_wakes_on_notify_not_on_its_timer(
    tmp_path: Path, kafka_servers: str
) -> None:
    settings = with_kafka(make_settings("postgres", tmp_path), kafka_servers, relay_idle_wait=60.0)
    migrate(settings)
    runtime = Runtime(settings)
    relay = RunningRelay(settings)
    try:
        with reading(kafka_servers, settings.events_topic) as reader:
            time.sleep(0.5)  # the relay is caught up and asleep, for up to 60 s
            started = time.monotonic()
            runtime.application.register_site("acme", "s1", "One", Actor("olga"))
            reader.wait_for(1, timeout=10)
            assert time.monotonic() - started < 10
    finally:
        relay.stop()
        runtime.close()
        drop_schema(settings)
        delete_topics(kafka_servers, settings.events_topic, settings.policy_topic)


def test_a_stopped_relay_resumes_where_it_stopped(
    client: TestClient, runtime: Runtime, tokens: Tokens, relayed: Settings, kafka_servers: str
) -> None:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    relay = RunningRelay(relayed)
    with reading(kafka_servers, relayed.events_topic) as reader:
        reader.wait_for(1)
        relay.stop()
        for state in ("blocked", "allowed", "blocked"):
            body = {"state": state}
            client.put("/v1/sites/s1/policy/user-installs", json=body, headers=admin)
        relay = RunningRelay(relayed)
        try:
            reader.wait_for(4)
        finally:
            relay.stop()
        time.sleep(0.5)  # time for a repeat to show up, were the relay to send one
        events = reader.events()
    assert [e["position"] for e in events] == [p for _, p, _ in logged_events(runtime)]
    assert [e["type"].split(".")[-2] for e in events] == [
        "registered",
        "blocked",
        "allowed",
        "blocked",
    ]
