"""Org admins' webhooks: registered over HTTP, fed by the in-process reactions (no Kafka)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.runtime import Runtime
from tests.conftest import Tokens
from tests.support.receiver import Receiver, receiver

BLOCKED = "io.governance.site.user_installs.blocked.v1"
INSTALLED = "io.governance.site.app.installed.v1"
SECRET = "s3cret-of-sixteen+"


@pytest.fixture
def hooks_runtime(settings: Settings) -> Iterator[Runtime]:
    quick = settings.model_copy(
        update={
            "webhook_backoff": 0.05,
            "webhook_max_attempts": 3,
            "relay_idle_wait": 0.05,
            # No API listens here (TestClient serves in-process): enforce-block cannot act.
            "service_api_url": "http://127.0.0.1:9",
        }
    )
    live = Runtime(quick)
    live.start_projector()
    live.start_reactions()
    yield live
    live.close()


@pytest.fixture
def http(hooks_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=hooks_runtime)) as client:
        yield client


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


@pytest.fixture
def admin(hooks_runtime: Runtime) -> dict[str, str]:
    return Tokens(hooks_runtime).header("olga", Role.ORG_ADMIN)


def register(http: TestClient, admin: dict[str, str], url: str, *types: str) -> dict[str, Any]:
    body = {"url": url, "event_types": list(types), "secret": SECRET, "description": "SIEM"}
    created = http.post("/v1/orgs/acme/webhooks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    hook: dict[str, Any] = created.json()
    return hook


def test_org_admins_register_list_and_delete_webhooks(
    http: TestClient, admin: dict[str, str]
) -> None:
    hook = register(http, admin, "https://hooks.example.com/governance", BLOCKED, INSTALLED)
    assert hook["event_types"] == sorted([BLOCKED, INSTALLED])
    assert (hook["url"], hook["created_by"], hook["description"]) == (
        "https://hooks.example.com/governance",
        "olga",
        "SIEM",
    )
    assert "secret" not in hook
    listed = http.get("/v1/orgs/acme/webhooks", headers=admin).json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]]
    path = f"/v1/orgs/acme/webhooks/{hook['id']}"
    assert http.get(path, headers=admin).json() == hook
    assert http.delete(path, headers=admin).status_code == 204
    assert http.get(path, headers=admin).status_code == 404
    assert http.delete(path, headers=admin).json()["error"]["code"] == "not_found"
    assert http.get("/v1/orgs/acme/webhooks", headers=admin).json() == {"webhooks": []}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "url: Value error, must be an http:// or https://"),
        ({"url": "https:///no-host"}, "url: Value error, must name a host"),
        ({"url": "https://user:pw@hooks.example.com/"}, "must not hold credentials"),
        ({"event_types": ["io.governance.nope.v1"]}, "unknown event type io.governance.nope.v1"),
        ({"event_types": []}, "event_types: List should have at least 1 item"),
        ({"secret": "short"}, "secret: String should have at least 16 characters"),
        ({"colour": "red"}, "colour: unknown field, remove it"),
    ],
)
def test_bad_registrations_are_refused_with_a_reason(
    http: TestClient, admin: dict[str, str], change: dict[str, object], says: str
) -> None:
    body = {"url": "https://hooks.example.com/", "event_types": [BLOCKED], "secret": SECRET}
    refused = http.post("/v1/orgs/acme/webhooks", json=body | change, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_request"
    assert says in refused.json()["error"]["message"]


def test_only_org_admins_of_the_org_manage_webhooks(
    http: TestClient, hooks_runtime: Runtime, admin: dict[str, str]
) -> None:
    tokens = Tokens(hooks_runtime)
    hook = register(http, admin, "https://hooks.example.com/", BLOCKED)
    site_admin = tokens.header("sam", Role.SITE_ADMIN, sites=("s1",))
    foreign = tokens.header("mallory", Role.ORG_ADMIN, org="globex")
    body = {"url": "https://evil.example.com/", "event_types": [BLOCKED], "secret": SECRET}
    assert http.post("/v1/orgs/acme/webhooks", json=body, headers=site_admin).status_code == 403
    assert http.get("/v1/orgs/acme/webhooks", headers=site_admin).status_code == 403
    for method, path in [
        ("POST", "/v1/orgs/acme/webhooks"),
        ("GET", "/v1/orgs/acme/webhooks"),
        ("GET", f"/v1/orgs/acme/webhooks/{hook['id']}/dead-letters"),
        ("DELETE", f"/v1/orgs/acme/webhooks/{hook['id']}"),
    ]:
        answer = http.request(
            method, path, json=body if method == "POST" else None, headers=foreign
        )
        assert answer.status_code == 404, (method, path)
    # globex's own list does not show acme's endpoint either.
    assert http.get("/v1/orgs/globex/webhooks", headers=foreign).json() == {"webhooks": []}
    assert (
        http.get("/v1/orgs/acme/webhooks", headers=admin).json()["webhooks"][0]["id"] == hook["id"]
    )


def test_matching_events_arrive_signed_once_per_endpoint(
    http: TestClient, hooks_runtime: Runtime, admin: dict[str, str], hooks: Receiver
) -> None:
    register(http, admin, hooks.url + "/siem", BLOCKED, INSTALLED)
    register(http, admin, hooks.url + "/pager", BLOCKED)
    foreign = Tokens(hooks_runtime).header("gus", Role.ORG_ADMIN, org="globex")
    body = {"url": hooks.url + "/globex", "event_types": [BLOCKED], "secret": SECRET}
    assert http.post("/v1/orgs/globex/webhooks", json=body, headers=foreign).status_code == 201
    user = Tokens(hooks_runtime).header("ann", Role.USER, sites=("s1",))
    http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    app = {"app_id": "wiki-sync", "app_name": "Wiki Sync", "scopes": ["read"]}
    assert http.post("/v1/sites/s1/installations", json=app, headers=user).status_code == 201
    block = {"state": "blocked", "reason": "vendor review"}
    assert http.put("/v1/sites/s1/policy/user-installs", json=block, headers=admin).is_success

    siem = hooks.wait_for("/siem", 2)
    pager = hooks.wait_for("/pager", 1)
    assert [d.event["type"] for d in siem] == [INSTALLED, BLOCKED]
    assert [d.event["type"] for d in pager] == [BLOCKED]
    for delivery in [*siem, *pager]:
        assert delivery.signed_with(SECRET)
        assert not delivery.signed_with(SECRET + "x")
        assert delivery.headers["content-type"].startswith("application/cloudevents+json")
        assert delivery.headers["x-governance-event"] == delivery.event["type"]
        assert delivery.event["specversion"] == "1.0"
        assert delivery.event["subject"] == "s1"
    blocked = pager[0].event
    assert blocked["data"]["reason"] == "vendor review"
    assert blocked["data"]["actor"] == "olga"
    assert blocked["id"] == siem[1].event["id"]
    assert siem[1].headers["x-governance-delivery"] != pager[0].headers["x-governance-delivery"]
    assert hooks.at("/globex") == []  # another org's endpoint hears nothing of acme


def test_failing_endpoints_are_retried_then_dead_lettered(
    http: TestClient, admin: dict[str, str], hooks: Receiver
) -> None:
    flaky_calls: list[str] = []

    def answer(path: str) -> int:
        if path == "/down":
            return 500
        flaky_calls.append(path)
        return 503 if len(flaky_calls) <= 2 else 204

    hooks.status_for = answer
    down = register(http, admin, hooks.url + "/down", BLOCKED)
    register(http, admin, hooks.url + "/flaky", BLOCKED)
    unreachable = register(http, admin, "http://127.0.0.1:9/closed", BLOCKED)
    http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    http.put("/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=admin)

    attempts = hooks.wait_for("/down", 3)
    flaky = hooks.wait_for("/flaky", 3)
    # The same delivery id on every attempt: receivers drop repeats by it.
    assert len({d.headers["x-governance-delivery"] for d in attempts}) == 1
    assert len({d.headers["x-governance-delivery"] for d in flaky}) == 1
    letters = wait_for_dead_letter(http, admin, down["id"])
    assert letters[0]["attempts"] == 3
    assert letters[0]["last_status"] == 500
    assert letters[0]["event"] == attempts[0].event
    assert letters[0]["delivery_id"] == attempts[0].headers["x-governance-delivery"]
    assert letters[0]["event_type"] == BLOCKED
    refused = wait_for_dead_letter(http, admin, unreachable["id"])
    assert refused[0]["last_status"] is None and refused[0]["last_error"]
    flaky_hook = http.get("/v1/orgs/acme/webhooks", headers=admin).json()["webhooks"][1]
    dead = f"/v1/orgs/acme/webhooks/{flaky_hook['id']}/dead-letters"
    assert http.get(dead, headers=admin).json()["dead_letters"] == []
    assert len(hooks.at("/flaky")) == 3  # delivered on the third attempt, then never again


def test_a_stuck_reaction_holds_up_no_other(
    http: TestClient, hooks_runtime: Runtime, admin: dict[str, str], hooks: Receiver
) -> None:
    register(http, admin, hooks.url + "/siem", BLOCKED, INSTALLED)
    user = Tokens(hooks_runtime).header("ann", Role.USER, sites=("s1",))
    http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    app = {"app_id": "wiki-sync", "app_name": "Wiki Sync", "scopes": ["read"]}
    http.post("/v1/sites/s1/installations", json=app, headers=user)
    # enforce-block cannot reach its API, so it retries this block; the webhooks go on.
    block = {"state": "blocked", "existing_user_installs": "remove"}
    http.put("/v1/sites/s1/policy/user-installs", json=block, headers=admin)
    http.put("/v1/sites/s1/policy/user-installs", json={"state": "allowed"}, headers=admin)
    last = http.post("/v1/sites/s1/installations", json=app | {"app_id": "chat"}, headers=user)
    delivered = hooks.wait_for("/siem", 3)
    assert [d.event["type"] for d in delivered] == [INSTALLED, BLOCKED, INSTALLED]
    seen = {"min_position": last.headers["X-Event-Position"]}
    apps = http.get("/v1/sites/s1/connected-apps", params=seen, headers=admin).json()["apps"]
    assert sorted(a["app_id"] for a in apps) == ["chat", "wiki-sync"]  # nothing removed


def wait_for_dead_letter(
    http: TestClient, admin: dict[str, str], hook_id: str
) -> list[dict[str, object]]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = http.get(f"/v1/orgs/acme/webhooks/{hook_id}/dead-letters", headers=admin).json()
        if body["dead_letters"]:
            letters: list[dict[str, object]] = body["dead_letters"]
            return letters
        time.sleep(0.05)
    raise TimeoutError("no dead letter within 20 s")
