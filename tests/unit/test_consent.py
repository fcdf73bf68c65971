"""The install rule, as one table: what it depends on, and the answer with its reason."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from governance.domain.consent import ConsentReason, decide
from governance.domain.grant import InstalledBy
from governance.domain.site import AppList, UserInstalls

ALLOWED, BLOCKED = UserInstalls.ALLOWED, UserInstalls.BLOCKED
USER, ADMIN = InstalledBy.USER, InstalledBy.ADMIN
R = ConsentReason


@dataclass(frozen=True)
class Case:
    policy: UserInstalls
    role: InstalledBy
    scopes: tuple[str, ...] = ("read",)
    granted: bool = False
    listed: AppList | None = None
    approved: tuple[str, ...] = ()
    pending: tuple[str, ...] | None = None


TABLE: list[tuple[Case, bool, ConsentReason, bool]] = [
    # (question, allowed, reason, may request)
    (Case(ALLOWED, USER), True, R.ALLOWED_BY_POLICY, False),
    (Case(BLOCKED, USER), False, R.USER_INSTALLS_BLOCKED, True),
    (Case(BLOCKED, ADMIN), True, R.ADMIN_INSTALL, False),
    (Case(BLOCKED, USER, granted=True), True, R.ALREADY_INSTALLED, False),
    # A blocked app is refused to everyone, whatever the policy, and may not be requested.
    (Case(ALLOWED, USER, listed=AppList.BLOCKED), False, R.APP_BLOCKED, False),
    (Case(BLOCKED, ADMIN, listed=AppList.BLOCKED), False, R.APP_BLOCKED, False),
    (Case(ALLOWED, USER, granted=True, listed=AppList.BLOCKED), False, R.APP_BLOCKED, False),
    # An approved app, within its approved scopes, is open to users under a block.
    (
        Case(BLOCKED, USER, listed=AppList.APPROVED, approved=("read",)),
        True,
        R.ALLOWED_BY_APPROVAL,
        False,
    ),
    (Case(BLOCKED, USER, (), listed=AppList.APPROVED), True, R.ALLOWED_BY_APPROVAL, False),
    (
        Case(BLOCKED, USER, ("read", "write"), listed=AppList.APPROVED, approved=("read",)),
        False,
        R.SCOPES_EXCEED_APPROVAL,
        True,
    ),
    # While the policy allows, the approval's scopes do not limit anyone.
    (
        Case(ALLOWED, USER, ("admin",), listed=AppList.APPROVED, approved=("read",)),
        True,
        R.ALLOWED_BY_POLICY,
        False,
    ),
    # One's open request covering the scopes: wait for it; asking for more: request again.
    (Case(BLOCKED, USER, pending=("read",)), False, R.REQUEST_PENDING, False),
    (
        Case(BLOCKED, USER, ("read", "write"), pending=("read",)),
        False,
        R.USER_INSTALLS_BLOCKED,
        True,
    ),
    (
        Case(
            BLOCKED,
            USER,
            ("write",),
            listed=AppList.APPROVED,
            approved=("read",),
            pending=("write",),
        ),
        False,
        R.REQUEST_PENDING,
        False,
    ),
    (
        Case(BLOCKED, USER, listed=AppList.APPROVED, approved=("read",), pending=("read",)),
        True,
        R.ALLOWED_BY_APPROVAL,
        False,
    ),
    (Case(BLOCKED, ADMIN, pending=("read",)), True, R.ADMIN_INSTALL, False),
]


@pytest.mark.parametrize(("case", "allowed", "reason", "can_request"), TABLE)
def test_the_install_rule(
    case: Case, allowed: bool, reason: ConsentReason, can_request: bool
) -> None:
    verdict = decide(
        case.policy,
        case.role,
        scopes=case.scopes,
        granted=case.granted,
        listed=case.listed,
        approved_scopes=case.approved,
        pending_scopes=case.pending,
    )
    assert (verdict.allowed, verdict.reason, verdict.can_request) == (allowed, reason, can_request)
    # Every refusal explains itself on the consent screen; an allowed install needs no text.
    assert (verdict.message is None) == allowed


def test_every_reason_is_in_the_table() -> None:
    assert {reason for _, _, reason, _ in TABLE} == set(ConsentReason)
