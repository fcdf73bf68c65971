"""An auditor against running processes: the trail, a replay while serving, the chain."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx2

from tests.e2e.conftest import GOVERNANCE, Service


def trail(http: httpx2.Client, auditor: dict[str, str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get("/v1/audit/events", params={"after": after, "limit": 3}, headers=auditor)
        assert page.status_code == 200, page.text
        events += page.json()["events"]
        after = page.json()["next_after"]
        if after is None:
            return events


def test_replay_while_serving_then_verify_the_log(service: Service) -> None:
    admin = service.token("alice", "org-admin")
    user = service.token("ann", "user", "acme", "s1")
    auditor = service.token("audrey", "auditor")
    with httpx2.Client(base_url=service.url, timeout=10) as http:
        http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
        app = {"app_id": "wiki", "app_name": "Wiki", "scopes": ["read"]}
        http.post("/v1/sites/s1/installations", json=app, headers=user)
        blocked = http.put(
            "/v1/sites/s1/policy/user-installs",
            json={"state": "blocked", "reason": "audit"},
            headers=admin | {"X-Request-Id": "change-1"},
        )
        position = blocked.headers["X-Event-Position"]
        http.get(f"/v1/sites/s1/policy?min_position={position}", headers=admin)
        before = trail(http, auditor)
        assert [e["type"] for e in before] == [
            "SiteRegistered",
            "AppInstalled",
            "UserInstallsBlocked",
        ]
        assert before[2]["request_id"] == "change-1" and before[2]["reason"] == "audit"
        assert http.get("/ready").json()["view_generation"] == 1

        replay = subprocess.run(
            [*GOVERNANCE, "replay"], env=service.env, capture_output=True, text=True, timeout=60
        )
        assert replay.returncode == 0, replay.stderr
        assert "generation 2 is live" in replay.stderr
        deadline = time.monotonic() + 10
        while http.get("/ready").json()["view_generation"] != 2:
            assert time.monotonic() < deadline, "the server did not follow the switch"
            time.sleep(0.2)
        assert trail(http, auditor) == before
        history = http.get("/v1/sites/s1/history", headers=auditor).json()["events"]
        assert history[2]["summary"] == (
            "alice blocked user installs, keeping the apps users had installed (reason: audit)"
        )

        head = subprocess.run(
            [*GOVERNANCE, "audit", "head"], env=service.env, capture_output=True, text=True
        )
        assert head.stdout.strip().endswith("@3")
        verified = http.get(
            "/v1/audit/verify", params={"head": head.stdout.strip()}, headers=auditor
        ).json()
        assert verified == {"intact": True, "problem": None, "scope": verified["scope"]}
