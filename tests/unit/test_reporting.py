"""What the application reports about each command, and when its events happened."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from governance.application import GovernanceApplication
from governance.domain.actor import Actor
from governance.domain.clock import event_time, events_at
from governance.domain.errors import GrantNotFound, SiteIdTaken, StalePolicyVersion
from governance.domain.grant import InstalledBy
from governance.domain.ids import site_aggregate_id
from governance.domain.site import UserInstalls
from governance.reporting import CommandReport, Outcome

OLGA = Actor("olga", "req-7")


@pytest.fixture
def app() -> GovernanceApplication:
    return GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def watch(app: GovernanceApplication) -> list[CommandReport]:
    reports: list[CommandReport] = []
    app.command_observers.append(reports.append)
    return reports


def test_each_command_reports_its_outcome_once(app: GovernanceApplication) -> None:
    reports = watch(app)
    app.register_site("acme", "s1", "One", OLGA)
    app.register_site("acme", "s1", "One", OLGA)  # already satisfied: accepted, nothing written
    with pytest.raises(SiteIdTaken):
        app.register_site("globex", "s1", "One", OLGA)
    app.set_user_installs("s1", UserInstalls.BLOCKED, OLGA)
    with pytest.raises(StalePolicyVersion):
        app.set_user_installs("s1", UserInstalls.ALLOWED, OLGA, expected_policy_version=1)
    app.install_app("s1", "chat", "Chat", [], Actor("ann"), InstalledBy.USER)
    with pytest.raises(GrantNotFound):
        app.uninstall_app("s1", "chat", Actor("ann"))

    assert [(r.command, r.outcome, r.changed, r.error) for r in reports] == [
        ("register_site", Outcome.ACCEPTED, True, None),
        ("register_site", Outcome.ACCEPTED, False, None),
        ("register_site", Outcome.REFUSED, False, "site_id_taken"),
        ("set_user_installs", Outcome.ACCEPTED, True, None),
        ("set_user_installs", Outcome.CONFLICTED, False, "stale_policy_version"),
        ("install_app", Outcome.REFUSED, True, "user_installs_blocked"),
        ("uninstall_app", Outcome.REFUSED, False, "grant_not_found"),
    ]
    first = reports[0]
    assert (first.site_id, first.account_id, first.request_id, first.position) == (
        "s1",
        "olga",
        "req-7",
        1,
    )


def test_events_take_the_moment_they_are_given_and_now_otherwise(
    app: GovernanceApplication,
) -> None:
    moment = datetime(2025, 5, 17, 9, 30, tzinfo=UTC)
    with events_at(moment):
        app.register_site("acme", "s1", "One", OLGA)
        assert event_time() == moment
    before = datetime.now(UTC)
    app.set_user_installs("s1", UserInstalls.BLOCKED, OLGA)
    site = site_aggregate_id("s1")
    assert app.repository.get(site, version=1).created_on == moment
    assert app.repository.get(site).modified_on >= before
    with pytest.raises(ValueError, match="time zone"), events_at(datetime(2025, 5, 17)):
        pass
