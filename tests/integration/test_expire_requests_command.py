"""`governance expire-requests`: one sweep from the command line, on both backends."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from governance.cli import cli
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.site import UserInstalls
from governance.runtime import Runtime
from projections import app_requests as requests_view


def test_the_command_expires_old_open_cases_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(settings)
    try:
        app = runtime.application
        app.register_site("acme", "s1", "One", Actor("olga"))
        app.set_user_installs("s1", UserInstalls.BLOCKED, Actor("olga"))
        for app_id in ("jira", "wiki"):
            app.request_app("s1", app_id, app_id, ["read"], "why", Actor("ann"), InstalledBy.USER)
    finally:
        runtime.close()
    time.sleep(0.2)
    monkeypatch.setenv("GOVERNANCE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GOVERNANCE_JWT_SECRET", "cli-test")
    monkeypatch.setenv("GOVERNANCE_APP_REQUEST_TTL_DAYS", str(0.1 / 86400))  # 0.1 s
    if settings.database_url is not None:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("GOVERNANCE_DATABASE_SCHEMA", settings.database_schema)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)

    first = CliRunner().invoke(cli, ["expire-requests"])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == ["expired 2 request case(s)", "jira~1", "wiki~1"]
    again = CliRunner().invoke(cli, ["expire-requests"])
    assert again.output.splitlines() == ["expired 0 request case(s)"]

    runtime = Runtime(settings)
    try:
        runtime.projector.catch_up()
        with runtime.views.read() as tx:
            cases = requests_view.cases(tx, "s1", "expired", 10)
    finally:
        runtime.close()
    assert [(c.case_id, c.decided_by) for c in cases] == [
        ("jira~1", "governance:request-expiry"),
        ("wiki~1", "governance:request-expiry"),
    ]
