"""50 clients toggling and installing on one site at once, over HTTP, on both backends.

No answer is a 5xx; conflicting writes are retried by the application or answered 409 (412 for
a stale If-Match); every command that wrote appears in the log exactly once (found by the
X-Request-Id it was sent with); and the read models equal a replay of the log from zero.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt

from governance.application import GovernanceApplication
from governance.config import Settings
from governance.eventstore import event_store_env
from governance.runtime import view_generations
from projections.generations import GenerationalViewStore
from tests.e2e.conftest import Service
from tests.views import dump_store, replayed_views

CLIENTS = 50
ADMINS = 10  # clients 0-9 toggle the policy (even ones with If-Match); the rest install
ROUNDS = 6


@dataclass
class Sent:
    request_id: str
    kind: str  # "toggle", "install" or "uninstall"
    status: int
    position: int | None
    body: dict[str, Any]


def bearer(service: Service, sub: str, role: str, *sites: str) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": sub,
        "org": "acme",
        "roles": [role],
        "sites": list(sites),
        "iat": now,
        "exp": now + 600,
    }
    secret = service.env["GOVERNANCE_JWT_SECRET"]
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


class Client(threading.Thread):
    def __init__(self, service: Service, number: int, start: threading.Barrier) -> None:
        super().__init__()
        self.service = service
        self.number = number
        self.start_together = start
        self.sent: list[Sent] = []
        self.errors: list[str] = []

    def run(self) -> None:
        admin = self.number < ADMINS
        headers = (
            bearer(self.service, f"admin-{self.number}", "org-admin")
            if admin
            else bearer(self.service, f"user-{self.number}", "user", "s1")
        )
        with httpx2.Client(base_url=self.service.url, timeout=30) as http:
            self.start_together.wait()
            for turn in range(ROUNDS):
                try:
                    if admin:
                        self._toggle(http, headers, turn)
                    else:
                        self._install_or_uninstall(http, headers, turn)
                except httpx2.HTTPError as error:
                    self.errors.append(repr(error))

    def _send(self, http: httpx2.Client, kind: str, method: str, path: str, **kwargs: Any) -> None:
        request_id = uuid.uuid4().hex
        headers = kwargs.pop("headers") | {"X-Request-Id": request_id}
        response = http.request(method, path, headers=headers, **kwargs)
        position = response.headers.get("X-Event-Position")
        body = response.json() if response.content else {}
        self.sent.append(
            Sent(request_id, kind, response.status_code, int(position) if position else None, body)
        )

    def _toggle(self, http: httpx2.Client, headers: dict[str, str], turn: int) -> None:
        state = "blocked" if (turn + self.number) % 2 else "allowed"
        extra = {}
        if self.number % 2 == 0:
            current = http.get("/v1/sites/s1/policy", headers=headers)
            if current.status_code == 200:
                extra = {"If-Match": f'"{current.json()["version"]}"'}
        self._send(
            http,
            "toggle",
            "PUT",
            "/v1/sites/s1/policy/user-installs",
            json={"state": state},
            headers=headers | extra,
        )

    def _install_or_uninstall(
        self, http: httpx2.Client, headers: dict[str, str], turn: int
    ) -> None:
        app_id = f"app-{self.number % 8}"
        if turn % 3 == 2:
            self._send(
                http, "uninstall", "DELETE", f"/v1/sites/s1/installations/{app_id}", headers=headers
            )
            return
        scopes = ["read"] if turn < 3 else ["read", "write"]
        self._send(
            http,
            "install",
            "POST",
            "/v1/sites/s1/installations",
            json={"app_id": app_id, "app_name": app_id.upper(), "scopes": scopes},
            headers=headers,
        )


def test_fifty_clients_on_one_site(service: Service, tmp_path: Path) -> None:
    auditor = bearer(service, "audrey", "auditor")
    with httpx2.Client(base_url=service.url, timeout=30) as http:
        registered = http.put(
            "/v1/orgs/acme/sites/s1",
            json={"name": "One"},
            headers=bearer(service, "root", "org-admin"),
        )
        assert registered.status_code == 201
        barrier = threading.Barrier(CLIENTS)
        clients = [Client(service, n, barrier) for n in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=120)
        sent = [s for client in clients for s in client.sent]
        assert not [e for client in clients for e in client.errors]
        statuses = Counter((s.kind, s.status) for s in sent)
        print("answers:", dict(sorted(statuses.items())))  # the figures, for `pytest -s`
        assert len(sent) == CLIENTS * ROUNDS
        assert all(s.status < 500 for s in sent), statuses
        allowed = {200, 201, 204, 403, 404, 409, 412}
        assert {s.status for s in sent} <= allowed, statuses
        history = read_history(http, auditor)

    by_request = Counter(e["request_id"] for e in history)
    assert [rid for rid, n in by_request.items() if n > 1] == []
    events = {e["request_id"]: e for e in history}
    for s in sent:
        event = events.get(s.request_id)
        assert wrote(s) == (event is not None) or (s.kind == "toggle" and s.status == 200), s
        if event is not None:
            assert event["position"] == s.position, (s, event)
            assert event["type"] == expected_type(s), (s, event)
        if s.kind == "toggle" and s.status == 200 and event is not None:
            assert event["policy_version"] == s.body["version"]
    ours = {s.request_id for s in sent}
    strays = [e for e in history if e["type"] != "SiteRegistered" and e["request_id"] not in ours]
    assert strays == []
    versions = [e["policy_version"] for e in history if e["type"].startswith("UserInstalls")]
    assert versions == list(range(2, len(versions) + 2))

    settings = settings_of(service)
    application = GovernanceApplication(env=event_store_env(settings, create_table=False))
    live = GenerationalViewStore(view_generations(settings))  # the live generation
    try:
        assert dump_store(live) == replayed_views(
            application.recorder, application.mapper, tmp_path / "replay.sqlite"
        )
    finally:
        live.close()
        application.close()


def wrote(sent: Sent) -> bool:
    """Whether the answer says an event was recorded (a policy 200 may be a no-op)."""
    if sent.kind == "install":
        return sent.status in (201, 403)
    if sent.kind == "uninstall":
        return sent.status == 204
    return False


def expected_type(sent: Sent) -> str:
    if sent.kind == "install":
        return "AppInstalled" if sent.status == 201 else "InstallBlocked"
    if sent.kind == "uninstall":
        return "AppUninstalled"
    return (
        "UserInstallsBlocked" if sent.body["user_installs"] == "blocked" else "UserInstallsAllowed"
    )


def read_history(http: httpx2.Client, auditor: dict[str, str]) -> list[dict[str, Any]]:
    """The whole site history, once the read models have caught up with the log."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = http.get("/ready").json()
        if ready.get("projection_lag") == 0:
            break
        time.sleep(0.1)
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get(
            "/v1/sites/s1/history", params={"after": after, "limit": 1000}, headers=auditor
        ).json()
        entries += page["events"]
        if page["next_after"] is None:
            return entries
        after = page["next_after"]


def settings_of(service: Service) -> Settings:
    env = service.env
    return Settings(
        data_dir=Path(env["GOVERNANCE_DATA_DIR"]),
        database_url=env.get("DATABASE_URL"),
        database_schema=env.get("GOVERNANCE_DATABASE_SCHEMA", "public"),
        jwt_secret=env["GOVERNANCE_JWT_SECRET"],
    )
