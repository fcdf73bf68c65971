"""Fixtures shared by every tier: settings per backend, a running runtime, tokens, an HTTP client.

PostgreSQL and Kafka are the real servers named by DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS
(`make test` starts them). A test that needs one fails when it is missing; it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.runtime import Runtime, migrate

BACKENDS = ["sqlite", "postgres"]


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: this test needs the real server. Run `make test`, which starts"
            f" it, or point {name} at a running one.",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return require_env("DATABASE_URL")


@pytest.fixture(scope="session")
def kafka_servers() -> str:
    return require_env("KAFKA_BOOTSTRAP_SERVERS")


def make_settings(backend: str, tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "jwt_secret": "test-secret-" + uuid.uuid4().hex,
        "projector_idle_wait": 0.05,
        "database_url": None,
        "kafka_bootstrap_servers": None,
    }
    if backend == "postgres":
        base["database_url"] = require_env("DATABASE_URL")
        base["database_schema"] = "t_" + uuid.uuid4().hex[:12]
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def drop_schema(settings: Settings) -> None:
    """Drop the test's schema and its read models' generations (`<schema>_views_<N>`)."""
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        base = settings.database_schema
        generations = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (base + "_views_",)
        ).fetchall()
        for schema in [base, *(name for (name,) in generations)]:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh, migrated store: embedded SQLite, or a new PostgreSQL schema."""
    configured = make_settings(request.param, tmp_path)
    migrate(configured)
    yield configured
    if configured.uses_postgres:
        drop_schema(configured)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    live = Runtime(settings)
    live.start_projector()
    yield live
    live.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


class Tokens:
    """Issues bearer tokens the runtime under test accepts."""

    def __init__(self, runtime: Runtime) -> None:
        self._codec = runtime.tokens
        self.secret = runtime.settings.resolved_jwt_secret()

    def header(
        self, sub: str, *roles: Role, org: str = "acme", sites: tuple[str, ...] = ()
    ) -> dict[str, str]:
        token = self._codec.issue(sub=sub, org=org, roles=roles, sites=sites)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(runtime: Runtime) -> Tokens:
    return Tokens(runtime)
