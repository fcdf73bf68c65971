"""Secrets: a shared deployment refuses weak secrets, and no secret leaks into bodies or logs."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx2
import pytest

from tests.conftest import require_env
from tests.e2e.conftest import GOVERNANCE, free_port, wait_until_ready


def serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GOVERNANCE, "serve"], env=env, capture_output=True, text=True, timeout=timeout
    )


def postgres_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GOVERNANCE_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env |= {
        "DATABASE_URL": require_env("DATABASE_URL"),
        "GOVERNANCE_DATA_DIR": str(tmp_path / "var"),
        "PORT": str(free_port()),
    }
    return env | extra


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "must be set"),
        ("change-me", "placeholder"),
        ("short-but-random-9f8e7d", "at least 32"),
    ],
)
def test_the_server_refuses_to_start_on_postgres_with_a_weak_secret(
    tmp_path: Path, secret: str | None, reason: str
) -> None:
    extra = {} if secret is None else {"GOVERNANCE_JWT_SECRET": secret}
    refused = serve(postgres_env(tmp_path, **extra))
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("configuration error: GOVERNANCE_JWT_SECRET")
    assert reason in lines[0]
    if secret is not None:
        assert secret not in refused.stderr


def test_the_embedded_default_still_starts_without_a_secret(tmp_path: Path) -> None:
    env = postgres_env(tmp_path)
    del env["DATABASE_URL"]
    process = subprocess.Popen([*GOVERNANCE, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(f"http://127.0.0.1:{env['PORT']}", process)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_no_secret_in_error_bodies_or_logs(tmp_path: Path) -> None:
    secret = "leak-check-" + uuid.uuid4().hex
    database_url = require_env("DATABASE_URL")
    wrong_password = database_url.replace("@", "x@", 1) if "@" in database_url else database_url
    env = postgres_env(tmp_path, GOVERNANCE_JWT_SECRET=secret)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        subprocess.run([*GOVERNANCE, "migrate"], env=env, check=True, capture_output=True)
        process = subprocess.Popen([*GOVERNANCE, "serve"], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{env['PORT']}"
        bodies = []
        try:
            wait_until_ready(url, process)
            with httpx2.Client(base_url=url, timeout=10) as http:
                for headers in (
                    {},
                    {"Authorization": "Bearer " + secret},
                    {"Authorization": "Bearer x.y.z"},
                    {"Authorization": f"Basic {secret}"},
                ):
                    bodies.append(http.get("/v1/orgs/acme/sites", headers=headers).text)
                bodies.append(http.put("/v1/orgs/acme/sites/s1", content=b"{").text)
                bodies.append(http.get("/nowhere").text)
                bodies.append(http.get("/ready").text)
        finally:
            process.terminate()
            process.wait(timeout=15)
    # A second server with a wrong database password: it must fail without printing it.
    bad_env = env | {"DATABASE_URL": wrong_password, "PORT": str(free_port())}
    failed = subprocess.run(
        [*GOVERNANCE, "migrate"], env=bad_env, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode != 0
    texts = [*bodies, log_path.read_text(errors="replace"), failed.stdout, failed.stderr]
    password = database_url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    for text in texts:
        assert secret not in text
        assert database_url not in text and wrong_password not in text
        assert f":{password}@" not in text and f":{password}x@" not in text
