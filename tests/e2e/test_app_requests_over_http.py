"""Requests against running processes: an open case nobody decides expires on its own."""

from __future__ import annotations

import time

import httpx2

from tests.e2e.conftest import Service

TTL_SECONDS = 1.5


# Cases expire after 1.5 s, and the sweeper looks five times a second.
SERVICE_ENV = {
    "GOVERNANCE_APP_REQUEST_TTL_DAYS": str(TTL_SECONDS / 86400),
    "GOVERNANCE_APP_REQUEST_SWEEP_INTERVAL": "0.2",
}


def test_an_undecided_request_expires_and_may_be_requested_again(service: Service) -> None:
    admin = service.token("olga", "org-admin")
    ann = service.token("ann", "user", "acme", "s1")
    body = {"app_id": "jira", "app_name": "Jira", "scopes": ["read"], "justification": "reports"}
    with httpx2.Client(base_url=service.url, timeout=10) as http:
        http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
        http.put("/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=admin)
        asked = http.post("/v1/sites/s1/app-requests", json=body, headers=ann)
        assert asked.status_code == 201 and asked.json()["case_id"] == "jira~1"
        deadline = time.monotonic() + TTL_SECONDS + 10
        status = "open"
        while status == "open" and time.monotonic() < deadline:
            time.sleep(0.2)
            mine = http.get("/v1/me/app-requests", headers=ann).json()["requests"]
            status = mine[0]["status"]
        assert status == "expired"
        history = http.get("/v1/sites/s1/history", headers=admin).json()["events"]
        expired = [e for e in history if e["type"] == "AppRequestExpired"]
        assert len(expired) == 1
        assert expired[0]["actor"] == "governance:request-expiry"
        again = http.post("/v1/sites/s1/app-requests", json=body, headers=ann)
        assert again.status_code == 201 and again.json()["case_id"] == "jira~2"
