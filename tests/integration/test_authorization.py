"""Every cell of the authorization matrix, against the running API on both backends."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.runtime import Runtime
from governance.web.pages import SESSION_COOKIE
from tests.conftest import Tokens
from tests.integration.authorization_matrix import MATRIX, PERSONAS, Rule, expected_status, render

DOC = Path(__file__).parents[2] / "docs" / "authorization.md"


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    for context in iter_route_contexts(app.routes):
        methods = getattr(context, "methods", None) or {"ANY"}
        for method in sorted(set(methods) - {"HEAD"}):
            yield method, str(context.path)


def personas(tokens: Tokens) -> dict[str, dict[str, str]]:
    return {
        "anonymous": {},
        "site_user": tokens.header("uma", Role.USER, sites=("s1",)),
        "other_site_user": tokens.header("otto", Role.USER, sites=("s2",)),
        "site_admin": tokens.header("sam", Role.SITE_ADMIN, sites=("s1",)),
        "other_site_admin": tokens.header("sid", Role.SITE_ADMIN, sites=("s2",)),
        "org_admin": tokens.header("olga", Role.ORG_ADMIN),
        "other_org_admin": tokens.header("gus", Role.ORG_ADMIN, org="globex"),
        "auditor": tokens.header("audrey", Role.AUDITOR),
    }


def helper(tokens: Tokens) -> dict[str, str]:
    """A user of the site, not one of the personas, who opens request cases for the setups."""
    return tokens.header("hal", Role.USER, sites=("s1",))


def test_every_route_has_a_row_and_every_row_a_route(client: TestClient) -> None:
    assert isinstance(client.app, FastAPI)
    served = set(routes(client.app))
    ruled = {(rule.method, rule.path) for rule in MATRIX}
    assert not served - ruled, f"routes without a row in authorization_matrix.py: {served - ruled}"
    assert not ruled - served, f"rows for routes that do not exist: {ruled - served}"


def test_the_document_is_generated_from_the_matrix() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/authorization.md is stale: run"
        " `python -m tests.integration.authorization_matrix > docs/authorization.md`"
    )


@pytest.fixture
def matrix_client(settings: Settings) -> Iterator[tuple[TestClient, Tokens]]:
    """The API with a command rate no setup of the matrix reaches (limits are tested elsewhere)."""
    generous = settings.model_copy(
        update={"command_rate_per_second": 100_000.0, "command_burst": 100_000}
    )
    runtime = Runtime(generous)
    runtime.start_projector()
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client, Tokens(runtime)
    finally:
        runtime.close()


def test_every_cell(matrix_client: tuple[TestClient, Tokens]) -> None:
    client, tokens = matrix_client
    callers = personas(tokens)
    assert set(callers) == set(PERSONAS)
    org_admin = callers["org_admin"]
    for site_id, name in (("s1", "Site One"), ("s2", "Site Two")):
        registered = client.put(
            f"/v1/orgs/acme/sites/{site_id}", json={"name": name}, headers=org_admin
        )
        assert registered.is_success
    mismatches = []
    for number, rule in enumerate(MATRIX):
        for persona, headers in callers.items():
            app_id = f"app-{number}-{persona}".replace("_", "-")
            answer = call(client, rule, headers, org_admin, helper(tokens), app_id)
            if not matches(rule, persona, answer):
                expected = expected_status(rule, persona)
                mismatches.append(
                    f"{rule.method} {rule.path} as {persona}: {answer.status_code}"
                    f" {answer.headers.get('location', '')}, not {expected}"
                )
    assert not mismatches, "\n".join(mismatches)


def matches(rule: Rule, persona: str, answer: httpx2.Response) -> bool:
    expected = expected_status(rule, persona)
    status = answer.status_code
    if expected == "ok":
        return 200 <= status < (400 if rule.page else 300)
    if expected == "303":  # sent to sign in
        return status == 303 and answer.headers["location"].startswith("/signin")
    return str(status) == expected


def call(
    client: TestClient,
    rule: Rule,
    headers: dict[str, str],
    org_admin: dict[str, str],
    hal: dict[str, str],
    app_id: str,
) -> httpx2.Response:
    client.cookies.clear()
    blocked = rule.setup in ("blocked", "case", "own_case")
    if blocked:
        set_policy(client, org_admin, "blocked")
    try:
        values = {"{org_id}": "acme", "{site_id}": "s1", "{app_id}": app_id, "{rest:path}": "x"}
        made = prepare(client, rule, headers, org_admin, hal, app_id) or ""
        values["{case_id}"] = values["{webhook_id}"] = made
        if "{policy_version}" in str(rule.form):
            # Allowing again is a no-op that answers with the current version.
            values["{policy_version}"] = str(set_policy(client, org_admin, "allowed"))
        return send(client, rule, headers, values)
    finally:
        client.cookies.clear()
        if blocked:
            set_policy(client, org_admin, "allowed")


def set_policy(client: TestClient, org_admin: dict[str, str], state: str) -> int:
    """Block or allow user installs on s1; the policy version after."""
    changed = client.put(
        "/v1/sites/s1/policy/user-installs", json={"state": state}, headers=org_admin
    )
    assert changed.status_code == 200, changed.text
    return int(changed.json()["version"])


def prepare(
    client: TestClient,
    rule: Rule,
    headers: dict[str, str],
    org_admin: dict[str, str],
    hal: dict[str, str],
    app_id: str,
) -> str | None:
    """The rule's setup; the id of the request case or webhook it made, if any."""
    install = {"app_id": app_id, "app_name": "App", "scopes": ["read"]}
    if rule.setup == "grant":
        client.post("/v1/sites/s1/installations", json=install, headers=headers)
    elif rule.setup == "connected":
        made = client.post("/v1/sites/s1/installations", json=install, headers=org_admin)
        assert made.status_code == 201, made.text
        position = made.headers["X-Event-Position"]
        client.get(f"/v1/sites/s1/connected-apps?min_position={position}", headers=org_admin)
    elif rule.setup in ("case", "own_case"):
        asked = install | {"justification": "needed"}
        requesters = [headers, hal] if rule.setup == "own_case" else [hal]
        for requester in requesters:
            made = client.post("/v1/sites/s1/app-requests", json=asked, headers=requester)
            if made.status_code == 201:
                client.get(
                    f"/v1/sites/s1/app-requests?min_position={made.headers['X-Event-Position']}",
                    headers=org_admin,
                )
                return str(made.json()["case_id"])
        raise AssertionError("no request case could be opened")
    elif rule.setup == "webhook":
        hook = {
            "url": "https://hooks.example.test/governance",
            "event_types": ["io.governance.site.user_installs.blocked.v1"],
            "secret": "matrix-secret-0123456789",
        }
        made = client.post("/v1/orgs/acme/webhooks", json=hook, headers=org_admin)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])
    return None


def send(
    client: TestClient, rule: Rule, headers: dict[str, str], values: dict[str, str]
) -> httpx2.Response:
    def fill(text: str) -> str:
        for name, value in values.items():
            text = text.replace(name, value)
        return text

    path = fill(rule.path) + (f"?{fill(rule.query)}" if rule.query else "")
    if not rule.page:
        body = None
        if rule.body is not None:
            body = {k: fill(v) if isinstance(v, str) else v for k, v in rule.body.items()}
        return client.request(rule.method, path, json=body, headers=headers)
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    if token and rule.path != "/signin":
        client.cookies.set(SESSION_COOKIE, token)
    if rule.form is None:
        return client.request(rule.method, path, follow_redirects=False)
    # As a browser: the form page gave it the nonce cookie and the CSRF token.
    form_page = client.get("/signin")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form_page.text)
    assert csrf is not None
    form = {k: fill(v).replace("{token}", token) for k, v in rule.form.items()}
    return client.request(
        rule.method, path, data=form | {"csrf_token": csrf.group(1)}, follow_redirects=False
    )


def test_forged_expired_and_unsigned_tokens_are_401(client: TestClient, tokens: Tokens) -> None:
    secret_holder = TokenCodec("another-secret-that-is-long-enough-0000")
    now = int(time.time())
    claims = {"sub": "olga", "org": "acme", "roles": ["org-admin"], "iat": now, "exp": now + 60}
    unsigned = ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in ({"alg": "none", "typ": "JWT"}, claims)
    )
    bad = {
        "forged": secret_holder.issue(sub="olga", org="acme", roles=[Role.ORG_ADMIN]),
        "expired": jwt_with(tokens, claims | {"iat": now - 7200, "exp": now - 3600}),
        "alg_none": unsigned + ".",
        "no_exp": jwt_with(tokens, {k: v for k, v in claims.items() if k != "exp"}),
    }
    for name, token in bad.items():
        response = client.put(
            "/v1/orgs/acme/sites/s1",
            json={"name": "One"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_token"


def jwt_with(tokens: Tokens, claims: dict[str, object]) -> str:
    """A token signed with the server's own secret but with the given claims."""
    return jwt.encode(claims, tokens.secret, algorithm="HS256")
