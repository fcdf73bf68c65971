"""Metrics, request ids and log lines, as an operator scraping and reading them would see them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.domain.actor import Actor
from governance.observability.logs import json_formatter
from governance.runtime import Runtime
from tests.conftest import Tokens

CONSENT = "/v1/sites/{site_id}/consent"
INSTALLS = "/v1/sites/{site_id}/installations"


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of one series in a /metrics page, or None when it is absent."""
    for family in text_string_to_metric_families(exposition):
        for metric in family.samples:
            if metric.name == name and all(metric.labels.get(k) == v for k, v in labels.items()):
                return float(metric.value)
    return None


def series(exposition: str, name: str) -> list[dict[str, str]]:
    return [
        metric.labels
        for family in text_string_to_metric_families(exposition)
        for metric in family.samples
        if metric.name == name
    ]


class Traffic:
    """An org admin, a site admin and an end user of site s1 of acme."""

    def __init__(self, client: TestClient, tokens: Tokens) -> None:
        self.client = client
        self.admin = tokens.header("olga", Role.ORG_ADMIN)
        self.user = tokens.header("ann", Role.USER, sites=("s1",))
        self.position = 0

    def send(self, method: str, path: str, who: dict[str, str], **kwargs: Any) -> Any:
        response = self.client.request(
            method, path, headers=who | kwargs.pop("headers", {}), **kwargs
        )
        self.position = max(self.position, int(response.headers.get("X-Event-Position", 0)))
        return response

    def scenario(self) -> None:
        app = {"app_id": "wiki", "app_name": "Wiki", "scopes": ["read"]}
        self.send("PUT", "/v1/orgs/acme/sites/s1", self.admin, json={"name": "One"})
        assert (
            self.send("POST", "/v1/sites/s1/installations", self.user, json=app).status_code == 201
        )
        block = {"state": "blocked", "reason": "review"}
        self.send("PUT", "/v1/sites/s1/policy/user-installs", self.admin, json=block)
        stale = self.send(
            "PUT",
            "/v1/sites/s1/policy/user-installs",
            self.admin,
            json={"state": "allowed"},
            headers={"If-Match": '"1"'},
        )
        assert stale.status_code == 412
        other = {"app_id": "chat", "app_name": "Chat", "scopes": []}
        assert (
            self.send("POST", "/v1/sites/s1/installations", self.user, json=other).status_code
            == 403
        )
        consent = self.send(
            "GET", f"/v1/sites/s1/consent?app_id=chat&min_position={self.position}", self.user
        )
        assert consent.json()["decision"] == "deny"
        assert self.send("GET", "/v1/sites/s1/consent?app_id=wiki", self.user).json()[
            "decision"
        ] == ("allow")
        assert self.send("GET", "/v1/sites/s1/no-such-thing", self.user).status_code == 404


def test_metrics_count_requests_commands_and_consent_decisions(
    client: TestClient, tokens: Tokens
) -> None:
    Traffic(client, tokens).scenario()
    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text

    requests = "governance_http_requests_total"
    assert sample(text, requests, method="GET", route=CONSENT, status="200") == 2
    assert sample(text, requests, method="POST", route=INSTALLS, status="403") == 1
    assert sample(text, requests, method="GET", route="unmatched", status="404") == 1
    # Route templates only: no series carries a raw path with a site id in it.
    assert all("/s1/" not in labels["route"] for labels in series(text, requests))
    assert sample(text, "governance_http_request_duration_seconds_count", route=CONSENT) == 2

    commands = "governance_commands_total"
    assert sample(text, commands, command="register_site", outcome="accepted") == 1
    assert sample(text, commands, command="install_app", outcome="accepted") == 1
    assert sample(text, commands, command="install_app", outcome="refused") == 1
    assert sample(text, commands, command="set_user_installs", outcome="accepted") == 1
    assert sample(text, commands, command="set_user_installs", outcome="conflicted") == 1

    decisions = "governance_consent_decisions_total"
    assert sample(text, decisions, decision="deny", reason="user_installs_blocked") == 1
    assert sample(text, decisions, decision="allow", reason="already_installed") == 1


def test_projection_lag_is_read_at_scrape_time(settings: Settings) -> None:
    # A second runtime on the same store whose projector does not run: its views fall behind.
    idle = Runtime(settings)
    try:
        for n in range(3):
            idle.application.register_site("acme", f"s{n}", f"Site {n}", Actor("olga"))
        head = idle.application.head_position()
        with TestClient(create_app(runtime=idle)) as client:
            behind = client.get("/metrics").text
            idle.projector.catch_up()
            caught_up = client.get("/metrics").text
    finally:
        idle.close()
    for projection in ("site_policy", "connected_apps", "timeline"):
        lag = "governance_projection_lag_events"
        assert sample(behind, lag, projection=projection) == head
        assert sample(caught_up, lag, projection=projection) == 0
        assert sample(caught_up, "governance_projection_position", projection=projection) == head
    assert sample(caught_up, "governance_event_log_head_position") == head


LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """Every record logged so far in the test, formatted as `governance serve` writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_one_json_line_per_request_and_per_command_linked_by_the_request_id(
    client: TestClient, tokens: Tokens, settings: Settings, log_lines: LogLines
) -> None:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    user = tokens.header("ann", Role.USER, sites=("s1",))
    client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    blocked = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "blocked", "reason": "review"},
        headers=admin | {"X-Request-Id": "trace-4711"},
    )
    assert blocked.headers["X-Request-Id"] == "trace-4711"
    refused = client.post(
        "/v1/sites/s1/installations", json={"app_id": "chat", "app_name": "Chat"}, headers=user
    )
    client.get("/v1/sites/s1/policy", headers={"Authorization": "Bearer not-a-token"})
    history = client.get(
        f"/v1/sites/s1/history?min_position={refused.headers['X-Event-Position']}",
        headers=admin,
    ).json()["events"]
    lines = log_lines()

    access = [line for line in lines if line["logger"] == "governance.access"]
    commands = [line for line in lines if line["logger"] == "governance.commands"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("PUT", "/v1/orgs/{org_id}/sites/{site_id}", 201),
        ("PUT", "/v1/sites/{site_id}/policy/user-installs", 200),
        ("POST", "/v1/sites/{site_id}/installations", 403),
        ("GET", "/v1/sites/{site_id}/policy", 401),
        ("GET", "/v1/sites/{site_id}/history", 200),
    ]
    block_line = access[1]
    assert block_line["request_id"] == "trace-4711"
    assert (block_line["account_id"], block_line["site_id"]) == ("olga", "s1")
    assert block_line["duration_ms"] > 0 and block_line["time"] and block_line["level"] == "INFO"
    assert access[3]["account_id"] is None  # the token was refused: nobody is named

    block_command = next(c for c in commands if c["command"] == "set_user_installs")
    assert block_command == block_command | {
        "outcome": "accepted",
        "site_id": "s1",
        "account_id": "olga",
        "request_id": "trace-4711",
        "position": int(blocked.headers["X-Event-Position"]),
    }
    refusal = next(c for c in commands if c["command"] == "install_app")
    assert (refusal["outcome"], refusal["error"]) == ("refused", "user_installs_blocked")
    assert refusal["request_id"] == refused.headers["X-Request-Id"] == access[2]["request_id"]

    # From the log line to the audit trail: the event the request caused carries its id.
    entry = next(e for e in history if e["type"] == "UserInstallsBlocked")
    assert entry["request_id"] == "trace-4711"

    # Nothing secret in any line: neither the tokens sent nor the key that signs them.
    text = "\n".join(json.dumps(line) for line in lines)
    secret = settings.resolved_jwt_secret()
    for token in (admin["Authorization"], user["Authorization"]):
        assert token.split()[1] not in text
    assert secret not in text and "not-a-token" not in text


def test_a_strange_request_id_is_replaced_and_a_plain_one_kept(client: TestClient) -> None:
    for strange in ("has space", "line\nbreak", "x" * 129, "<script>", "caf\u00e9", ""):
        response = client.get("/health", headers={b"X-Request-Id": strange.encode("utf-8")})
        echoed = response.headers["X-Request-Id"]
        assert echoed != strange and len(echoed) == 32 and echoed.isalnum()
    for plain in ("4bf92f3577b34da6a3ce929d0e0e4736", "req-1.2:3/4+5=", "a" * 128):
        assert client.get("/health", headers={"X-Request-Id": plain}).headers["X-Request-Id"] == (
            plain
        )
