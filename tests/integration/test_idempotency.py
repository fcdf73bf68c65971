"""Retries with an Idempotency-Key get the first answer and write nothing, on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.runtime import Runtime
from tests.conftest import Tokens


def log_size(runtime: Runtime) -> int:
    return len(runtime.application.recorder.select_notifications(start=1, limit=10_000))


@pytest.fixture
def admin(client: TestClient, tokens: Tokens) -> dict[str, str]:
    headers = tokens.header("olga", Role.ORG_ADMIN)
    assert client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=headers).is_success
    return headers


def test_a_retry_returns_the_first_answer_and_writes_nothing(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    keyed = admin | {"Idempotency-Key": "block-1"}
    body = {"state": "blocked", "reason": "review"}
    first = client.put("/v1/sites/s1/policy/user-installs", json=body, headers=keyed)
    written = log_size(runtime)
    # Meanwhile someone else allows installs again: a plain retry would block a second time.
    allow = {"state": "allowed"}
    client.put("/v1/sites/s1/policy/user-installs", json=allow, headers=admin)
    after_allow = log_size(runtime)
    retry = client.put("/v1/sites/s1/policy/user-installs", json=body, headers=keyed)
    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.json() == first.json()
    assert retry.headers["X-Event-Position"] == first.headers["X-Event-Position"]
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert after_allow == written + 1
    assert log_size(runtime) == after_allow


def test_posts_and_deletes_replay_too(
    client: TestClient, runtime: Runtime, tokens: Tokens, admin: dict[str, str]
) -> None:
    ann = tokens.header("ann", Role.USER, sites=("s1",))
    app = {"app_id": "wiki", "app_name": "Wiki", "scopes": ["read"]}
    install = ann | {"Idempotency-Key": "i-1"}
    first = client.post("/v1/sites/s1/installations", json=app, headers=install)
    again = client.post("/v1/sites/s1/installations", json=app, headers=install)
    # Without the key, installing again answers 200 "already installed": the key keeps the 201.
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    remove = ann | {"Idempotency-Key": "u-1"}
    before = log_size(runtime)
    gone = client.delete("/v1/sites/s1/installations/wiki", headers=remove)
    gone_again = client.delete("/v1/sites/s1/installations/wiki", headers=remove)
    assert (gone.status_code, gone_again.status_code) == (204, 204)
    assert log_size(runtime) == before + 1
    # Without the key, the second uninstall is a 404: nothing is installed any more.
    assert client.delete("/v1/sites/s1/installations/wiki", headers=ann).status_code == 404


def test_the_same_key_with_another_body_or_path_is_422(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    keyed = admin | {"Idempotency-Key": "k"}
    client.put("/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=keyed)
    written = log_size(runtime)
    other_body = client.put(
        "/v1/sites/s1/policy/user-installs", json={"state": "allowed"}, headers=keyed
    )
    other_path = client.put("/v1/orgs/acme/sites/s2", json={"name": "Two"}, headers=keyed)
    for response in (other_body, other_path):
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert "Idempotency-Key" in error["message"]
    assert log_size(runtime) == written


def test_keys_belong_to_one_account(
    client: TestClient, tokens: Tokens, admin: dict[str, str]
) -> None:
    other_admin = tokens.header("oscar", Role.ORG_ADMIN)
    body = {"state": "blocked"}
    mine = client.put(
        "/v1/sites/s1/policy/user-installs", json=body, headers=admin | {"Idempotency-Key": "x"}
    )
    theirs = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "allowed"},
        headers=other_admin | {"Idempotency-Key": "x"},
    )
    assert mine.status_code == theirs.status_code == 200
    assert theirs.json()["user_installs"] == "allowed"


@pytest.mark.parametrize("key", ["", "a" * 256, "tab\there", "é"])
def test_malformed_keys_are_422(client: TestClient, admin: dict[str, str], key: str) -> None:
    response = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "blocked"},
        headers=[(k.encode(), v.encode()) for k, v in admin.items()]
        + [(b"Idempotency-Key", key.encode("utf-8"))],
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["error"]["message"]


def test_definite_refusals_are_kept_too(client: TestClient, admin: dict[str, str]) -> None:
    keyed = admin | {"Idempotency-Key": "stale"}
    stale = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "blocked"},
        headers=keyed | {"If-Match": '"7"'},
    )
    assert stale.status_code == 412  # a definite answer: kept
    assert (
        client.put(
            "/v1/sites/s1/policy/user-installs",
            json={"state": "blocked"},
            headers=keyed | {"If-Match": '"7"'},
        ).headers.get("Idempotent-Replayed")
        == "true"
    )


def test_a_concurrent_duplicate_is_409_in_progress_not_run_twice(
    runtime: Runtime, tokens: Tokens
) -> None:
    """Two requests with one key at once: one runs, the other is told it is in progress."""
    gate = threading.Event()
    entered = threading.Event()
    original = runtime.application.register_site

    def slow_register(*args: object, **kwargs: object) -> object:
        entered.set()
        gate.wait(5)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    runtime.application.register_site = slow_register  # type: ignore[method-assign,assignment]
    admin = tokens.header("olga", Role.ORG_ADMIN) | {"Idempotency-Key": "once"}
    with TestClient(create_app(runtime=runtime)) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.put, "/v1/orgs/acme/sites/s9", json={"name": "N"}, headers=admin)
        assert entered.wait(5)
        second = client.put("/v1/orgs/acme/sites/s9", json={"name": "N"}, headers=admin)
        gate.set()
        assert first.result().status_code == 201
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_in_progress"
    assert second.headers["Retry-After"] == "1"


def test_keys_survive_a_restart(settings: Settings) -> None:
    body = {"name": "One"}
    answers = []
    for _ in range(2):
        runtime = Runtime(settings)
        try:
            admin = Tokens(runtime).header("olga", Role.ORG_ADMIN) | {"Idempotency-Key": "r"}
            with TestClient(create_app(runtime=runtime)) as client:
                answers.append(client.put("/v1/orgs/acme/sites/s1", json=body, headers=admin))
        finally:
            runtime.close()
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[1].headers["Idempotent-Replayed"] == "true"
