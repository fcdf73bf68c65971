"""The consent screen's question asked again and again: answered from memory, kept current."""

from __future__ import annotations

import time

import httpx2
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from governance.auth import Role
from governance.runtime import Runtime
from projections.consent_inputs import ConsentInputsCache
from tests.conftest import Tokens

CONSENT = "/v1/sites/s1/consent"


def counted(client: TestClient, name: str, **labels: str) -> float:
    exposition = client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class Site:
    def __init__(self, client: TestClient, tokens: Tokens) -> None:
        self.client = client
        self.admin = tokens.header("olga", Role.ORG_ADMIN)
        self.ann = tokens.header("ann", Role.USER, sites=("s1",))
        self.position = 0
        self.track(client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=self.admin))

    def track(self, response: httpx2.Response) -> httpx2.Response:
        self.position = max(self.position, int(response.headers.get("X-Event-Position", 0)))
        return response

    def block(self, state: str = "blocked") -> None:
        body = {"state": state, "reason": "review"}
        self.track(
            self.client.put("/v1/sites/s1/policy/user-installs", json=body, headers=self.admin)
        )

    def ask(self, app_id: str = "wiki", **params: str) -> httpx2.Response:
        return self.client.get(CONSENT, params={"app_id": app_id, **params}, headers=self.ann)


def test_a_repeated_question_gets_the_same_answer_counted_logged_and_with_its_own_id(
    client: TestClient, tokens: Tokens
) -> None:
    site = Site(client, tokens)
    before = counted(client, "governance_consent_decisions_total")
    answers = [site.ask(min_position=str(site.position), scopes="read") for _ in range(5)]
    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {answers[0].content}
    assert answers[0].json() == {
        "decision": "allow",
        "reason": "allowed_by_policy",
        "message": None,
        "policy_version": 1,
        "can_request": False,
    }
    assert {a.headers["content-type"] for a in answers} == {"application/json"}
    assert len({a.headers["X-Request-Id"] for a in answers}) == 5
    assert counted(client, "governance_consent_decisions_total") == before + 5
    requests = counted(
        client,
        "governance_http_requests_total",
        route="/v1/sites/{site_id}/consent",
        status="200",
    )
    assert requests == 5


def test_min_position_closes_the_staleness_and_the_answer_follows_without_it(
    client: TestClient, tokens: Tokens
) -> None:
    site = Site(client, tokens)
    assert site.ask(min_position=str(site.position)).json()["decision"] == "allow"
    site.block()
    blocked = site.ask(min_position=str(site.position)).json()
    assert (blocked["decision"], blocked["policy_version"]) == ("deny", 2)
    site.block("allowed")
    # Without min_position the answer may lag the write, but only briefly.
    deadline = time.monotonic() + 5
    while site.ask().json()["policy_version"] != 3:
        assert time.monotonic() < deadline, "the consent answer did not follow the views"
        time.sleep(0.02)
    assert site.ask().json()["decision"] == "allow"


def test_errors_are_the_routes_whatever_was_asked_before(
    client: TestClient, tokens: Tokens
) -> None:
    site = Site(client, tokens)
    assert site.ask(min_position=str(site.position)).status_code == 200
    outsider = tokens.header("oscar", Role.USER, org="globex", sites=("s1",))
    stranger = tokens.header("zed", Role.USER, sites=("s2",))
    for who, status in ((outsider, 404), (stranger, 403)):
        for _ in range(2):
            answer = client.get(CONSENT, params={"app_id": "wiki"}, headers=who)
            assert answer.status_code == status
            assert set(answer.json()["error"]) >= {"code", "message"}
    twice = client.get(CONSENT, params=[("app_id", "a"), ("app_id", "b")], headers=site.ann)
    assert twice.status_code == 200 and twice.json()["decision"] == "allow"
    for bad in ({"app_id": "no spaces"}, {"app_id": "x", "scopes": ""}, {"min_position": "-1"}):
        answer = client.get(CONSENT, params=bad, headers=site.ann)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"
    unreached = site.ask(min_position=str(site.position + 1000))
    assert unreached.status_code == 422 and "min_position" in unreached.json()["error"]["message"]
    assert client.get(CONSENT, params={"app_id": "wiki"}).status_code == 401


def test_the_decision_inputs_in_memory_are_bounded_and_never_served_stale(
    runtime: Runtime, client: TestClient, tokens: Tokens
) -> None:
    Site(client, tokens)
    runtime.projector.wait_for(runtime.application.head_position(), 10)
    cache = ConsentInputsCache(runtime.views, runtime.projector, max_entries=5, max_staleness=60)
    cache.observe()
    for n in range(20):
        assert cache.load("s1", "wiki", f"user-{n}").policy is not None
    assert len(cache) == 5
    assert cache.cached("s1", "wiki", "user-0") is None
    assert cache.cached("s1", "wiki", "user-19") is not None
    # As if the follower had not looked at the views' position for longer than allowed:
    cache.max_staleness = 0.0
    assert cache.cached("s1", "wiki", "user-19") is None
