"""Every domain event has a public description with the envelope fields audit and Kafka need."""

from __future__ import annotations

from datetime import UTC, datetime

from governance.domain.actor import Actor
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.site import Site, UserInstalls
from governance.published import EVENT_TYPES, describe


def every_kind_of_event() -> list[object]:
    admin = Actor("olga", request_id="r1", on_behalf_of="policy v2")
    site = Site.register("acme", "s1", "One", admin)
    site.set_user_installs(UserInstalls.BLOCKED, admin, reason="r")
    site.set_user_installs(UserInstalls.ALLOWED, admin)
    site.remove_app("x", admin, reason="gone")
    grant = Grant.open("s1", "x", "ann", datetime.now(UTC))
    request = InstallRequest("acme", "s1", "x", "X", ["read"], 1)
    grant.refuse(request, Actor("ann"))
    grant.install(request, Actor("ann"), installed_by=InstalledBy.USER, removal_epoch=0)
    grant.uninstall("acme", "s1", "x", Actor("ann"), removal_epoch=0)
    return [*site.collect_events(), *grant.collect_events()]


def test_every_event_class_is_described_with_a_stable_id() -> None:
    events = every_kind_of_event()
    assert {type(e) for e in events} == set(EVENT_TYPES)
    described = [describe(position, e) for position, e in enumerate(events, start=1)]
    assert len({d.event_id for d in described}) == len(events)
    assert [d.event_id for d in described] == [
        describe(0, e).event_id for e in events
    ]  # independent of the position it is read at
    for d in described:
        assert (d.org_id, d.site_id) == ("acme", "s1")
        assert d.cloudevent_type.endswith(".v1")
        assert "originator_id" not in d.data and d.data["site_id"] == "s1"
    assert described[0].on_behalf_of == "policy v2"
    assert described[1].reason == "r"
