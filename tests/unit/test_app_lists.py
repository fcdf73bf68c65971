"""A site's approved and blocked apps: given the Site, when an admin changes a list, then events."""

from __future__ import annotations

from governance.domain.actor import Actor
from governance.domain.site import AppList, ExistingUserInstalls, Site

OLGA = Actor("olga", request_id="req-1")


def registered() -> Site:
    site = Site.register("acme", "s1", "Site one", OLGA)
    site.collect_events()
    return site


def test_approving_records_scopes_sorted_once_with_actor_and_reason() -> None:
    site = registered()
    assert site.approve_app("x", "X", ["write", "read", "read"], OLGA, reason="vetted")
    (event,) = site.collect_events()
    assert isinstance(event, Site.AppApproved)
    assert (event.app_id, event.scopes, event.actor, event.reason, event.request_id) == (
        "x",
        ["read", "write"],
        "olga",
        "vetted",
        "req-1",
    )
    assert event.case_id is None
    assert (site.listed("x"), site.approved_scopes("x")) == (AppList.APPROVED, ["read", "write"])


def test_a_satisfied_list_command_records_nothing() -> None:
    site = registered()
    site.approve_app("x", "X", ["read"], OLGA)
    site.block_app("y", "Y", OLGA)
    site.collect_events()
    assert not site.approve_app("x", "X", ["read"], Actor("bob"))
    assert not site.block_app("y", "Y", Actor("bob"), reason="again")
    assert not site.clear_app_listing("z", OLGA)
    assert site.collect_events() == []


def test_new_scopes_replace_the_approval_and_a_block_replaces_it() -> None:
    site = registered()
    site.approve_app("x", "X", ["read"], OLGA)
    site.approve_app("x", "X", ["read", "write"], OLGA)
    site.block_app("x", "X", OLGA, reason="leaks data")
    events = site.collect_events()
    assert [type(e) for e in events] == [Site.AppApproved, Site.AppApproved, Site.AppBlocked]
    assert site.listed("x") is AppList.BLOCKED
    assert site.approved_scopes("x") == []


def test_blocking_with_remove_revokes_every_grant_in_the_same_save() -> None:
    site = registered()
    assert site.block_app(
        "x", "X", OLGA, reason="breach", existing_installs=ExistingUserInstalls.REMOVE
    )
    blocked, removed = site.collect_events()
    assert isinstance(blocked, Site.AppBlocked) and isinstance(removed, Site.AppRemoved)
    assert blocked.existing_installs == "remove"
    assert (removed.app_id, removed.removal_epoch, removed.reason) == ("x", 1, "breach")


def test_blocking_keeps_existing_grants_by_default() -> None:
    site = registered()
    site.block_app("x", "X", OLGA)
    (event,) = site.collect_events()
    assert isinstance(event, Site.AppBlocked) and event.existing_installs == "keep"
    assert site.removal_epoch("x") == 0


def test_clearing_names_what_it_took_off() -> None:
    site = registered()
    site.approve_app("x", "X", ["read"], OLGA)
    site.block_app("y", "Y", OLGA)
    site.collect_events()
    assert site.clear_app_listing("x", OLGA, reason="no longer needed")
    assert site.clear_app_listing("y", OLGA)
    withdrawn, unblocked = site.collect_events()
    assert isinstance(withdrawn, Site.AppApprovalWithdrawn)
    assert withdrawn.reason == "no longer needed"
    assert isinstance(unblocked, Site.AppUnblocked)
    assert site.listed("x") is None and site.listed("y") is None


def test_the_lists_are_rebuilt_from_the_events() -> None:
    site = Site.register("acme", "s1", "Site one", OLGA)
    site.approve_app("x", "X", ["read"], OLGA, reason="ok")
    site.block_app("y", "Y", OLGA)
    rebuilt = None
    for event in site.collect_events():
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, Site)
    assert rebuilt.app_lists == site.app_lists
    assert rebuilt.listing("x") == {
        "status": "approved",
        "app_name": "X",
        "scopes": ["read"],
        "reason": "ok",
        "updated_by": "olga",
        "updated_at": site.app_lists["x"]["updated_at"],
        "case_id": None,
    }
