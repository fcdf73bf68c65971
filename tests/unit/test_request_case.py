"""The request case of one app on one site: given its events, when a command runs, then events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from governance.domain.actor import Actor
from governance.domain.errors import (
    CaseClosed,
    CaseNotFound,
    RequestNotFound,
    ScopesNotRequested,
)
from governance.domain.request_case import AppRequestCase, CaseStatus, make_case_id, parse_case_id

ANN = Actor("ann", request_id="r1")
BEN = Actor("ben", request_id="r2")
OLGA = Actor("olga", request_id="r3")


def fresh() -> AppRequestCase:
    return AppRequestCase.open("s1", "jira", datetime.now(UTC))


def ask(case: AppRequestCase, who: Actor, *scopes: str) -> bool:
    return case.request("acme", "s1", "jira", "Jira", scopes, f"{who.account_id} needs it", who)


def open_case(*requesters: tuple[Actor, tuple[str, ...]]) -> AppRequestCase:
    case = fresh()
    for who, scopes in requesters:
        ask(case, who, *scopes)
    case.collect_events()
    return case


def test_the_first_request_opens_case_one() -> None:
    case = fresh()
    assert ask(case, ANN, "read")
    (event,) = case.collect_events()
    assert isinstance(event, AppRequestCase.AppRequested)
    assert (event.case_id, event.cycle, event.opens_case, event.originator_version) == (
        "jira~1",
        1,
        True,
        1,
    )
    assert (event.account_id, event.scopes, event.justification, event.actor) == (
        "ann",
        ["read"],
        "ann needs it",
        "ann",
    )
    assert case.is_open and case.opened_at == event.timestamp


def test_more_requesters_join_the_case_and_repeating_records_nothing() -> None:
    case = open_case((ANN, ("read",)))
    assert ask(case, BEN, "write")
    assert not ask(case, ANN, "read")
    assert ask(case, ANN, "admin")  # asking for more widens one's request
    joined, widened = case.collect_events()
    assert isinstance(joined, AppRequestCase.AppRequested) and not joined.opens_case
    assert widened.scopes == ["admin", "read"]  # type: ignore[attr-defined]
    assert case.requesters == {"ann": ["admin", "read"], "ben": ["write"]}
    assert case.requested_scopes() == ["admin", "read", "write"]
    assert case.pending_scopes("ann") == ["admin", "read"]
    assert case.pending_scopes("carl") is None


def test_approving_defaults_to_every_requested_scope_and_names_the_requesters() -> None:
    case = open_case((ANN, ("read",)), (BEN, ("write",)))
    assert case.approve(1, OLGA, scopes=None, reason="vetted")
    (event,) = case.collect_events()
    assert isinstance(event, AppRequestCase.AppRequestApproved)
    assert (event.scopes, event.requesters, event.actor, event.reason) == (
        ["read", "write"],
        ["ann", "ben"],
        "olga",
        "vetted",
    )
    assert case.status == CaseStatus.APPROVED and case.pending_scopes("ann") is None


def test_an_approval_may_grant_fewer_scopes_but_not_others() -> None:
    case = open_case(
        (
            ANN,
            ("read", "write"),
        )
    )
    with pytest.raises(ScopesNotRequested):
        case.approve(1, OLGA, scopes=["read", "admin"], reason=None)
    assert case.approve(1, OLGA, scopes=["read"], reason=None)
    assert case.approved_scopes == ["read"]


def test_each_outcome_is_its_own_event() -> None:
    outcomes = {
        "deny": (AppRequestCase.AppRequestDenied, CaseStatus.DENIED),
        "block": (AppRequestCase.AppRequestBlocked, CaseStatus.BLOCKED),
        "expire": (AppRequestCase.AppRequestExpired, CaseStatus.EXPIRED),
    }
    for outcome, (event_class, status) in outcomes.items():
        case = open_case((ANN, ("read",)))
        if outcome == "deny":
            assert case.deny(1, OLGA, reason="not now")
        elif outcome == "block":
            assert case.block(1, OLGA, reason="never")
        else:
            assert case.expire(1, datetime.now(UTC), Actor("sweeper"), reason="too old")
        (event,) = case.collect_events()
        assert type(event) is event_class
        assert case.status == status
        assert event.requesters == ["ann"]  # type: ignore[attr-defined]


def test_the_same_outcome_again_records_nothing_and_another_one_is_refused() -> None:
    case = open_case((ANN, ("read",)))
    case.deny(1, OLGA, reason="not now")
    case.collect_events()
    assert not case.deny(1, BEN, reason="still no")
    with pytest.raises(CaseClosed, match="denied by olga"):
        case.approve(1, OLGA, scopes=None, reason=None)
    with pytest.raises(CaseClosed):
        case.block(1, OLGA, reason="never")
    assert case.collect_events() == []


def test_after_a_denial_the_next_request_opens_the_next_case() -> None:
    case = open_case((ANN, ("read",)))
    case.deny(1, OLGA, reason="not now")
    assert ask(case, ANN, "read")
    _, reopened = case.collect_events()
    assert (reopened.case_id, reopened.opens_case) == ("jira~2", True)  # type: ignore[attr-defined]
    assert case.requesters == {"ann": ["read"]}
    with pytest.raises(CaseClosed, match="latest is jira~2"):
        case.approve(1, OLGA, scopes=None, reason=None)
    with pytest.raises(CaseNotFound):
        case.deny(3, OLGA, reason="x")


def test_cancelling_withdraws_one_request_and_the_last_one_closes_the_case() -> None:
    case = open_case((ANN, ("read",)), (BEN, ("write",)))
    case.cancel(1, ANN, reason="found another way")
    case.cancel(1, BEN)
    first, last = case.collect_events()
    assert isinstance(first, AppRequestCase.AppRequestCancelled)
    assert (first.account_id, first.closes_case, first.reason) == (
        "ann",
        False,
        "found another way",
    )
    assert last.closes_case  # type: ignore[attr-defined]
    assert case.status == CaseStatus.CANCELLED
    with pytest.raises(RequestNotFound):
        case.cancel(1, BEN)


def test_only_a_requester_may_cancel() -> None:
    case = open_case((ANN, ("read",)))
    with pytest.raises(RequestNotFound):
        case.cancel(1, BEN)
    with pytest.raises(RequestNotFound):
        fresh().cancel(1, ANN)


def test_expiry_leaves_younger_reopened_and_closed_cases_alone() -> None:
    case = open_case((ANN, ("read",)))
    assert case.opened_at is not None
    before_it_opened = case.opened_at - timedelta(seconds=1)
    assert not case.expire(1, before_it_opened, OLGA, reason="old")
    assert not case.expire(2, datetime.now(UTC), OLGA, reason="old")
    case.approve(1, OLGA, scopes=None, reason=None)
    assert not case.expire(1, datetime.now(UTC), OLGA, reason="old")
    assert [type(e) for e in case.collect_events()] == [AppRequestCase.AppRequestApproved]


def test_a_case_is_rebuilt_from_its_events() -> None:
    case = fresh()
    ask(case, ANN, "read")
    ask(case, BEN, "write")
    case.cancel(1, BEN)
    case.deny(1, OLGA, reason="no")
    ask(case, BEN, "read")
    rebuilt = None
    for event in case.collect_events():
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, AppRequestCase)
    # An implicit stream's creation time is its first event's, not when the shell was made.
    assert vars(rebuilt) | {"_created_on": None} == vars(case) | {"_created_on": None}
    assert (rebuilt.case_id, rebuilt.status, rebuilt.requesters) == (
        "jira~2",
        "open",
        {"ben": ["read"]},
    )


def test_case_ids_name_the_app_and_the_cycle() -> None:
    assert make_case_id("jira.cloud:v2", 12) == "jira.cloud:v2~12"
    assert parse_case_id("jira.cloud:v2~12") == ("jira.cloud:v2", 12)
    for bad in ("jira", "jira~0", "jira~x", "~1", "a b~1"):
        with pytest.raises(CaseNotFound):
            parse_case_id(bad)
