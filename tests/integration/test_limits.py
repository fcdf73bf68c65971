"""Limits: body size (413, also chunked), field lengths and unknown fields (422), rate (429)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.runtime import Runtime
from tests.conftest import Tokens


def register(client: TestClient, tokens: Tokens) -> dict[str, str]:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    assert client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin).is_success
    return admin


def test_a_body_over_the_cap_is_413_with_or_without_content_length(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    admin = register(client, tokens)
    cap = runtime.settings.max_body_bytes
    big = b'{"state": "blocked", "reason": "' + b"x" * cap + b'"}'
    declared = client.put(
        "/v1/sites/s1/policy/user-installs",
        content=big,
        headers=admin | {"content-type": "application/json"},
    )

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    chunked = client.put(
        "/v1/sites/s1/policy/user-installs",
        content=chunks(),
        headers=admin | {"content-type": "application/json"},
    )
    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    assert "content-length" not in chunked.request.headers
    runtime.projector.wait_for(runtime.application.head_position(), 5)
    policy = client.get("/v1/sites/s1/policy", headers=admin).json()
    assert (policy["user_installs"], policy["version"]) == ("allowed", 1)


def test_every_field_has_a_length_limit_and_unknown_fields_are_refused(
    client: TestClient, tokens: Tokens
) -> None:
    admin = register(client, tokens)
    cases = [
        ("PUT", "/v1/orgs/acme/sites/s2", {"name": "n" * 201}, "name"),
        ("PUT", "/v1/orgs/acme/sites/s2", {"name": "ok", "owner": "x"}, "owner"),
        ("PUT", "/v1/orgs/acme/sites/" + "s" * 129, {"name": "ok"}, "site_id"),
        ("PUT", "/v1/orgs/" + "o" * 129 + "/sites/s2", {"name": "ok"}, "org_id"),
        (
            "PUT",
            "/v1/sites/s1/policy/user-installs",
            {"state": "blocked", "reason": "r" * 501},
            "reason",
        ),
        ("PUT", "/v1/sites/s1/policy/user-installs", {"state": "closed"}, "state"),
        ("PUT", "/v1/sites/s1/policy/user-installs", {"state": "blocked", "x": 1}, "x"),
        ("POST", "/v1/sites/s1/installations", {"app_id": "a", "app_name": "n" * 201}, "app_name"),
        ("POST", "/v1/sites/s1/installations", {"app_id": "a" * 129, "app_name": "A"}, "app_id"),
        (
            "POST",
            "/v1/sites/s1/installations",
            {"app_id": "a", "app_name": "A", "scopes": ["s"] * 101},
            "scopes",
        ),
        (
            "POST",
            "/v1/sites/s1/installations",
            {"app_id": "a", "app_name": "A", "scopes": ["s" * 201]},
            "scopes.0",
        ),
        ("DELETE", "/v1/sites/s1/connected-apps/x?reason=" + "r" * 501, None, "reason"),
        ("GET", "/v1/sites/s1/history?limit=1001", None, "limit"),
        ("GET", "/v1/sites/s1/history?after=" + "9" * 20, None, "after"),
        ("GET", "/v1/sites/s1/policy?min_position=" + "9" * 20, None, "min_position"),
        ("GET", "/v1/sites/s1/consent?app_id=" + "a" * 129, None, "app_id"),
    ]
    for method, path, body, field in cases:
        response = client.request(method, path, json=body, headers=admin)
        assert response.status_code == 422, (method, path, response.text)
        assert field in response.json()["error"]["message"], (field, response.text)


@pytest.mark.parametrize("text", ["nul\x00byte", "bell\x07", "lone \ud800 surrogate"])
def test_control_characters_and_lone_surrogates_are_refused(
    client: TestClient, tokens: Tokens, text: str
) -> None:
    admin = register(client, tokens)
    # Written by hand: a JSON encoder would refuse the lone surrogate itself.
    escaped = "".join(ch if " " <= ch <= "~" else f"\\u{ord(ch):04x}" for ch in text)
    body = '{"state": "blocked", "reason": "' + escaped + '"}'
    response = client.put(
        "/v1/sites/s1/policy/user-installs",
        content=body.encode(),
        headers=admin | {"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "reason" in response.json()["error"]["message"]


def test_commands_past_the_rate_are_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"command_rate_per_second": 0.5, "command_burst": 3})
    runtime = Runtime(limited)
    try:
        tokens = Tokens(runtime)
        with TestClient(create_app(runtime=runtime)) as client:
            admin = tokens.header("olga", Role.ORG_ADMIN)
            other = tokens.header("oscar", Role.ORG_ADMIN)
            answers = [
                client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
                for _ in range(4)
            ]
            assert [a.status_code for a in answers] == [201, 200, 200, 429]
            refused = answers[-1]
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 2
            # Another account has its own bucket; reads are not limited.
            assert client.put(
                "/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=other
            ).is_success
            for _ in range(5):
                assert client.get("/v1/orgs/acme/sites", headers=admin).status_code == 200
            # The console's forms are commands too, sent with the session cookie.
            cookie = {"Cookie": "governance_session=" + admin["Authorization"].split()[1]}
            page = client.post("/signout", headers=cookie, follow_redirects=False)
            assert page.status_code == 429
    finally:
        runtime.close()
