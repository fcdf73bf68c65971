"""The foundation's acceptance scenario against running processes, with a CLI-issued token."""

from __future__ import annotations

import httpx2

from tests.e2e.conftest import Service


def test_register_block_read_back_and_tenancy(service: Service) -> None:
    admin = service.token("alice", "org-admin")
    with httpx2.Client(base_url=service.url, timeout=10) as http:
        created = http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
        assert created.status_code == 201
        blocked = http.put(
            "/v1/sites/s1/policy/user-installs",
            json={"state": "blocked", "reason": "vendor review"},
            headers=admin | {"If-Match": '"1"'},
        )
        assert blocked.status_code == 200
        position = blocked.headers["X-Event-Position"]
        policy = http.get(f"/v1/sites/s1/policy?min_position={position}", headers=admin).json()
        assert (policy["user_installs"], policy["version"], policy["updated_by"]) == (
            "blocked",
            2,
            "alice",
        )
        assert policy["reason"] == "vendor review"
        stale = http.put(
            "/v1/sites/s1/policy/user-installs",
            json={"state": "allowed"},
            headers=admin | {"If-Match": '"1"'},
        )
        assert stale.status_code == 412
        other_org = service.token("mallory", "org-admin", "globex")
        assert http.get("/v1/sites/s1/policy", headers=other_org).status_code == 404


def test_an_end_user_is_refused_while_installs_are_blocked(service: Service) -> None:
    admin = service.token("alice", "org-admin")
    user = service.token("ann", "user", "acme", "s1")
    with httpx2.Client(base_url=service.url, timeout=10) as http:
        http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
        app = {"app_id": "wiki-sync", "app_name": "Wiki Sync", "scopes": ["read:page"]}
        assert http.post("/v1/sites/s1/installations", json=app, headers=user).status_code == 201
        http.put("/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=admin)
        other = {"app_id": "chat-bot", "app_name": "Chat Bot", "scopes": []}
        refused = http.post("/v1/sites/s1/installations", json=other, headers=user)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "user_installs_blocked"
        position = refused.headers["X-Event-Position"]
        apps = http.get(
            f"/v1/sites/s1/connected-apps?min_position={position}", headers=admin
        ).json()["apps"]
        assert [(a["app_id"], a["installed_by"], a["user_count"]) for a in apps] == [
            ("wiki-sync", "Users", 1)
        ]
