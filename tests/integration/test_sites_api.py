"""The site and policy API, on the embedded default and on the real PostgreSQL."""

from __future__ import annotations

import httpx2
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.runtime import Runtime
from tests.conftest import Tokens

JSON = {"content-type": "application/json"}


def register(client: TestClient, tokens: Tokens, site_id: str = "s1", org: str = "acme") -> int:
    response = client.put(
        f"/v1/orgs/{org}/sites/{site_id}",
        json={"name": f"Site {site_id}"},
        headers=tokens.header("root", Role.ORG_ADMIN, org=org),
    )
    assert response.status_code in (200, 201), response.text
    return int(response.headers["X-Event-Position"])


def block(
    client: TestClient, headers: dict[str, str], site_id: str = "s1", **extra: str
) -> httpx2.Response:
    return client.put(
        f"/v1/sites/{site_id}/policy/user-installs",
        json={"state": "blocked", "reason": "security review"},
        headers=headers | extra,
    )


def test_register_answers_201_then_200_and_409_for_another_name(
    client: TestClient, tokens: Tokens
) -> None:
    admin = tokens.header("alice", Role.ORG_ADMIN)
    first = client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    again = client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    renamed = client.put("/v1/orgs/acme/sites/s1", json={"name": "Two"}, headers=admin)
    assert (first.status_code, again.status_code, renamed.status_code) == (201, 200, 409)
    assert first.json() == {"site_id": "s1", "org_id": "acme", "name": "One"}
    assert renamed.json()["error"]["code"] == "site_id_taken"


def test_block_and_read_back_with_version_and_actor(client: TestClient, tokens: Tokens) -> None:
    register(client, tokens)
    admin = tokens.header("alice", Role.ORG_ADMIN)
    changed = block(client, admin)
    assert changed.status_code == 200
    position = changed.headers["X-Event-Position"]
    read = client.get(f"/v1/sites/s1/policy?min_position={position}", headers=admin)
    assert read.status_code == 200
    body = read.json()
    assert body["user_installs"] == "blocked"
    assert (body["version"], body["updated_by"], body["reason"]) == (2, "alice", "security review")
    assert body["org_id"] == "acme" and body["site_id"] == "s1"


def test_the_same_state_again_keeps_the_version_and_writes_nothing(
    client: TestClient, tokens: Tokens
) -> None:
    register(client, tokens)
    admin = tokens.header("alice", Role.ORG_ADMIN)
    first = block(client, admin)
    again = block(client, tokens.header("bob", Role.ORG_ADMIN))
    assert again.status_code == 200
    assert again.json()["version"] == first.json()["version"] == 2
    assert again.json()["updated_by"] == "alice"
    assert int(again.headers["X-Event-Position"]) == int(first.headers["X-Event-Position"])


def test_a_stale_if_match_is_412_and_a_current_one_passes(
    client: TestClient, tokens: Tokens
) -> None:
    register(client, tokens)
    admin = tokens.header("alice", Role.ORG_ADMIN)
    assert block(client, admin, **{"If-Match": '"1"'}).status_code == 200
    stale = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "allowed"},
        headers=admin | {"If-Match": '"1"'},
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "stale_policy_version"
    current = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "allowed"},
        headers=admin | {"If-Match": '"2"'},
    )
    assert current.status_code == 200 and current.json()["version"] == 3


def test_another_orgs_site_looks_exactly_like_a_missing_one(
    client: TestClient, tokens: Tokens
) -> None:
    position = register(client, tokens, "s1", org="acme")
    outsider = tokens.header("mallory", Role.ORG_ADMIN, org="globex")
    foreign = client.get(f"/v1/sites/s1/policy?min_position={position}", headers=outsider)
    missing = client.get("/v1/sites/nope/policy", headers=outsider)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    changed = block(client, outsider)
    assert changed.status_code == 404
    assert (
        changed.json()
        == client.put(
            "/v1/sites/nope/policy/user-installs", json={"state": "blocked"}, headers=outsider
        ).json()
    )
    assert client.get("/v1/orgs/acme/sites", headers=outsider).status_code == 404


def test_who_may_change_and_read_the_policy(client: TestClient, tokens: Tokens) -> None:
    register(client, tokens, "s1")
    position = register(client, tokens, "s2")
    site_admin = tokens.header("sam", Role.SITE_ADMIN, sites=("s1",))
    other_admin = tokens.header("oz", Role.SITE_ADMIN, sites=("s2",))
    user = tokens.header("ursula", Role.USER, sites=("s1",))
    auditor = tokens.header("audrey", Role.AUDITOR)
    assert block(client, site_admin).status_code == 200
    assert block(client, other_admin).status_code == 403
    assert block(client, user).status_code == 403
    assert block(client, auditor).status_code == 403
    query = f"/v1/sites/s1/policy?min_position={position}"
    assert client.get(query, headers=auditor).status_code == 200
    assert client.get(query, headers=site_admin).status_code == 200
    assert client.get(query, headers=user).status_code == 403
    assert client.get(query, headers=other_admin).status_code == 403


def test_only_org_admins_register_sites(client: TestClient, tokens: Tokens) -> None:
    for role in (Role.SITE_ADMIN, Role.AUDITOR, Role.USER):
        response = client.put(
            "/v1/orgs/acme/sites/s1", json={"name": "x"}, headers=tokens.header("x", role)
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_listing_sites_shows_each_caller_what_it_may_see(
    client: TestClient, tokens: Tokens
) -> None:
    register(client, tokens, "s1")
    position = register(client, tokens, "s2")
    admin = tokens.header("alice", Role.ORG_ADMIN)
    block(client, admin, "s2")
    listed = client.get(f"/v1/orgs/acme/sites?min_position={position + 1}", headers=admin)
    assert listed.json() == {
        "sites": [
            {"site_id": "s1", "name": "Site s1", "user_installs": "allowed"},
            {"site_id": "s2", "name": "Site s2", "user_installs": "blocked"},
        ]
    }
    site_admin = tokens.header("sam", Role.SITE_ADMIN, sites=("s2",))
    assert [
        s["site_id"] for s in client.get("/v1/orgs/acme/sites", headers=site_admin).json()["sites"]
    ] == ["s2"]
    user = tokens.header("ursula", Role.USER, sites=("s1",))
    assert client.get("/v1/orgs/acme/sites", headers=user).status_code == 403


def test_as_of_answers_what_was_true_then(client: TestClient, tokens: Tokens) -> None:
    register(client, tokens)
    admin = tokens.header("alice", Role.ORG_ADMIN)
    before_block = client.get("/v1/sites/s1/policy?min_position=1", headers=admin).json()
    moment = before_block["updated_at"]
    position = block(client, admin).headers["X-Event-Position"]
    now = client.get(f"/v1/sites/s1/policy?min_position={position}", headers=admin).json()
    then = client.get("/v1/sites/s1/policy", params={"as_of": moment}, headers=admin).json()
    assert now["user_installs"] == "blocked"
    assert (then["user_installs"], then["version"]) == ("allowed", 1)
    early = client.get(
        "/v1/sites/s1/policy", params={"as_of": "2000-01-01T00:00:00Z"}, headers=admin
    )
    assert early.status_code == 404
    naive = client.get("/v1/sites/s1/policy", params={"as_of": moment[:19]}, headers=admin)
    assert naive.status_code == 422 and "as_of" in naive.json()["error"]["message"]


def test_bad_input_is_422_naming_the_field(client: TestClient, tokens: Tokens) -> None:
    register(client, tokens)
    admin = tokens.header("alice", Role.ORG_ADMIN)
    url = "/v1/sites/s1/policy/user-installs"
    cases = {
        "state": {"state": "maybe"},
        "reason": {"state": "blocked", "reason": "x" * 501},
        "colour": {"state": "blocked", "colour": "red"},
    }
    for field, body in cases.items():
        response = client.put(url, json=body, headers=admin)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert field in error["message"]
    malformed = client.put(url, content=b"{not json", headers=admin | JSON)
    assert malformed.status_code == 422
    assert "JSON" in malformed.json()["error"]["message"]
    bad_etag = client.put(url, json={"state": "blocked"}, headers=admin | {"If-Match": "soon"})
    assert bad_etag.status_code == 422
    # Nothing was written by any of them.
    read = client.get("/v1/sites/s1/policy?min_position=1", headers=admin).json()
    assert read["version"] == 1


def test_tokens_are_checked(client: TestClient, tokens: Tokens) -> None:
    register(client, tokens)
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        response = client.get("/v1/sites/s1/policy", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["projection_lag"] >= 0
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/sites/{site_id}/policy/user-installs" in paths


def test_a_position_the_views_never_reach_is_503_with_retry_after(settings: Settings) -> None:
    # No projector runs beside this runtime: its views stay behind the write made here.
    impatient = Runtime(settings.model_copy(update={"min_position_timeout": 0.2}))
    try:
        with TestClient(create_app(runtime=impatient)) as client:
            headers = Tokens(impatient).header("alice", Role.ORG_ADMIN)
            written = client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=headers)
            position = written.headers["X-Event-Position"]
            response = client.get(f"/v1/orgs/acme/sites?min_position={position}", headers=headers)
    finally:
        impatient.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "read_models_behind"


def test_a_position_ahead_of_the_log_is_422_at_once(client: TestClient, tokens: Tokens) -> None:
    position = register(client, tokens)
    headers = tokens.header("alice", Role.ORG_ADMIN)
    response = client.get(f"/v1/orgs/acme/sites?min_position={position + 1000}", headers=headers)
    assert response.status_code == 422
    assert "min_position" in response.json()["error"]["message"]
