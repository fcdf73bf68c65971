"""Operating the service: scrape it under load, follow a request id, stop it with SIGTERM, restart.

The processes are the real ones (`python -m governance serve`, and on PostgreSQL a separate
`governance project`), started here rather than by the `service` fixture because this test
stops and restarts them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.runtime import Runtime
from tests.conftest import BACKENDS, drop_schema, make_settings
from tests.e2e.conftest import GOVERNANCE, free_port, wait_until_ready
from tests.integration.test_installs_api import dump_views, rebuild

SHUTDOWN_TIMEOUT = 5
THREADS = 8


@dataclass
class Stack:
    """The processes of one deployment, their logs numbered by run."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    url: str
    metrics_url: str | None
    runs: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        self.runs += 1
        roles = ["project", "serve"] if self.settings.uses_postgres else ["serve"]
        for role in roles:
            with self.log(role).open("wb") as log:
                self.processes[role] = subprocess.Popen(
                    [*GOVERNANCE, role], env=self.env, stderr=log
                )
        wait_until_ready(self.url, self.processes["serve"])

    def log(self, role: str, run: int | None = None) -> Path:
        return self.logs / f"{role}-{run or self.runs}.log"

    def lines(self, role: str, run: int | None = None) -> list[dict[str, Any]]:
        """Every line the process wrote, each parsed as JSON (a line that is not fails here)."""
        text = self.log(role, run).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    def projector_role(self) -> str:
        return "project" if self.settings.uses_postgres else "serve"

    def terminate(self) -> float:
        """SIGTERM every process at once; how long until the last one exited."""
        started = time.monotonic()
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for role, process in self.processes.items():
            code = process.wait(timeout=SHUTDOWN_TIMEOUT + 20)
            assert code == 0, f"{role} exited with {code}"
        return time.monotonic() - started

    def kill(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    settings = make_settings(request.param, tmp_path)
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "GOVERNANCE_DATA_DIR": str(settings.data_dir),
        "GOVERNANCE_JWT_SECRET": "ops-" + uuid.uuid4().hex,
        "PORT": str(port),
        "GOVERNANCE_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "GOVERNANCE_METRICS_PORT": str(metrics_port),
        # Small batches: a stop lands between many batch boundaries, not after one big batch.
        "GOVERNANCE_PROJECTOR_BATCH_SIZE": "5",
    }
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "GOVERNANCE_LOG_FORMAT"):
        env.pop(name, None)
    metrics_url = None
    if settings.uses_postgres:
        assert settings.database_url is not None
        env.update(
            DATABASE_URL=settings.database_url,
            GOVERNANCE_DATABASE_SCHEMA=settings.database_schema,
            GOVERNANCE_RUN_PROJECTOR="false",
        )
        subprocess.run([*GOVERNANCE, "migrate"], env=env, check=True, capture_output=True)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    deployed = Stack(settings, env, tmp_path, f"http://127.0.0.1:{port}", metrics_url)
    try:
        yield deployed
    finally:
        deployed.kill()
        if settings.uses_postgres:
            drop_schema(settings)


@dataclass
class Sent:
    request_id: str
    sent: float
    done: float = 0.0
    status: int | None = None
    error: str | None = None


class Load:
    """End users installing apps and asking the consent question, each on its own connection."""

    def __init__(self, stack: Stack, codec: TokenCodec) -> None:
        self.url = stack.url
        self.codec = codec
        self.results: list[Sent] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._user, args=(n,)) for n in range(THREADS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _user(self, n: int) -> None:
        token = self.codec.issue(sub=f"user{n}", org="acme", roles=[Role.USER], sites=["s1"])
        auth = {"Authorization": f"Bearer {token}"}
        with httpx2.Client(base_url=self.url, timeout=30) as http:
            for i in range(100_000):
                if self.stop.is_set():
                    return
                sent = Sent(f"load-{n}-{i}", time.monotonic())
                headers = auth | {"X-Request-Id": sent.request_id}
                try:
                    if i % 2 == 0:
                        app = {"app_id": f"app-{n}-{i}", "app_name": f"App {i}", "scopes": ["r"]}
                        response = http.post(
                            "/v1/sites/s1/installations", json=app, headers=headers
                        )
                    else:
                        query = f"?app_id=app-{n}-{i - 1}"
                        response = http.get("/v1/sites/s1/consent" + query, headers=headers)
                    sent.status = response.status_code
                except httpx2.TransportError as error:
                    sent.error = type(error).__name__
                sent.done = time.monotonic()
                self.results.append(sent)
                if sent.error is not None:
                    return  # the server is going away: this user stops


def scrape(url: str) -> str:
    response = httpx2.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


def test_scrape_follow_a_request_and_stop_under_load(stack: Stack) -> None:
    codec = TokenCodec(stack.env["GOVERNANCE_JWT_SECRET"])
    admin = {
        "Authorization": "Bearer " + codec.issue(sub="olga", org="acme", roles=[Role.ORG_ADMIN])
    }
    stack.start()
    with httpx2.Client(base_url=stack.url, timeout=10) as http:
        # A newcomer follows one request: its id in the response, the log line, the audit trail.
        registered = http.put(
            "/v1/orgs/acme/sites/s1",
            json={"name": "One"},
            headers=admin | {"X-Request-Id": "follow-me-1"},
        )
        assert registered.headers["X-Request-Id"] == "follow-me-1"

    with Load(stack, codec) as load:
        time.sleep(1.0)
        during = scrape(stack.url + "/metrics")
        worker = scrape(stack.metrics_url) if stack.metrics_url else during
        time.sleep(0.5)
        terminated_at = time.monotonic()
        took = stack.terminate()
    results = load.results

    # Scraped while traffic flowed: request counts by route template, lag per read model.
    assert 'route="/v1/sites/{site_id}/installations",status="201"' in during
    assert 'governance_commands_total{command="install_app",outcome="accepted"}' in during
    assert 'governance_projection_lag_events{projection="timeline"}' in worker

    # SIGTERM under load: in-flight requests finished, nothing answered 5xx, exit in bounds.
    assert took < SHUTDOWN_TIMEOUT + 3
    answered = [r for r in results if r.status is not None]
    assert len(answered) > 50
    assert [r for r in answered if (r.status or 0) >= 500] == []
    in_flight = [r for r in answered if r.sent < terminated_at < r.done]
    assert in_flight, "no request was in flight when SIGTERM came; the test proves nothing"
    access = {
        line["request_id"]: line
        for line in stack.lines("serve")
        if line["logger"] == "governance.access"
    }
    # A request that failed on the client never reached the application (no access line):
    # connections refused or closed idle by the stopping server, not answers lost mid-flight.
    failed = [r for r in results if r.error is not None]
    assert [r for r in failed if r.request_id in access] == []
    assert all(access[r.request_id]["status"] == r.status for r in answered)

    followed = access["follow-me-1"]
    assert (followed["route"], followed["account_id"], followed["site_id"]) == (
        "/v1/orgs/{org_id}/sites/{site_id}",
        "olga",
        "s1",
    )
    stopped = _positions(stack.lines(stack.projector_role()), "projector stopped")

    # A restart continues where the projector stopped, and the views equal a full rebuild.
    stack.start()
    assert _positions(stack.lines(stack.projector_role()), "projector started") == stopped
    with httpx2.Client(base_url=stack.url, timeout=10) as http:
        history = http.get("/v1/sites/s1/history?limit=1", headers=admin).json()["events"]
        assert (history[0]["type"], history[0]["request_id"]) == ("SiteRegistered", "follow-me-1")
        again = http.post(
            "/v1/sites/s1/installations",
            json={"app_id": "after-restart", "app_name": "After", "scopes": []},
            headers=admin,
        )
        assert again.status_code == 201
        apps = http.get(
            f"/v1/sites/s1/connected-apps?min_position={again.headers['X-Event-Position']}",
            headers=admin,
        ).json()["apps"]
        assert "after-restart" in {app["app_id"] for app in apps}
    stack.terminate()
    _assert_views_equal_a_rebuild(stack.settings)


def _positions(lines: list[dict[str, Any]], message: str) -> dict[str, int]:
    found = [line["positions"] for line in lines if line["message"].startswith(message)]
    assert len(found) == 1, f"expected one {message!r} line, got {len(found)}"
    positions: dict[str, int] = found[0]
    assert positions and min(positions.values()) > 0
    return positions


def _assert_views_equal_a_rebuild(settings: Settings) -> None:
    runtime = Runtime(settings)
    try:
        head = runtime.application.head_position()
        assert runtime.projector.position() == head
        projected = dump_views(runtime)
        rebuild(runtime)
        assert dump_views(runtime) == projected
    finally:
        runtime.close()
