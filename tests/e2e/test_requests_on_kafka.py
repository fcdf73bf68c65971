"""Requests and app lists reach downstream teams as CloudEvents on the topic (issue: approvals).

The relay publishes every event; a chat or mail integration needs nothing more than this.
"""

from __future__ import annotations

import httpx2

from consumers.cloudevents import parse
from tests.e2e.test_reactions import Stack, kafka_stack  # noqa: F401 - the fixture
from tests.support.kafka import reading

PREFIX = "io.governance.site."


def test_request_approve_install_deny_and_block_arrive_on_the_topic(
    kafka_stack: Stack,  # noqa: F811 - the fixture imported above
    kafka_servers: str,
) -> None:
    service = kafka_stack.service
    admin = service.token("alice", "org-admin")
    ann = service.token("ann", "user", "acme", "s1")
    with (
        httpx2.Client(base_url=service.url, timeout=10) as http,
        reading(kafka_servers, kafka_stack.events_topic) as downstream,
    ):
        assert http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin).is_success
        blocked = {"state": "blocked", "reason": "review"}
        assert http.put("/v1/sites/s1/policy/user-installs", json=blocked, headers=admin).is_success
        ask = {"app_id": "jira", "app_name": "Jira", "scopes": ["read"], "justification": "work"}
        created = http.post("/v1/sites/s1/app-requests", json=ask, headers=ann)
        assert created.status_code == 201, created.text
        case = created.json()["case_id"]
        approved = http.post(f"/v1/sites/s1/app-requests/{case}/approve", json={}, headers=admin)
        assert approved.is_success, approved.text
        install = {"app_id": "jira", "app_name": "Jira", "scopes": ["read"]}
        assert http.post("/v1/sites/s1/installations", json=install, headers=ann).status_code == 201
        other = {"app_id": "miner", "app_name": "Miner", "scopes": [], "justification": "fun"}
        second = http.post("/v1/sites/s1/app-requests", json=other, headers=ann).json()["case_id"]
        denial = {"reason": "not for work"}
        denied = http.post(f"/v1/sites/s1/app-requests/{second}/deny", json=denial, headers=admin)
        assert denied.is_success, denied.text
        block = {"status": "blocked", "reason": "mines crypto"}
        listed = http.put("/v1/sites/s1/apps/miner/approval", json=block, headers=admin)
        assert listed.is_success, listed.text
        expected = [
            "app_request.created.v1",
            "app_request.approved.v1",
            "app.approved.v1",
            "app.installed.v1",
            "app_request.created.v1",
            "app_request.denied.v1",
            "app.blocked.v1",
        ]
        downstream.wait_until(
            lambda events: any(e["type"] == PREFIX + "app.blocked.v1" for e in events)
        )
        events = [parse(record.value) for record in downstream.records]
    wanted = {PREFIX + name for name in expected}
    types = [e["type"].removeprefix(PREFIX) for e in events if e["type"] in wanted]
    assert sorted(types) == sorted(expected)
    positions = [e["position"] for e in sorted(events, key=lambda e: e["position"])]
    assert len(set(positions)) == len(positions)
    denial_event = next(e for e in events if e["type"].endswith("app_request.denied.v1"))
    assert (denial_event["subject"], denial_event["data"]["actor"]) == ("s1", "alice")
    assert denial_event["data"]["reason"] == "not for work"
