"""Every domain event has a public description with the envelope fields audit and Kafka need."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import NAMESPACE_URL, uuid4, uuid5

from eventsourcing.domain import Aggregate

from governance.domain.actor import Actor
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.request_case import AppRequestCase
from governance.domain.site import Site, UserInstalls
from governance.published import EVENT_TYPES, describe, event_id


def every_kind_of_event() -> list[object]:
    return [
        event for aggregate in aggregates_with_every_event() for event in aggregate.collect_events()
    ]


def aggregates_with_every_event() -> list[Aggregate]:
    """A site, a grant and a request case whose pending events hold every published type."""
    admin = Actor("olga", request_id="r1", on_behalf_of="policy v2")
    ann = Actor("ann")
    site = Site.register("acme", "s1", "One", admin)
    site.set_user_installs(UserInstalls.BLOCKED, admin, reason="r")
    site.set_user_installs(UserInstalls.ALLOWED, admin)
    site.remove_app("x", admin, reason="gone")
    site.approve_app("x", "X", ["read"], admin, reason="vetted")
    site.clear_app_listing("x", admin)
    site.block_app("y", "Y", admin, reason="leaks data")
    site.clear_app_listing("y", admin)
    grant = Grant.open("s1", "x", "ann", datetime.now(UTC))
    request = InstallRequest("acme", "s1", "x", "X", ["read"], 1)
    grant.refuse(request, ann, refusal="user_installs_blocked")
    grant.install(request, ann, installed_by=InstalledBy.USER, removal_epoch=0)
    grant.uninstall("acme", "s1", "x", ann, removal_epoch=0)
    case = AppRequestCase.open("s1", "z", datetime.now(UTC))
    for outcome in ("approve", "deny", "block", "cancel", "expire"):
        case.request("acme", "s1", "z", "Z", ["read"], "for reports", ann)
        decide_case(case, outcome, admin)
    return [site, grant, case]


def decide_case(case: AppRequestCase, outcome: str, admin: Actor) -> None:
    if outcome == "approve":
        case.approve(case.cycle, admin, scopes=None, reason="fine")
    elif outcome == "deny":
        case.deny(case.cycle, admin, reason="not now")
    elif outcome == "block":
        case.block(case.cycle, admin, reason="never")
    elif outcome == "cancel":
        case.cancel(case.cycle, Actor("ann"), reason="found another")
    else:
        case.expire(case.cycle, datetime.now(UTC), Actor("sweeper"), reason="too old")


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


def test_request_outcomes_are_distinct_events_naming_who_decided_and_why() -> None:
    described = [describe(0, e) for e in every_kind_of_event()]
    outcomes = {d.type: d for d in described if d.type.startswith("AppRequest")}
    assert {name: (d.actor, d.reason) for name, d in outcomes.items()} == {
        "AppRequested": ("ann", None),
        "AppRequestApproved": ("olga", "fine"),
        "AppRequestDenied": ("olga", "not now"),
        "AppRequestBlocked": ("olga", "never"),
        "AppRequestCancelled": ("ann", "found another"),
        "AppRequestExpired": ("sweeper", "too old"),
    }
    types = {d.type: d.cloudevent_type for d in described}
    assert types["AppRequested"] == "io.governance.site.app_request.created.v1"
    assert types["AppApproved"] == "io.governance.site.app.approved.v1"
    assert types["AppBlocked"] == "io.governance.site.app.blocked.v1"
    requested = next(d for d in described if d.type == "AppRequested")
    assert requested.data["justification"] == "for reports"
    assert requested.data["case_id"] == "z~1"
    assert outcomes["AppRequestApproved"].data["requesters"] == ["ann"]
    refused = next(d for d in described if d.type == "InstallBlocked")
    assert refused.data["refusal"] == "user_installs_blocked"


def test_event_ids_are_name_based_uuids_of_the_stream_position() -> None:
    namespace = uuid5(NAMESPACE_URL, "urn:governance:event")
    variants = set()
    for version in (0, 1, 2, 10**12, *range(3, 300)):  # every hex digit where the variant goes
        originator = uuid4()
        expected = str(uuid5(namespace, f"{originator}/{version}"))
        assert event_id(originator, version) == expected
        variants.add(expected[19])
    assert variants == set("89ab")
