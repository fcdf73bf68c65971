"""The service as users run it: `governance` processes on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx2
import pytest

from governance.config import Settings
from tests.conftest import BACKENDS, drop_schema, make_settings

GOVERNANCE = [sys.executable, "-m", "governance"]


@dataclass
class Service:
    url: str
    env: dict[str, str]

    def token(self, sub: str, role: str, org: str = "acme", *sites: str) -> dict[str, str]:
        command = [*GOVERNANCE, "token", "--sub", sub, "--org", org, "--role", role]
        for site in sites:
            command += ["--site", site]
        token = subprocess.run(
            command, env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()
        return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx2.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout} s")


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """`governance serve` on SQLite; on PostgreSQL, after `migrate`, beside `governance project`.

    A test module may set `SERVICE_ENV = {...}` to give the processes more environment.
    """
    settings = make_settings(request.param, tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "GOVERNANCE_DATA_DIR": str(settings.data_dir),
        "GOVERNANCE_JWT_SECRET": "e2e-" + uuid.uuid4().hex,
        "PORT": str(port),
        # Workers serve /metrics on any free port (named in their log): tests run many at once.
        "GOVERNANCE_METRICS_PORT": "0",
        **getattr(request.module, "SERVICE_ENV", {}),
    }
    env.pop("DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    processes: list[subprocess.Popen[bytes]] = []
    with (tmp_path / "server.log").open("wb") as log:
        yield from _run(settings, env, processes, log, port)


def _run(
    settings: Settings,
    env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
    log: BinaryIO,
    port: int,
) -> Iterator[Service]:
    if settings.uses_postgres:
        assert settings.database_url is not None
        env["DATABASE_URL"] = settings.database_url
        env["GOVERNANCE_DATABASE_SCHEMA"] = settings.database_schema
        env["GOVERNANCE_RUN_PROJECTOR"] = "false"
        subprocess.run([*GOVERNANCE, "migrate"], env=env, check=True, capture_output=True)
        processes.append(subprocess.Popen([*GOVERNANCE, "project"], env=env, stderr=log))
    processes.append(subprocess.Popen([*GOVERNANCE, "serve"], env=env, stderr=log))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, processes[-1])
        yield Service(url, env)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        if settings.uses_postgres:
            drop_schema(settings)
