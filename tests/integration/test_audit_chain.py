"""The hash chain catches events edited, deleted, inserted or swapped with raw SQL.

Each test writes a log through the application on the real backend, tampers with the stored rows
the way someone with database access would, and asks `governance audit verify` (and the API)
where the log stops being what was written.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from governance.application import GovernanceApplication
from governance.audit.seal import GENESIS, link
from governance.audit.verify import Head, Problem, Tampering, chain_store, verify
from governance.auth import Role
from governance.config import Settings
from governance.eventstore import event_store_env
from governance.runtime import Runtime, migrate
from tests.conftest import Tokens
from tests.integration.audit_support import RawLog, run_cli, write_some_events


@pytest.fixture
def head(runtime: Runtime) -> int:
    return write_some_events(runtime.application)


def verdict(runtime: Runtime) -> tuple[int, str] | None:
    """(position, kind) of the first problem `governance audit verify --json` reports."""
    code, output = run_cli(runtime.settings, "audit", "verify", "--json")
    report = json.loads(output)
    assert code == (0 if report["intact"] else 1)
    problem = report["problem"]
    return (problem["position"], problem["kind"]) if problem else None


def test_an_untouched_log_verifies_and_its_head_can_be_published(
    runtime: Runtime, head: int
) -> None:
    assert verdict(runtime) is None
    code, output = run_cli(runtime.settings, "audit", "head")
    assert code == 0
    published = Head.parse(output)
    assert published.position == head
    # The head is the chain recomputed by hand over every stored event.
    digest = GENESIS
    for n in runtime.application.recorder.select_notifications(start=1, limit=100):
        digest = link(digest, n.id, n.originator_id, n.originator_version, n.topic, n.state)
    assert published.hash == digest
    code, output = run_cli(runtime.settings, "audit", "verify", "--head", str(published))
    assert code == 0 and "matches the published head" in output


def test_an_edited_event_is_found_at_its_position(runtime: Runtime, head: int) -> None:
    raw = RawLog(runtime.settings)
    edited = raw.state(3).replace(b'"ben"', b'"eve"')
    assert edited != raw.state(3)
    raw.execute("UPDATE {events} SET state = %s WHERE {id} = %s", edited, 3)
    assert verdict(runtime) == (3, "edited")


def test_a_deleted_event_is_found_at_its_position(runtime: Runtime, head: int) -> None:
    raw = RawLog(runtime.settings)
    raw.execute("DELETE FROM {events} WHERE {id} = %s", 4)
    assert verdict(runtime) == (4, "deleted")


def test_an_event_deleted_with_its_seal_is_found(runtime: Runtime, head: int) -> None:
    raw = RawLog(runtime.settings)
    raw.execute("DELETE FROM {events} WHERE {id} = %s", 5)
    raw.execute("DELETE FROM {chain} WHERE position = %s", 5)
    assert verdict(runtime) == (5, "deleted")


def test_an_inserted_event_is_found(runtime: Runtime, head: int) -> None:
    raw = RawLog(runtime.settings)
    # A copy of an install, under another stream: it lands after the last sealed event.
    (originator, version, topic, state) = raw.execute(
        "SELECT originator_id, originator_version, topic, state FROM {events} WHERE {id} = %s", 2
    )[0]
    forged = originator.replace("0", "1", 1) if isinstance(originator, str) else None
    if forged is None:
        forged = type(originator)(int=originator.int ^ 1)
    raw.execute(
        "INSERT INTO {events} (originator_id, originator_version, topic, state)"
        " VALUES (%s, %s, %s, %s)",
        forged,
        version,
        topic,
        state,
    )
    assert verdict(runtime) == (head + 1, "inserted")


def test_swapped_events_are_found_at_the_first_of_the_two(runtime: Runtime, head: int) -> None:
    raw = RawLog(runtime.settings)
    raw.execute("UPDATE {events} SET {id} = %s WHERE {id} = %s", 10_000, 3)
    raw.execute("UPDATE {events} SET {id} = %s WHERE {id} = %s", 3, 6)
    raw.execute("UPDATE {events} SET {id} = %s WHERE {id} = %s", 6, 10_000)
    assert verdict(runtime) == (3, "reordered")


def test_a_rewritten_chain_is_caught_only_by_a_published_head(runtime: Runtime, head: int) -> None:
    published = verify(chain_store(runtime.settings)).head
    assert published is not None and published.position == head
    raw = RawLog(runtime.settings)
    # Edit event 2 and recompute every seal after it, as an attacker with full access could.
    raw.execute("UPDATE {events} SET state = %s WHERE {id} = %s", raw.state(2) + b" ", 2)
    digest = bytes(raw.execute("SELECT hash FROM {chain} WHERE position = %s", 1)[0][0])
    rows = raw.execute(
        "SELECT {id}, originator_id, originator_version, topic, state FROM {events}"
        " WHERE {id} > 1 ORDER BY {id}"
    )
    for position, originator, version, topic, state in rows:
        digest = link(digest, position, originator, version, topic, bytes(state))
        raw.execute("UPDATE {chain} SET hash = %s WHERE position = %s", digest, position)
    assert verdict(runtime) is None  # consistent on its own...
    code, output = run_cli(runtime.settings, "audit", "verify", "--head", str(published))
    assert code == 1 and f"position {head} (rewritten)" in output  # ...but not with the head


def test_a_truncated_log_is_caught_by_a_published_head(runtime: Runtime, head: int) -> None:
    published = verify(chain_store(runtime.settings)).head
    raw = RawLog(runtime.settings)
    raw.execute("DELETE FROM {events} WHERE {id} = %s", head)
    raw.execute("DELETE FROM {chain} WHERE position = %s", head)
    assert verdict(runtime) is None
    result = verify(chain_store(runtime.settings), published)
    assert result.problem is not None
    assert (result.problem.position, result.problem.kind) == (head, Tampering.TRUNCATED)


def test_auditors_verify_over_http(
    client: TestClient, tokens: Tokens, runtime: Runtime, head: int
) -> None:
    auditor = tokens.header("audrey", Role.AUDITOR)
    clean = client.get("/v1/audit/verify", headers=auditor).json()
    assert (clean["intact"], clean["problem"]) == (True, None)
    published = verify(chain_store(runtime.settings)).head
    checked = client.get("/v1/audit/verify", params={"head": str(published)}, headers=auditor)
    assert checked.json()["intact"] is True
    RawLog(runtime.settings).execute("DELETE FROM {events} WHERE {id} = %s", 2)
    tampered = client.get("/v1/audit/verify", headers=auditor).json()
    assert tampered["intact"] is False
    problem = tampered["problem"]
    assert (problem["in_your_organization"], problem["position"], problem["kind"]) == (
        True,
        2,
        "deleted",
    )
    user = tokens.header("ann", Role.USER, sites=("s1",))
    assert client.get("/v1/audit/verify", headers=user).status_code == 403
    bad = client.get("/v1/audit/verify", params={"head": "abc@1"}, headers=auditor)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_over_http_an_auditor_learns_nothing_of_other_organizations(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    app = runtime.application
    write_some_events(app, "s1", org="acme")  # positions 1-8
    end = write_some_events(app, "g1", org="globex")  # 9-16
    assert runtime.projector.wait_for(end, 10)
    acme = tokens.header("audrey", Role.AUDITOR)
    globex = tokens.header("gus", Role.AUDITOR, org="globex")
    clean = client.get("/v1/audit/verify", headers=acme).json()
    # No count of checked events, no head position: both measure every organization's events.
    assert set(clean) == {"intact", "problem", "scope"} and clean["intact"] is True
    RawLog(runtime.settings).execute("DELETE FROM {events} WHERE {id} = %s", 11)
    outside = client.get("/v1/audit/verify", headers=acme).json()
    assert outside["intact"] is False
    assert outside["problem"] == {
        "in_your_organization": False,
        "position": None,
        "kind": None,
        "message": "the log is damaged at a position outside your organization; an operator"
        " can locate it with `governance audit verify`",
    }
    assert "11" not in json.dumps(outside)
    inside = client.get("/v1/audit/verify", headers=globex).json()["problem"]
    assert (inside["in_your_organization"], inside["position"], inside["kind"]) == (
        True,
        11,
        "deleted",
    )
    # Probing with invented heads cannot measure the log: past its end or at another
    # organization's event, the answer is the same.
    fake = "00" * 32
    answers = [
        client.get("/v1/audit/verify", params={"head": f"{fake}@{at}"}, headers=acme).json()
        for at in (10, 16, 17, 5_000)
    ]
    assert all(a == outside for a in answers)
    # The operator's CLI still answers in full.
    code, output = run_cli(runtime.settings, "audit", "verify", "--json")
    report = json.loads(output)
    assert code == 1 and report["checked"] == 10 and report["head"]["position"] == 10
    assert (report["problem"]["position"], report["problem"]["kind"]) == (11, "deleted")


def test_over_http_events_moved_across_organizations_are_located_for_both(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    write_some_events(runtime.application, "s1", org="acme")
    end = write_some_events(runtime.application, "g1", org="globex")
    assert runtime.projector.wait_for(end, 10)
    raw = RawLog(runtime.settings)
    # Swap an acme event with a globex one: acme's auditor sees the first of the two.
    raw.execute("UPDATE {events} SET {id} = %s WHERE {id} = %s", 10_000, 3)
    raw.execute("UPDATE {events} SET {id} = %s WHERE {id} = %s", 3, 12)
    raw.execute("UPDATE {events} SET {id} = %s WHERE {id} = %s", 12, 10_000)
    acme = tokens.header("audrey", Role.AUDITOR)
    problem = client.get("/v1/audit/verify", headers=acme).json()["problem"]
    assert (problem["position"], problem["kind"]) == (3, "reordered")
    assert "12" not in problem["message"]
    # globex's event now sits at 3: the first damage is at an acme position to its auditor too,
    # and it is their event that was moved there.
    globex = tokens.header("gus", Role.AUDITOR, org="globex")
    problem = client.get("/v1/audit/verify", headers=globex).json()["problem"]
    assert (problem["position"], problem["kind"]) == (3, "reordered")


def test_migrate_seals_a_log_written_before_the_chain_existed(settings: Settings) -> None:
    # The library's own recorder, as before this version: events without seals.
    env = event_store_env(settings, create_table=False)
    del env["APPLICATION_RECORDER_TOPIC"]
    old = GovernanceApplication(env=env)
    try:
        write_some_events(old, "s7")
    finally:
        old.close()
    RawLog(settings).execute("DELETE FROM {chain}")
    assert verify(chain_store(settings)).problem == Problem(
        1, Tampering.INSERTED, "an event is stored at position 1 that was never sealed"
    )
    assert migrate(settings) == 8
    assert migrate(settings) == 0  # once only
    result = verify(chain_store(settings))
    assert result.intact and result.checked == 8
