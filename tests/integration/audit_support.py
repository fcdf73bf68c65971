"""Shared by the audit tests: a small log written through the application, raw SQL, the CLI."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from typer.testing import CliRunner

from governance.application import GovernanceApplication
from governance.cli import cli
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.errors import GrantNotFound
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.site import UserInstalls
from governance.eventstore import sqlite_events_path
from governance.runtime import Runtime


def write_some_events(app: GovernanceApplication, site: str = "s1", org: str = "acme") -> int:
    """Register a site, install, block, refuse, remove: return the head position."""
    admin = Actor("olga", request_id="req-1")
    app.register_site(org, site, "One", admin)
    for user in ("ann", "ben", "cat"):
        app.install_app(site, "wiki", "Wiki", ["read"], Actor(user), InstalledBy.USER)
    app.set_user_installs(site, UserInstalls.BLOCKED, admin, reason="review")
    app.install_app(site, "chat", "Chat", [], Actor("ann"), InstalledBy.USER)
    app.remove_app(site, "wiki", admin, "unvetted", connected=True)
    app.set_user_installs(site, UserInstalls.ALLOWED, admin)
    return app.head_position()


def many_installs(app: GovernanceApplication, site: str, count: int, org: str = "acme") -> None:
    """`count` users install apps, saved 500 grants per transaction (the aggregates' own rules)."""
    now = datetime.now(UTC)
    grants = []
    for i in range(count):
        account, app_id = f"u{i}", f"app-{i % 40}"
        grant = Grant.open(site, app_id, account, now)
        request = InstallRequest(org, site, app_id, f"App {i % 40}", [f"s{i % 3}"], 1)
        grant.install(request, Actor(account), installed_by=InstalledBy.USER, removal_epoch=0)
        grants.append(grant)
    for start in range(0, count, 500):
        app.save(*grants[start : start + 500])


SITES = ("s1", "s2")
APPS = ("wiki", "chat", "crm", "drive")
PEOPLE = ("ann", "ben", "cat", "dan")


def random_history(runtime: Runtime, rng: random.Random, commands: int) -> None:
    app = runtime.application
    admin = Actor("olga")
    for site in SITES:
        app.register_site("acme", site, site.upper(), admin)
    for _ in range(commands):
        site, app_id, person = rng.choice(SITES), rng.choice(APPS), rng.choice(PEOPLE)
        roll = rng.random()
        if roll < 0.12:
            state = rng.choice([UserInstalls.BLOCKED, UserInstalls.ALLOWED])
            app.set_user_installs(site, state, admin, reason=rng.choice([None, "review"]))
        elif roll < 0.2:
            app.remove_app(site, app_id, admin, "cleanup", connected=True)
        elif roll < 0.35:
            with contextlib.suppress(GrantNotFound):
                app.uninstall_app(site, app_id, Actor(person))
        else:
            as_admin = rng.random() < 0.2
            scopes = rng.sample(["read", "write", "admin"], rng.randint(0, 2))
            installer = InstalledBy.ADMIN if as_admin else InstalledBy.USER
            who = Actor("olga" if as_admin else person)
            app.install_app(site, app_id, app_id.title(), scopes, who, installer)


class RawLog:
    """The stored log and its chain, edited behind the application's back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def postgres(self) -> bool:
        return self.settings.uses_postgres

    def execute(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement written with {events}, {chain} and {id} placeholders."""
        if self.postgres:
            assert self.settings.database_url is not None
            schema = self.settings.database_schema
            query = sql.SQL(statement).format(
                events=sql.Identifier(schema, "governance_events"),
                chain=sql.Identifier(schema, "governance_events_chain"),
                id=sql.Identifier("notification_id"),
            )
            with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                cursor = conn.execute(query, params)
                return cursor.fetchall() if cursor.description else []
        text = statement.format(events="stored_events", chain="stored_events_chain", id="rowid")
        lite = sqlite3.connect(sqlite_events_path(self.settings), isolation_level=None)
        try:
            return lite.execute(text.replace("%s", "?"), params).fetchall()
        finally:
            lite.close()

    def state(self, position: int) -> bytes:
        return bytes(self.execute("SELECT state FROM {events} WHERE {id} = %s", position)[0][0])


def cli_env(settings: Settings) -> dict[str, str]:
    env = {
        "GOVERNANCE_DATA_DIR": str(settings.data_dir),
        "GOVERNANCE_JWT_SECRET": "cli-test-secret",
        "DATABASE_URL": settings.database_url or "",
        "KAFKA_BOOTSTRAP_SERVERS": "",
    }
    if settings.uses_postgres:
        env["GOVERNANCE_DATABASE_SCHEMA"] = settings.database_schema
    return env


def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    """`governance ...` in this process, configured like a server on `settings`."""
    result = CliRunner().invoke(cli, list(args), env=cli_env(settings), catch_exceptions=False)
    return result.exit_code, result.output
