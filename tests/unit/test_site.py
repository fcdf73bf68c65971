"""The Site aggregate: given its events, when a command runs, then these events (or none)."""

from __future__ import annotations

import pytest

from governance.domain.errors import StalePolicyVersion
from governance.domain.site import Site, UserInstalls


def registered() -> Site:
    site = Site("acme", "s1", "Site one", "alice", "req-1")
    site.collect_events()
    return site


def test_registering_records_who_and_starts_allowed() -> None:
    site = Site("acme", "s1", "Site one", "alice", "req-1")
    (event,) = site.collect_events()
    assert isinstance(event, Site.SiteRegistered)
    assert (event.org_id, event.site_id, event.name, event.actor) == (
        "acme",
        "s1",
        "Site one",
        "alice",
    )
    assert site.user_installs is UserInstalls.ALLOWED
    assert site.policy_version == 1


def test_the_site_id_alone_decides_the_aggregate_id() -> None:
    assert Site("acme", "s1", "A", "x", None).id == Site("other", "s1", "B", "y", None).id
    assert Site("acme", "s1", "A", "x", None).id != Site("acme", "s2", "A", "x", None).id


def test_blocking_records_actor_reason_and_next_version() -> None:
    site = registered()
    assert site.set_user_installs(
        UserInstalls.BLOCKED, actor="bob", reason="security review", request_id="r2"
    )
    (event,) = site.collect_events()
    assert isinstance(event, Site.UserInstallsBlocked)
    assert (event.actor, event.reason, event.policy_version, event.request_id) == (
        "bob",
        "security review",
        2,
        "r2",
    )
    assert site.user_installs is UserInstalls.BLOCKED


def test_a_satisfied_command_records_nothing() -> None:
    site = registered()
    assert not site.set_user_installs(
        UserInstalls.ALLOWED, actor="bob", reason=None, request_id=None
    )
    assert site.collect_events() == []
    site.set_user_installs(UserInstalls.BLOCKED, actor="bob", reason=None, request_id=None)
    site.collect_events()
    assert not site.set_user_installs(
        UserInstalls.BLOCKED, actor="eve", reason=None, request_id=None
    )
    assert site.collect_events() == []
    assert site.policy_version == 2


def test_allowing_again_records_the_change() -> None:
    site = registered()
    site.set_user_installs(UserInstalls.BLOCKED, actor="bob", reason=None, request_id=None)
    site.set_user_installs(UserInstalls.ALLOWED, actor="carol", reason="done", request_id=None)
    events = site.collect_events()
    assert [type(e) for e in events] == [Site.UserInstallsBlocked, Site.UserInstallsAllowed]
    assert site.user_installs is UserInstalls.ALLOWED
    assert site.policy_version == 3


def test_a_stale_expected_version_is_refused_before_anything_is_recorded() -> None:
    site = registered()
    site.set_user_installs(UserInstalls.BLOCKED, actor="bob", reason=None, request_id=None)
    site.collect_events()
    with pytest.raises(StalePolicyVersion) as refused:
        site.set_user_installs(
            UserInstalls.ALLOWED,
            actor="bob",
            reason=None,
            request_id=None,
            expected_policy_version=1,
        )
    assert (refused.value.expected, refused.value.current) == (1, 2)
    assert site.collect_events() == []
