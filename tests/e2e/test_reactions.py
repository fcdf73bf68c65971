"""Reactions to "user installs blocked", as admins, auditors and downstream teams meet them.

Over Kafka: `governance serve`, `relay`, `consume enforce-block` and `consume webhooks` as
separate processes, and a kafka-python reader written as a downstream team would. Embedded:
`governance serve` alone, without Kafka, does the same.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx2
import pytest

from consumers.cloudevents import parse
from tests.conftest import BACKENDS, make_settings
from tests.e2e.conftest import GOVERNANCE, Service, _run, free_port
from tests.integration.test_observability import sample, series
from tests.integration.test_worker_metrics import eventually, total
from tests.support.kafka import delete_topics, reading
from tests.support.receiver import Receiver, receiver

BLOCKED = "io.governance.site.user_installs.blocked.v1"
REMOVED = "io.governance.site.app.removed.v1"
SECRET = "webhook-secret-0123456789"
REASON = "user installs blocked under policy v2 with existing_user_installs=remove"


@dataclass
class Stack:
    service: Service
    events_topic: str
    # Each worker's log (relay, enforce-block, webhooks): it names the worker's /metrics port.
    logs: dict[str, Path]

    def metrics(self, worker: str) -> str:
        """A scrape of the worker's own /metrics, found at the port its log names."""
        deadline = time.monotonic() + 30
        while not (found := _SERVING.search(self.logs[worker].read_text(encoding="utf-8"))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{worker} logged no /metrics address")
            time.sleep(0.1)
        return httpx2.get(found.group(1), timeout=5).text


_SERVING = re.compile(r"serving /metrics on (http://[^\s\"]+)")


@pytest.fixture(params=BACKENDS)
def kafka_stack(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_servers: str
) -> Iterator[Stack]:
    settings = make_settings(request.param, tmp_path)
    run = uuid.uuid4().hex[:10]
    topic = f"e2e-{run}.events"
    port = free_port()
    env = {
        **os.environ,
        "GOVERNANCE_DATA_DIR": str(settings.data_dir),
        "GOVERNANCE_JWT_SECRET": "e2e-" + uuid.uuid4().hex,
        "PORT": str(port),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
        "GOVERNANCE_EVENTS_TOPIC": topic,
        "GOVERNANCE_POLICY_TOPIC": f"e2e-{run}.site-policy",
        "GOVERNANCE_CONSUMER_GROUP_PREFIX": f"e2e-{run}.",
        "GOVERNANCE_RELAY_IDLE_WAIT": "0.1",
        "GOVERNANCE_WEBHOOK_BACKOFF": "0.1",
        # Every worker's /metrics on a free port of its own: tests run many at once.
        "GOVERNANCE_METRICS_PORT": "0",
    }
    env.pop("DATABASE_URL", None)
    processes: list[subprocess.Popen[bytes]] = []
    with (tmp_path / "server.log").open("wb") as log:
        for service in _run(settings, env, processes, log, port):
            logs = {}
            for command in (["relay"], ["consume", "enforce-block"], ["consume", "webhooks"]):
                logs[command[-1]] = tmp_path / f"{command[-1]}.log"
                with logs[command[-1]].open("wb") as worker_log:
                    processes.append(
                        subprocess.Popen([*GOVERNANCE, *command], env=env, stderr=worker_log)
                    )
            yield Stack(service, topic, logs)
    delete_topics(kafka_servers, topic, env["GOVERNANCE_POLICY_TOPIC"])


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def prepare(http: httpx2.Client, service: Service, hooks: Receiver) -> dict[str, str]:
    """Site s1 with two apps users installed and one an admin installed; a webhook to `hooks`."""
    admin = service.token("alice", "org-admin")
    user = service.token("ann", "user", "acme", "s1")
    hook = {"url": hooks.url + "/siem", "event_types": [BLOCKED, REMOVED], "secret": SECRET}
    assert http.post("/v1/orgs/acme/webhooks", json=hook, headers=admin).status_code == 201
    assert http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin).is_success
    for app_id, who in (("wiki-sync", user), ("chat-bot", user), ("admin-tool", admin)):
        app = {"app_id": app_id, "app_name": app_id.title(), "scopes": ["read"]}
        assert http.post("/v1/sites/s1/installations", json=app, headers=who).is_success
    return admin


def block_and_remove(http: httpx2.Client, admin: dict[str, str]) -> None:
    body = {"state": "blocked", "reason": "vendor review", "existing_user_installs": "remove"}
    assert http.put("/v1/sites/s1/policy/user-installs", json=body, headers=admin).is_success


def wait_for_apps(http: httpx2.Client, admin: dict[str, str], expected: list[str]) -> None:
    deadline = time.monotonic() + 30
    listed: object = None
    while time.monotonic() < deadline:
        answer = http.get("/v1/sites/s1/connected-apps", headers=admin)
        # 404 until the projector (its own process on PostgreSQL) has seen the site.
        listed = answer.json()["apps"] if answer.status_code == 200 else answer.text
        if isinstance(listed, list) and sorted(a["app_id"] for a in listed) == expected:
            return
        time.sleep(0.1)
    raise TimeoutError(f"connected apps are still {listed}")


def assert_history_names_the_service_and_the_admin(
    http: httpx2.Client, admin: dict[str, str]
) -> None:
    entries = http.get("/v1/sites/s1/history", headers=admin).json()["events"]
    removals = [e for e in entries if e["type"] == "AppRemoved"]
    assert sorted(e["app_id"] for e in removals) == ["chat-bot", "wiki-sync"]
    for entry in removals:
        assert (entry["actor"], entry["on_behalf_of"], entry["reason"]) == (
            "svc:enforce-block",
            "alice",
            REASON,
        )
        assert entry["request_id"].startswith("enforce-block:")


def assert_signed_deliveries(hooks: Receiver) -> None:
    deliveries = hooks.wait_for("/siem", 3)
    assert sorted(d.event["type"] for d in deliveries) == sorted([BLOCKED, REMOVED, REMOVED])
    assert all(d.signed_with(SECRET) for d in deliveries)
    assert len({d.headers["x-governance-delivery"] for d in deliveries}) == 3


def test_over_kafka_a_block_with_remove_is_enforced_and_published(
    kafka_stack: Stack, hooks: Receiver, kafka_servers: str
) -> None:
    service = kafka_stack.service
    with (
        httpx2.Client(base_url=service.url, timeout=10) as http,
        reading(kafka_servers, kafka_stack.events_topic) as downstream,
    ):
        admin = prepare(http, service, hooks)
        block_and_remove(http, admin)
        downstream.wait_until(lambda events: sum(e["type"] == REMOVED for e in events) == 2)
        events = [parse(record.value) for record in downstream.records]
        wait_for_apps(http, admin, ["admin-tool"])
        assert_history_names_the_service_and_the_admin(http, admin)
    blocked = next(e for e in events if e["type"] == BLOCKED)
    assert blocked["subject"] == "s1"
    assert blocked["data"]["existing_user_installs"] == "remove"
    assert (blocked["data"]["actor"], blocked["data"]["policy_version"]) == ("alice", 2)
    removed = [e for e in events if e["type"] == REMOVED]
    assert sorted(e["data"]["app_id"] for e in removed) == ["chat-bot", "wiki-sync"]
    for event in removed:
        assert event["position"] > blocked["position"]
        assert event["data"]["reason"] == REASON
        assert (event["data"]["actor"], event["data"]["on_behalf_of"]) == (
            "svc:enforce-block",
            "alice",
        )
    assert_signed_deliveries(hooks)
    assert_workers_caught_up(kafka_stack, published=len(events))


def assert_workers_caught_up(stack: Stack, published: int) -> None:
    """What Prometheus scrapes from each worker once the reactions are done."""
    topic = stack.events_topic
    relay = eventually(
        lambda: stack.metrics("relay"),
        lambda page: sample(page, "governance_relay_lag_events", relay=topic) == 0,
    )
    assert sample(relay, "governance_relay_published_messages_total", topic=topic) == published
    for consumer, applied in (("enforce-block", 1), ("webhooks", published)):
        page = eventually(partial(stack.metrics, consumer), partial(caught_up, published, topic))
        messages = "governance_consumer_messages_total"
        assert sample(page, messages, consumer=consumer, outcome="applied") == applied


def caught_up(published: int, topic: str, page: str) -> bool:
    """Given every message, and none left behind on any partition."""
    return (
        total(page, "governance_consumer_messages_total") == published
        and len(series(page, "governance_consumer_lag_messages")) > 0
        and total(page, "governance_consumer_lag_messages", topic=topic) == 0
    )


def test_without_kafka_the_run_command_alone_enforces_the_block(
    service: Service, hooks: Receiver
) -> None:
    with httpx2.Client(base_url=service.url, timeout=10) as http:
        admin = prepare(http, service, hooks)
        block_and_remove(http, admin)
        wait_for_apps(http, admin, ["admin-tool"])
        assert_history_names_the_service_and_the_admin(http, admin)
    assert_signed_deliveries(hooks)


def test_keep_removes_nothing_and_approved_apps_stay(service: Service, hooks: Receiver) -> None:
    with httpx2.Client(base_url=service.url, timeout=10) as http:
        admin = prepare(http, service, hooks)
        policy = "/v1/sites/s1/policy/user-installs"
        assert http.put(policy, json={"state": "blocked"}, headers=admin).is_success
        kept = hooks.wait_for("/siem", 1)
        time.sleep(0.5)  # room for a removal, were one to happen
        wait_for_apps(http, admin, ["admin-tool", "chat-bot", "wiki-sync"])
        assert http.put(policy, json={"state": "allowed"}, headers=admin).is_success
        approval = {"status": "approved", "scopes": ["read"], "reason": "vetted"}
        put = http.put("/v1/sites/s1/apps/chat-bot/approval", json=approval, headers=admin)
        assert put.status_code == 200, put.text
        block_and_remove(http, admin)
        wait_for_apps(http, admin, ["admin-tool", "chat-bot"])
        deliveries = hooks.wait_for("/siem", 3)
    assert kept[0].event["data"]["existing_user_installs"] == "keep"
    assert [d.event["data"].get("app_id") for d in deliveries] == [None, None, "wiki-sync"]
    assert deliveries[2].event["data"]["reason"] == (
        "user installs blocked under policy v4 with existing_user_installs=remove"
    )
