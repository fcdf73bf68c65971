"""End users' requests for one app on one site, gathered into one case that an admin decides.

The case is one stream per (site, app). Its cycle number counts the cases it has held: a request
while no case is open opens the next one, so a denied or expired app may be requested again,
and every case keeps its own id (`<app_id>~<cycle>`). Each outcome is its own event, naming who
decided and why.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from governance.domain.actor import Actor
from governance.domain.errors import CaseClosed, CaseNotFound, RequestNotFound, ScopesNotRequested
from governance.domain.ids import request_case_aggregate_id
from governance.domain.site import ExistingUserInstalls
from governance.domain.stream import ImplicitAggregate


class CaseStatus(StrEnum):
    NONE = "none"  # nothing was ever requested
    OPEN = "open"
    APPROVED = "approved"
    DENIED = "denied"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# `~` is not in the app id alphabet, so the last one splits a case id unambiguously.
_CASE_ID = re.compile(r"^(?P<app>[A-Za-z0-9._:-]{1,128})~(?P<cycle>[1-9][0-9]{0,8})$")


def make_case_id(app_id: str, cycle: int) -> str:
    return f"{app_id}~{cycle}"


def parse_case_id(value: str) -> tuple[str, int]:
    match = _CASE_ID.match(value)
    if match is None:
        raise CaseNotFound(f"no request case {value!r}")
    return match["app"], int(match["cycle"])


class AppRequestCase(ImplicitAggregate):
    """Each event's `apply` only assigns state: replaying the stream never re-runs a decision."""

    class AppRequested(ImplicitAggregate.Event):
        """An account asked for the app; `opens_case` when no case was open (a new cycle)."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        case_id: str
        cycle: int
        account_id: str
        scopes: list[str]
        justification: str
        opens_case: bool
        actor: str
        on_behalf_of: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            if self.opens_case:
                aggregate.open_cycle(self.cycle, self.timestamp)
            aggregate.org_id = self.org_id
            aggregate.site_id = self.site_id
            aggregate.app_id = self.app_id
            aggregate.app_name = self.app_name
            aggregate.requesters[self.account_id] = self.scopes

    class AppRequestApproved(ImplicitAggregate.Event):
        """The app is approved for the site, for `scopes` (an AppApproved in the same save)."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        case_id: str
        cycle: int
        scopes: list[str]
        requesters: list[str]
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.close(CaseStatus.APPROVED, self.actor, self.reason, self.timestamp)
            aggregate.approved_scopes = self.scopes

    class AppRequestDenied(ImplicitAggregate.Event):
        """Refused for now: the app may be requested again, which opens the next case."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        case_id: str
        cycle: int
        requesters: list[str]
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.close(CaseStatus.DENIED, self.actor, self.reason, self.timestamp)

    class AppRequestBlocked(ImplicitAggregate.Event):
        """Refused for good: the app is blocked on the site (an AppBlocked in the same save)."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        case_id: str
        cycle: int
        requesters: list[str]
        existing_installs: str
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.close(CaseStatus.BLOCKED, self.actor, self.reason, self.timestamp)

    class AppRequestCancelled(ImplicitAggregate.Event):
        """A requester withdrew their request; the last one to withdraw closes the case."""

        org_id: str
        site_id: str
        app_id: str
        case_id: str
        cycle: int
        account_id: str
        closes_case: bool
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.requesters.pop(self.account_id, None)
            if self.closes_case:
                aggregate.close(CaseStatus.CANCELLED, self.actor, self.reason, self.timestamp)

    class AppRequestExpired(ImplicitAggregate.Event):
        """No admin decided within the configured time; the app may be requested again."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        case_id: str
        cycle: int
        requesters: list[str]
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.close(CaseStatus.EXPIRED, self.actor, self.reason, self.timestamp)

    @classmethod
    def open(cls, site_id: str, app_id: str, now: datetime) -> AppRequestCase:
        return cls.empty(cls.id_for(site_id, app_id), now)

    @staticmethod
    def id_for(site_id: str, app_id: str) -> UUID:
        return request_case_aggregate_id(site_id, app_id)

    def _empty(self) -> None:
        # Plain JSON-friendly state: the application snapshots popular cases.
        self.org_id = ""
        self.site_id = ""
        self.app_id = ""
        self.app_name = ""
        self.cycle = 0
        self.status = str(CaseStatus.NONE)
        self.opened_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.requesters: dict[str, list[str]] = {}
        self.decided_by: str | None = None
        self.reason: str | None = None
        self.approved_scopes: list[str] = []

    @property
    def case_id(self) -> str:
        return make_case_id(self.app_id, self.cycle)

    @property
    def is_open(self) -> bool:
        return self.status == CaseStatus.OPEN

    def requested_scopes(self) -> list[str]:
        """The union of every requester's scopes: what an approval may grant at most."""
        return sorted({scope for scopes in self.requesters.values() for scope in scopes})

    def pending_scopes(self, account_id: str) -> list[str] | None:
        """The account's open request, if it has one."""
        return self.requesters.get(account_id) if self.is_open else None

    def request(
        self,
        org_id: str,
        site_id: str,
        app_id: str,
        app_name: str,
        scopes: Collection[str],
        justification: str,
        by: Actor,
    ) -> bool:
        """Join the open case, or open the next one; False when one's open request covers it.

        Asking again for more scopes widens one's request to the union.
        """
        mine = self.pending_scopes(by.account_id)
        if mine is not None and set(scopes) <= set(mine):
            return False
        opens = not self.is_open
        cycle = self.cycle + 1 if opens else self.cycle
        self.trigger_event(
            self.AppRequested,
            org_id=org_id,
            site_id=site_id,
            app_id=app_id,
            app_name=app_name,
            case_id=make_case_id(app_id, cycle),
            cycle=cycle,
            account_id=by.account_id,
            scopes=sorted(set(scopes) | set(mine or [])),
            justification=justification,
            opens_case=opens,
            **by.recorded(),
        )
        return True

    def approve(
        self, cycle: int, by: Actor, *, scopes: Collection[str] | None, reason: str | None
    ) -> bool:
        """Approve for `scopes` (default: every scope requested); False when already approved."""
        if not self._decidable(cycle, CaseStatus.APPROVED):
            if scopes is None or set(scopes) <= set(self.approved_scopes):
                return False
            raise CaseClosed(f"case {self.case_id} was approved already; open a new one")
        requested = self.requested_scopes()
        chosen = requested if scopes is None else sorted(set(scopes))
        extra = sorted(set(chosen) - set(requested))
        if extra:
            raise ScopesNotRequested(
                f"no requester asked for {', '.join(extra)}; approve at most {requested}"
            )
        self.trigger_event(
            self.AppRequestApproved, scopes=chosen, reason=reason, **self._outcome(by)
        )
        return True

    def deny(self, cycle: int, by: Actor, *, reason: str) -> bool:
        if not self._decidable(cycle, CaseStatus.DENIED):
            return False
        self.trigger_event(self.AppRequestDenied, reason=reason, **self._outcome(by))
        return True

    def block(
        self,
        cycle: int,
        by: Actor,
        *,
        reason: str | None,
        existing_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
    ) -> bool:
        if not self._decidable(cycle, CaseStatus.BLOCKED):
            return False
        self.trigger_event(
            self.AppRequestBlocked,
            reason=reason,
            existing_installs=str(existing_installs),
            **self._outcome(by),
        )
        return True

    def cancel(self, cycle: int, by: Actor, *, reason: str | None = None) -> None:
        """The requester withdraws (RequestNotFound when they have no open request in it)."""
        if cycle != self.cycle or self.pending_scopes(by.account_id) is None:
            raise RequestNotFound(
                f"{by.account_id} has no open request in case {make_case_id(self.app_id, cycle)}"
            )
        self.trigger_event(
            self.AppRequestCancelled,
            org_id=self.org_id,
            site_id=self.site_id,
            app_id=self.app_id,
            case_id=self.case_id,
            cycle=self.cycle,
            account_id=by.account_id,
            closes_case=set(self.requesters) == {by.account_id},
            reason=reason,
            **by.recorded(),
        )

    def expire(self, cycle: int, opened_before: datetime, by: Actor, *, reason: str) -> bool:
        """Close the case if it is still open and was opened before `opened_before`."""
        if cycle != self.cycle or not self.is_open:
            return False
        assert self.opened_at is not None
        if self.opened_at > opened_before:
            return False
        self.trigger_event(self.AppRequestExpired, reason=reason, **self._outcome(by))
        return True

    def _decidable(self, cycle: int, outcome: CaseStatus) -> bool:
        """True when the case is open; False when it already had `outcome`; else it refuses."""
        if cycle < 1 or cycle > self.cycle:
            raise CaseNotFound("no such request case on this site")
        if cycle < self.cycle:
            raise CaseClosed(
                f"case {make_case_id(self.app_id, cycle)} is closed; the latest is {self.case_id}"
            )
        if self.status == outcome:
            return False
        if not self.is_open:
            raise CaseClosed(f"case {self.case_id} was {self.status} by {self.decided_by}")
        return True

    def _outcome(self, by: Actor) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "site_id": self.site_id,
            "app_id": self.app_id,
            "app_name": self.app_name,
            "case_id": self.case_id,
            "cycle": self.cycle,
            "requesters": sorted(self.requesters),
            **by.recorded(),
        }

    def open_cycle(self, cycle: int, at: datetime) -> None:
        """Assign a newly opened case (called only by AppRequested's apply step)."""
        self.cycle = cycle
        self.status = str(CaseStatus.OPEN)
        self.opened_at = at
        self.closed_at = None
        self.requesters = {}
        self.decided_by = None
        self.reason = None
        self.approved_scopes = []

    def close(self, status: CaseStatus, actor: str, reason: str | None, at: datetime) -> None:
        """Assign a recorded outcome (called only by the events' apply steps)."""
        self.status = str(status)
        self.decided_by = actor
        self.reason = reason
        self.closed_at = at
