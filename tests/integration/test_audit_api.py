"""Auditors read their organization's events over HTTP and export them from the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg import sql

from governance.audit.export import Format, Selection, records, write
from governance.auth import Role
from governance.domain.actor import Actor
from governance.runtime import Runtime
from tests.conftest import Tokens
from tests.integration.audit_support import many_installs, run_cli, write_some_events

FIELDS = {
    "position",
    "event_id",
    "type",
    "org_id",
    "site_id",
    "actor",
    "on_behalf_of",
    "request_id",
    "reason",
    "occurred_at",
    "data",
}


def page_through(
    client: TestClient, headers: dict[str, str], limit: int, **filters: str
) -> list[dict[str, Any]]:
    """Follow next_after from the start to the end, as an auditor's script would."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        params = {"after": str(after), "limit": str(limit), **filters}
        response = client.get("/v1/audit/events", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        events += body["events"]
        if body["next_after"] is None:
            return events
        after = body["next_after"]


def caught_up(runtime: Runtime) -> None:
    assert runtime.projector.wait_for(runtime.application.head_position(), 10)


def test_an_auditor_pages_through_every_event_of_the_org_without_gap_or_repeat(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    app = runtime.application
    write_some_events(app, "s1")
    if runtime.settings.uses_postgres:
        leave_a_gap(runtime)
    write_some_events(app, "g1", org="globex")
    write_some_events(app, "s2")
    caught_up(runtime)
    auditor = tokens.header("audrey", Role.AUDITOR)
    everything = page_through(client, auditor, limit=1000)
    positions = [e["position"] for e in everything]
    stored = [n.id for n in app.recorder.select_notifications(start=1, limit=1000)]
    assert len(positions) == 16 and len(stored) == 24
    for limit in (1, 3, 7):
        assert page_through(client, auditor, limit=limit) == everything
    assert positions == sorted(set(positions))
    assert {e["org_id"] for e in everything} == {"acme"}
    assert all(set(e) == FIELDS for e in everything)
    blocked = next(e for e in everything if e["type"] == "UserInstallsBlocked")
    assert (blocked["actor"], blocked["request_id"], blocked["reason"]) == (
        "olga",
        "req-1",
        "review",
    )
    assert blocked["data"]["existing_user_installs"] == "keep"
    org_admin = tokens.header("olga", Role.ORG_ADMIN)
    assert page_through(client, org_admin, limit=50) == everything
    other = page_through(client, tokens.header("gus", Role.AUDITOR, org="globex"), limit=50)
    assert len(other) == 8 and {e["site_id"] for e in other} == {"g1"}
    # Gaps in positions are not tampering: the chain links the events that were stored.
    assert client.get("/v1/audit/verify", headers=auditor).json()["intact"] is True


def leave_a_gap(runtime: Runtime) -> None:
    """Burn a position the way a rolled-back insert does (PostgreSQL sequences never go back)."""
    settings = runtime.settings
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            sql.SQL("SELECT nextval(pg_get_serial_sequence({}, 'notification_id'))").format(
                sql.Literal(f"{settings.database_schema}.governance_events")
            )
        )


def test_filters_by_site_type_actor_and_time(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    app = runtime.application
    write_some_events(app, "s1")
    middle = app.head_position()
    write_some_events(app, "s2")
    caught_up(runtime)
    auditor = tokens.header("audrey", Role.AUDITOR)
    everything = page_through(client, auditor, limit=100)
    by_site = page_through(client, auditor, limit=4, site_id="s2")
    assert by_site == [e for e in everything if e["site_id"] == "s2"]
    refusals = page_through(client, auditor, limit=4, type="InstallBlocked")
    assert [e["site_id"] for e in refusals] == ["s1", "s2"]
    by_ben = page_through(client, auditor, limit=4, actor="ben")
    assert by_ben == [e for e in everything if e["actor"] == "ben"]
    first_of_s2 = next(e for e in everything if e["position"] == middle + 1)["occurred_at"]
    later = page_through(client, auditor, limit=4, since=first_of_s2)
    assert later == [e for e in everything if e["position"] > middle]
    earlier = page_through(client, auditor, limit=4, until=first_of_s2)
    assert earlier == [e for e in everything if e["position"] <= middle]
    history = client.get(
        "/v1/sites/s2/history", params={"until": first_of_s2}, headers=auditor
    ).json()
    assert history["events"] == []


def test_who_may_read_the_trail_and_bad_queries(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    write_some_events(runtime.application)
    caught_up(runtime)
    for role in (Role.USER, Role.SITE_ADMIN):
        who = tokens.header("x", role, sites=("s1",))
        denied = client.get("/v1/audit/events", headers=who)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert client.get("/v1/audit/events").status_code == 401
    auditor = tokens.header("audrey", Role.AUDITOR)
    bad = {
        "type": {"type": "Nope"},
        "since": {"since": "2026-01-01T00:00:00"},
        "until": {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        "limit": {"limit": "0"},
        "after": {"after": "-1"},
    }
    for field, params in bad.items():
        response = client.get("/v1/audit/events", params=params, headers=auditor)
        assert response.status_code == 422, field
        assert field in response.json()["error"]["message"]


def test_a_request_id_and_a_service_acting_for_a_policy_change_are_on_record(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    blocked = client.put(
        "/v1/sites/s1/policy/user-installs",
        json={"state": "blocked", "reason": "incident 7"},
        headers=admin | {"X-Request-Id": "req-42"},
    )
    # What the enforce-block reaction does: an admin removal on behalf of the policy change.
    service = Actor("enforce-block", request_id="req-42", on_behalf_of="policy v2")
    runtime.application.remove_app("s1", "wiki", service, "policy v2", connected=True)
    caught_up(runtime)
    assert blocked.status_code == 200
    events = page_through(client, tokens.header("audrey", Role.AUDITOR), limit=10)
    change, removal = events[1], events[2]
    assert (change["actor"], change["request_id"], change["reason"]) == (
        "olga",
        "req-42",
        "incident 7",
    )
    assert (removal["actor"], removal["on_behalf_of"]) == ("enforce-block", "policy v2")
    history = client.get("/v1/sites/s1/history", headers=admin).json()["events"]
    assert history[1]["summary"] == (
        "olga blocked user installs, keeping the apps users had installed (reason: incident 7)"
    )
    assert history[2]["summary"].startswith("enforce-block (for policy v2) removed wiki")


def test_the_export_gives_the_api_fields_in_jsonl_and_csv(
    client: TestClient, tokens: Tokens, runtime: Runtime, tmp_path: Path
) -> None:
    app = runtime.application
    write_some_events(app, "s1")
    many_installs(app, "s1", 3000)
    write_some_events(app, "g1", org="globex")
    caught_up(runtime)
    api = page_through(client, tokens.header("audrey", Role.AUDITOR), limit=1000)
    assert len(api) == 3008

    target = tmp_path / "trail.jsonl"
    code, output = run_cli(runtime.settings, "audit", "export", "--org", "acme", "-o", str(target))
    assert code == 0, output
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert exported == api

    code, output = run_cli(runtime.settings, "audit", "export", "--format", "csv", "--site", "g1")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(output)))
    assert [row["site_id"] for row in rows] == ["g1"] * 8
    assert set(rows[0]) == FIELDS and json.loads(rows[1]["data"])["app_id"] == "wiki"
    since = api[100]["occurred_at"]
    code, output = run_cli(runtime.settings, "audit", "export", "--org", "acme", "--since", since)
    assert [json.loads(line) for line in output.splitlines()] == [
        e for e in api if datetime.fromisoformat(e["occurred_at"]) >= datetime.fromisoformat(since)
    ]
    code, output = run_cli(runtime.settings, "audit", "export", "--format", "xml")
    assert code == 2 and "jsonl or csv" in output


def test_the_export_streams_in_flat_memory(runtime: Runtime) -> None:
    app = runtime.application
    write_some_events(app, "s1")
    many_installs(app, "s1", 1200)
    caught_up(runtime)  # the projector thread idles: only the export allocates now

    def peak(events: int) -> int:
        with open(os.devnull, "w") as out:
            tracemalloc.start()
            try:
                rows = records(app.recorder, app.mapper, Selection(org_id="acme"), page=100)
                first = (row for _, row in zip(range(events), rows, strict=False))
                assert write(first, out, Format.JSONL) == events
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    small, large = peak(200), peak(1200)
    # Six times the events, the same memory (one page of 100 at a time): not six times as much.
    assert large < small * 1.5, (small, large)
