"""The Grant aggregate and the install rule, without any store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from governance.domain.actor import Actor
from governance.domain.errors import GrantNotFound
from governance.domain.grant import Grant, InstalledBy, InstallRequest

ANN = Actor("ann", request_id="r1")


def request(*scopes: str, version: int = 1) -> InstallRequest:
    return InstallRequest("acme", "s1", "x", "X", scopes, version)


def fresh() -> Grant:
    return Grant.open("s1", "x", "ann", datetime.now(UTC))


def test_the_first_event_of_a_grant_is_an_ordinary_one() -> None:
    grant = fresh()
    assert grant.version == 0
    assert grant.install(request("read"), ANN, installed_by=InstalledBy.USER, removal_epoch=0)
    (event,) = grant.collect_events()
    assert isinstance(event, Grant.AppInstalled)
    assert (event.originator_version, event.account_id, event.scopes) == (1, "ann", ["read"])
    assert grant.installed_at == event.timestamp


def test_installing_what_one_has_records_nothing_and_more_scopes_widen() -> None:
    grant = fresh()
    grant.install(request("read"), ANN, installed_by=InstalledBy.USER, removal_epoch=0)
    grant.collect_events()
    assert not grant.install(request("read"), ANN, installed_by=InstalledBy.USER, removal_epoch=0)
    assert grant.install(request("write"), ANN, installed_by=InstalledBy.USER, removal_epoch=0)
    (event,) = grant.collect_events()
    assert event.scopes == ["read", "write"]  # type: ignore[attr-defined]


def test_an_admin_removal_revokes_and_a_later_install_starts_afresh() -> None:
    grant = fresh()
    grant.install(request("read", "write"), ANN, installed_by=InstalledBy.USER, removal_epoch=0)
    assert grant.is_active(0) and not grant.is_active(1)
    assert grant.install(request("read"), ANN, installed_by=InstalledBy.USER, removal_epoch=1)
    assert grant.scopes == ["read"]
    with pytest.raises(GrantNotFound):
        grant.uninstall("acme", "s1", "x", ANN, removal_epoch=2)


def test_a_refusal_is_recorded_and_changes_nothing() -> None:
    grant = fresh()
    grant.refuse(request("read", version=4), ANN, refusal="user_installs_blocked")
    (event,) = grant.collect_events()
    assert isinstance(event, Grant.InstallBlocked)
    assert (event.policy_version, event.actor, event.refusal) == (4, "ann", "user_installs_blocked")
    assert not grant.installed
