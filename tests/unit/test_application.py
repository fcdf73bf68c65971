"""The service layer on the library's in-memory store."""

from __future__ import annotations

import pytest

from governance.application import GovernanceApplication
from governance.domain.actor import Actor
from governance.domain.errors import SiteIdTaken, SiteNotFound
from governance.domain.ids import site_aggregate_id
from governance.domain.site import Site, UserInstalls

ALICE = Actor("alice", "req-1")


@pytest.fixture
def app() -> GovernanceApplication:
    return GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def stored_types(app: GovernanceApplication, site_id: str) -> list[type]:
    return [type(e) for e in app.repository.event_store.get(site_aggregate_id(site_id))]


def test_registering_twice_with_the_same_name_writes_once(app: GovernanceApplication) -> None:
    first = app.register_site("acme", "s1", "One", ALICE)
    again = app.register_site("acme", "s1", "One", ALICE)
    assert first.changed and not again.changed
    assert again.position == first.position
    assert stored_types(app, "s1") == [Site.SiteRegistered]


def test_a_site_id_of_another_org_or_name_is_taken(app: GovernanceApplication) -> None:
    app.register_site("acme", "s1", "One", ALICE)
    with pytest.raises(SiteIdTaken):
        app.register_site("globex", "s1", "One", ALICE)
    with pytest.raises(SiteIdTaken):
        app.register_site("acme", "s1", "Renamed", ALICE)


def test_block_then_block_again_writes_one_event(app: GovernanceApplication) -> None:
    app.register_site("acme", "s1", "One", ALICE)
    result, state = app.set_user_installs("s1", UserInstalls.BLOCKED, ALICE, reason="why")
    again, same = app.set_user_installs("s1", UserInstalls.BLOCKED, Actor("bob"))
    assert result.changed and not again.changed
    assert (state.user_installs, state.version, state.updated_by, state.reason) == (
        "blocked",
        2,
        "alice",
        "why",
    )
    assert same == state
    assert stored_types(app, "s1") == [Site.SiteRegistered, Site.UserInstallsBlocked]


def test_commands_on_a_missing_site_fail(app: GovernanceApplication) -> None:
    with pytest.raises(SiteNotFound):
        app.set_user_installs("nope", UserInstalls.BLOCKED, ALICE)
