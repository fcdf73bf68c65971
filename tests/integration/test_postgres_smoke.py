"""Events saved through the application land in the real PostgreSQL and read back."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from governance.domain.actor import Actor
from governance.domain.site import UserInstalls
from governance.runtime import Runtime, migrate
from tests.conftest import drop_schema, make_settings


def test_events_round_trip_through_postgres(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings("postgres", tmp_path)
    migrate(settings)
    try:
        runtime = Runtime(settings)
        try:
            runtime.application.register_site("acme", "s1", "One", Actor("alice"))
            runtime.application.set_user_installs("s1", UserInstalls.BLOCKED, Actor("alice"))
            stored = runtime.application.recorder.select_notifications(start=1, limit=10)
            events = [runtime.application.mapper.to_domain_event(n) for n in stored]
        finally:
            runtime.close()
        assert [type(e).__name__ for e in events] == ["SiteRegistered", "UserInstallsBlocked"]
        with psycopg.connect(postgres_url) as conn:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.governance_events").format(
                    sql.Identifier(settings.database_schema)
                )
            ).fetchone()
        assert count == (2,)
    finally:
        drop_schema(settings)
