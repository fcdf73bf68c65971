"""App lists and requests through the service layer, on the library's in-memory store."""

from __future__ import annotations

from uuid import UUID

import pytest

from governance.application import GovernanceApplication, InstallStatus
from governance.domain.actor import Actor
from governance.domain.consent import ConsentReason
from governance.domain.errors import AppIsBlocked, RequestNotNeeded
from governance.domain.grant import Grant, InstalledBy
from governance.domain.ids import site_aggregate_id
from governance.domain.request_case import AppRequestCase
from governance.domain.site import ExistingUserInstalls, Site, UserInstalls
from governance.reporting import CommandReport, Outcome

OLGA = Actor("olga", "req-o")
ANN = Actor("ann", "req-a")
BEN = Actor("ben", "req-b")
USER, ADMIN = InstalledBy.USER, InstalledBy.ADMIN


@pytest.fixture
def app() -> GovernanceApplication:
    governance = GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    governance.register_site("acme", "s1", "One", OLGA)
    governance.set_user_installs("s1", UserInstalls.BLOCKED, OLGA, reason="review")
    return governance


def stream(app: GovernanceApplication, aggregate_id: UUID) -> list[type]:
    return [type(e) for e in app.repository.event_store.get(aggregate_id)]


def case_stream(app: GovernanceApplication) -> list[type]:
    return stream(app, AppRequestCase.id_for("s1", "x"))


def request(
    app: GovernanceApplication, who: Actor, *scopes: str, app_id: str = "x"
) -> tuple[bool, str]:
    result, mine = app.request_app("s1", app_id, "X", scopes, "for reports", who, USER)
    return result.changed, mine.case.case_id


def test_approving_a_case_approves_the_app_in_the_same_transaction(
    app: GovernanceApplication,
) -> None:
    assert request(app, ANN, "read") == (True, "x~1")
    assert request(app, BEN, "write") == (True, "x~1")
    result, case = app.approve_request("s1", "x~1", OLGA, scopes=["read"], reason="vetted")
    assert (case.status, case.approved_scopes, case.requester_count) == ("approved", ("read",), 2)
    notifications = app.recorder.select_notifications(start=1, limit=100)
    last_two = [n.topic.rsplit(".", 1)[-1] for n in notifications[-2:]]
    assert sorted(last_two) == ["AppApproved", "AppRequestApproved"]
    assert result.position == notifications[-1].id
    site: Site = app.repository.get(site_aggregate_id("s1"))
    assert site.approved_scopes("x") == ["read"]
    assert site.app_lists["x"]["case_id"] == "x~1"
    # Within the approval the user installs; beyond it the rule refuses, with its own reason.
    assert app.install_app("s1", "x", "X", ["read"], ANN, USER).status is InstallStatus.INSTALLED
    wider = app.install_app("s1", "x", "X", ["read", "write"], BEN, USER)
    assert (wider.status, wider.reason, wider.can_request) == (
        InstallStatus.REFUSED,
        ConsentReason.SCOPES_EXCEED_APPROVAL,
        True,
    )


def test_a_later_approval_adds_scopes_to_the_earlier_one(app: GovernanceApplication) -> None:
    app.approve_app("s1", "x", "X", ["read"], OLGA)
    assert request(app, ANN, "read", "write") == (True, "x~1")
    app.approve_request("s1", "x~1", OLGA)
    assert app.repository.get(site_aggregate_id("s1")).approved_scopes("x") == ["read", "write"]


def test_an_open_request_refuses_installs_as_pending_and_asking_again_writes_nothing(
    app: GovernanceApplication,
) -> None:
    request(app, ANN, "read")
    assert request(app, ANN, "read") == (False, "x~1")
    refused = app.install_app("s1", "x", "X", ["read"], ANN, USER)
    assert (refused.reason, refused.can_request) == (ConsentReason.REQUEST_PENDING, False)
    refusal = app.repository.event_store.get(Grant.id_for("s1", "x", "ann"))
    assert [e.refusal for e in refusal] == ["request_pending"]  # type: ignore[attr-defined]
    assert case_stream(app) == [AppRequestCase.AppRequested]


def test_nothing_to_request_when_the_rule_allows_it(app: GovernanceApplication) -> None:
    with pytest.raises(RequestNotNeeded, match="admin_install"):
        app.request_app("s1", "x", "X", [], "why", OLGA, ADMIN)
    app.approve_app("s1", "x", "X", ["read"], OLGA)
    with pytest.raises(RequestNotNeeded, match="allowed_by_approval"):
        request(app, ANN, "read")
    app.set_user_installs("s1", UserInstalls.ALLOWED, OLGA)
    with pytest.raises(RequestNotNeeded, match="allowed_by_policy"):
        request(app, ANN, "admin")
    assert case_stream(app) == []


def test_blocking_a_case_blocks_the_app_for_admins_too_and_for_good(
    app: GovernanceApplication,
) -> None:
    request(app, ANN, "read")
    app.block_request("s1", "x~1", OLGA, reason="exfiltrates data")
    site_events = app.repository.event_store.get(site_aggregate_id("s1"))
    blocked = list(site_events)[-1]
    assert isinstance(blocked, Site.AppBlocked)
    assert (blocked.case_id, blocked.reason, blocked.existing_installs) == (
        "x~1",
        "exfiltrates data",
        "keep",
    )
    with pytest.raises(AppIsBlocked):
        request(app, BEN, "read")
    admin = app.install_app("s1", "x", "X", [], OLGA, ADMIN)
    assert (admin.status, admin.reason) == (InstallStatus.REFUSED, ConsentReason.APP_BLOCKED)


def test_a_list_change_answers_the_open_case(app: GovernanceApplication) -> None:
    request(app, ANN, "read")
    app.approve_app("s1", "x", "X", ["read"], OLGA)  # "read" was all anyone asked for
    request(app, ANN, "read", app_id="y")
    request(app, BEN, "write", app_id="y")
    app.approve_app("s1", "y", None, ["read"], OLGA)  # does not cover ben's "write": stays open
    assert case_stream(app)[-1] is AppRequestCase.AppRequestApproved
    y = AppRequestCase.id_for("s1", "y")
    assert stream(app, y)[-1] is AppRequestCase.AppRequested
    app.block_app("s1", "y", None, OLGA, existing_installs=ExistingUserInstalls.REMOVE)
    assert stream(app, y)[-1] is AppRequestCase.AppRequestBlocked
    site: Site = app.repository.get(site_aggregate_id("s1"))
    assert site.app_lists["y"]["app_name"] == "X"  # the name the requesters gave


def test_denied_or_expired_cases_may_be_requested_again(app: GovernanceApplication) -> None:
    request(app, ANN, "read")
    app.deny_request("s1", "x~1", OLGA, reason="not this quarter")
    assert request(app, ANN, "read") == (True, "x~2")
    case: AppRequestCase = app.repository.get(AppRequestCase.id_for("s1", "x"))
    assert case.opened_at is not None
    assert app.expire_request("s1", "x~2", case.opened_at, OLGA, reason="old").changed
    assert not app.expire_request("s1", "x~2", case.opened_at, OLGA, reason="old").changed
    assert request(app, BEN, "read") == (True, "x~3")


def test_popular_cases_are_read_from_snapshots() -> None:
    app = GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.register_site("acme", "s1", "One", OLGA)
    app.set_user_installs("s1", UserInstalls.BLOCKED, OLGA)
    for n in range(205):
        request(app, Actor(f"user{n}"), "read", f"scope{n % 3}")
    case_id = AppRequestCase.id_for("s1", "x")
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(case_id))
    assert [s.originator_version for s in snapshots] == [100, 200]
    case: AppRequestCase = app.repository.get(case_id)
    assert (case.version, len(case.requesters)) == (205, 205)
    assert case.requested_scopes() == ["read", "scope0", "scope1", "scope2"]
    _, approved = app.approve_request("s1", "x~1", OLGA)
    assert approved.requester_count == 205


def test_each_command_is_reported_with_its_outcome(app: GovernanceApplication) -> None:
    reports: list[CommandReport] = []
    app.command_observers.append(reports.append)
    request(app, ANN, "read")
    request(app, ANN, "read")
    app.block_request("s1", "x~1", OLGA, reason="never")
    with pytest.raises(AppIsBlocked):
        request(app, BEN, "read")
    assert [(r.command, r.outcome, r.changed, r.error) for r in reports] == [
        ("request_app", Outcome.ACCEPTED, True, None),
        ("request_app", Outcome.ACCEPTED, False, None),
        ("block_request", Outcome.ACCEPTED, True, None),
        ("request_app", Outcome.REFUSED, False, "app_blocked"),
    ]
    refused = app.install_app("s1", "x", "X", ["read"], BEN, USER)
    assert (reports[-1].command, reports[-1].error) == ("install_app", "app_blocked")
    assert refused.status is InstallStatus.REFUSED
