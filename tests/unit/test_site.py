"""The Site aggregate: given its events, when a command runs, then these events (or none)."""

from __future__ import annotations

import pytest

from governance.domain.actor import Actor
from governance.domain.errors import StalePolicyVersion
from governance.domain.site import ExistingUserInstalls, Site, UserInstalls

ALICE = Actor("alice", request_id="req-1")
BOB = Actor("bob", request_id="req-2")


def registered() -> Site:
    site = Site.register("acme", "s1", "Site one", ALICE)
    site.collect_events()
    return site


def test_registering_records_who_and_starts_allowed() -> None:
    site = Site.register("acme", "s1", "Site one", ALICE)
    (event,) = site.collect_events()
    assert isinstance(event, Site.SiteRegistered)
    assert (event.org_id, event.site_id, event.name, event.actor, event.request_id) == (
        "acme",
        "s1",
        "Site one",
        "alice",
        "req-1",
    )
    assert site.user_installs is UserInstalls.ALLOWED
    assert site.policy_version == 1


def test_the_site_id_alone_decides_the_aggregate_id() -> None:
    assert Site.register("acme", "s1", "A", ALICE).id == Site.register("o", "s1", "B", BOB).id
    assert Site.register("acme", "s1", "A", ALICE).id != Site.register("acme", "s2", "A", ALICE).id


def test_blocking_records_actor_reason_choice_and_next_version() -> None:
    site = registered()
    assert site.set_user_installs(
        UserInstalls.BLOCKED,
        BOB,
        reason="security review",
        existing_user_installs=ExistingUserInstalls.REMOVE,
    )
    (event,) = site.collect_events()
    assert isinstance(event, Site.UserInstallsBlocked)
    assert (event.actor, event.reason, event.policy_version, event.request_id) == (
        "bob",
        "security review",
        2,
        "req-2",
    )
    assert event.existing_user_installs == "remove"
    assert site.user_installs is UserInstalls.BLOCKED


def test_a_satisfied_command_records_nothing() -> None:
    site = registered()
    assert not site.set_user_installs(UserInstalls.ALLOWED, BOB)
    assert site.collect_events() == []
    site.set_user_installs(UserInstalls.BLOCKED, BOB)
    site.collect_events()
    assert not site.set_user_installs(UserInstalls.BLOCKED, Actor("eve"))
    assert site.collect_events() == []
    assert site.policy_version == 2


def test_allowing_again_records_the_change() -> None:
    site = registered()
    site.set_user_installs(UserInstalls.BLOCKED, BOB)
    site.set_user_installs(UserInstalls.ALLOWED, Actor("carol"), reason="done")
    events = site.collect_events()
    assert [type(e) for e in events] == [Site.UserInstallsBlocked, Site.UserInstallsAllowed]
    assert site.user_installs is UserInstalls.ALLOWED
    assert (site.policy_version, site.updated_by, site.reason) == (3, "carol", "done")


def test_a_stale_expected_version_is_refused_before_anything_is_recorded() -> None:
    site = registered()
    site.set_user_installs(UserInstalls.BLOCKED, BOB)
    site.collect_events()
    with pytest.raises(StalePolicyVersion) as refused:
        site.set_user_installs(UserInstalls.ALLOWED, BOB, expected_policy_version=1)
    assert (refused.value.expected, refused.value.current) == (1, 2)
    assert site.collect_events() == []


def test_removing_an_app_starts_a_new_removal_epoch_for_that_app_only() -> None:
    site = registered()
    site.remove_app("x", BOB, reason="unvetted")
    site.remove_app("x", BOB, reason=None)
    events = site.collect_events()
    assert [(type(e), e.removal_epoch) for e in events] == [  # type: ignore[attr-defined]
        (Site.AppRemoved, 1),
        (Site.AppRemoved, 2),
    ]
    assert (site.removal_epoch("x"), site.removal_epoch("y")) == (2, 0)
