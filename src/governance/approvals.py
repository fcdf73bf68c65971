"""The service layer for a site's app lists and end users' requests, mixed into the application.

Each command loads the Site and the app's request case, calls them, and saves what changed in
one transaction: an approved or blocked case and the list entry it creates commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

from governance.domain.actor import Actor
from governance.domain.consent import ConsentReason, decide_install
from governance.domain.errors import AppIsBlocked, RequestNotNeeded
from governance.domain.grant import Grant, InstalledBy
from governance.domain.request_case import AppRequestCase, parse_case_id
from governance.domain.site import ExistingUserInstalls, Site
from governance.reporting import reported
from governance.results import CommandResult

T = TypeVar("T")

# Many people ask for a popular app at once, and each request writes to the app's one case.
_REQUEST_ATTEMPTS = 10


@dataclass(frozen=True)
class ListingState:
    """An app's place on a site's lists, as the command left it (`status` "none": on neither)."""

    site_id: str
    app_id: str
    status: str
    app_name: str | None = None
    scopes: tuple[str, ...] = ()
    reason: str | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None
    case_id: str | None = None


@dataclass(frozen=True)
class CaseState:
    """A request case, as the command left it."""

    site_id: str
    case_id: str
    app_id: str
    app_name: str
    status: str
    requester_count: int
    scopes: tuple[str, ...]  # the union of what its requesters ask for
    approved_scopes: tuple[str, ...]
    opened_at: datetime | None
    closed_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class RequestState:
    """The caller's request (every scope they asked for) and the case it is part of."""

    case: CaseState
    scopes: tuple[str, ...]


class _Service(Protocol):
    """What these commands use of the application they are mixed into."""

    @property
    def repository(self) -> Repository[Any]: ...
    def _get_site(self, site_id: str) -> Site: ...
    def _get_site_and_grant(
        self, site_id: str, app_id: str, account_id: str
    ) -> tuple[Site, Grant]: ...
    def _get_case(self, site_id: str, app_id: str) -> AppRequestCase: ...
    def _save(self, *aggregates: Aggregate) -> int: ...
    def _head(self) -> int: ...
    def _retrying(self, command: Callable[[], T], attempts: int = ...) -> T: ...


class ApprovalCommands:
    """Approve, block or clear apps on a site's lists; request, decide, cancel, expire requests."""

    @reported("approve_app", result_of=lambda result: result[0])
    def approve_app(
        self: _Service,
        site_id: str,
        app_id: str,
        app_name: str | None,
        scopes: Collection[str],
        by: Actor,
        *,
        reason: str | None = None,
    ) -> tuple[CommandResult, ListingState]:
        """Approve the app for exactly `scopes`; `app_name` defaults to the name known."""

        def attempt() -> tuple[CommandResult, ListingState]:
            site = self._get_site(site_id)
            case = self._get_case(site_id, app_id)
            name = app_name or _known_name(site, case, app_id)
            changed = site.approve_app(app_id, name, scopes, by, reason=reason)
            # An open case that this approval answers in full is closed by it, so its
            # requesters see "approved" rather than waiting for the case to expire.
            if case.is_open and set(case.requested_scopes()) <= set(scopes):
                changed = case.approve(case.cycle, by, scopes=None, reason=reason) or changed
            return _commit(self, changed, site, case), _listing(site, app_id)

        return self._retrying(attempt)

    @reported("block_app", result_of=lambda result: result[0])
    def block_app(
        self: _Service,
        site_id: str,
        app_id: str,
        app_name: str | None,
        by: Actor,
        *,
        reason: str | None = None,
        existing_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
    ) -> tuple[CommandResult, ListingState]:
        """Block the app for everyone; an open request case for it is refused with it."""

        def attempt() -> tuple[CommandResult, ListingState]:
            site = self._get_site(site_id)
            case = self._get_case(site_id, app_id)
            name = app_name or _known_name(site, case, app_id)
            changed = site.block_app(
                app_id, name, by, reason=reason, existing_installs=existing_installs
            )
            if case.is_open:
                changed = (
                    case.block(case.cycle, by, reason=reason, existing_installs=existing_installs)
                    or changed
                )
            return _commit(self, changed, site, case), _listing(site, app_id)

        return self._retrying(attempt)

    @reported("clear_app_listing", result_of=lambda result: result[0])
    def clear_app_listing(
        self: _Service, site_id: str, app_id: str, by: Actor, *, reason: str | None = None
    ) -> tuple[CommandResult, ListingState]:
        def attempt() -> tuple[CommandResult, ListingState]:
            site = self._get_site(site_id)
            changed = site.clear_app_listing(app_id, by, reason=reason)
            return _commit(self, changed, site), _listing(site, app_id)

        return self._retrying(attempt)

    @reported("request_app", result_of=lambda result: result[0])
    def request_app(
        self: _Service,
        site_id: str,
        app_id: str,
        app_name: str,
        scopes: Collection[str],
        justification: str,
        by: Actor,
        installed_by: InstalledBy,
    ) -> tuple[CommandResult, RequestState]:
        """Ask for an app the install rule refuses but lets one request (or widen one's request).

        Refused with the rule's reason otherwise: AppIsBlocked, or RequestNotNeeded when the
        account may install it already. Concurrent requesters of one case conflict and retry.
        """

        def attempt() -> tuple[CommandResult, RequestState]:
            site, grant = self._get_site_and_grant(site_id, app_id, by.account_id)
            case = self._get_case(site_id, app_id)
            pending = case.pending_scopes(by.account_id)
            verdict = decide_install(site, grant, installed_by, app_id, scopes, pending)
            if verdict.reason is ConsentReason.APP_BLOCKED:
                raise AppIsBlocked(verdict.message or "the app is blocked on this site")
            if verdict.allowed:
                raise RequestNotNeeded(
                    f"you may install {app_id!r} already ({verdict.reason}): nothing to request"
                )
            changed = case.request(
                site.org_id, site_id, app_id, app_name, scopes, justification, by
            )
            mine = RequestState(_case(site_id, case), tuple(case.requesters[by.account_id]))
            return _commit(self, changed, case), mine

        return self._retrying(attempt, _REQUEST_ATTEMPTS)

    @reported("approve_request", result_of=lambda result: result[0])
    def approve_request(
        self: _Service,
        site_id: str,
        case_id: str,
        by: Actor,
        *,
        scopes: Collection[str] | None = None,
        reason: str | None = None,
    ) -> tuple[CommandResult, CaseState]:
        """Approve the case for `scopes` (default: all requested): the app joins the approved
        list, adding these scopes to any it had, in the same transaction."""
        app_id, cycle = parse_case_id(case_id)

        def attempt() -> tuple[CommandResult, CaseState]:
            site = self._get_site(site_id)
            case = self._get_case(site_id, app_id)
            changed = case.approve(cycle, by, scopes=scopes, reason=reason)
            if changed:
                site.approve_app(
                    app_id,
                    case.app_name,
                    {*site.approved_scopes(app_id), *case.approved_scopes},
                    by,
                    reason=reason,
                    case_id=case.case_id,
                )
            return _commit(self, changed, case, site), _case(site_id, case)

        return self._retrying(attempt)

    @reported("deny_request", result_of=lambda result: result[0])
    def deny_request(
        self: _Service, site_id: str, case_id: str, by: Actor, *, reason: str
    ) -> tuple[CommandResult, CaseState]:
        app_id, cycle = parse_case_id(case_id)

        def attempt() -> tuple[CommandResult, CaseState]:
            self._get_site(site_id)
            case = self._get_case(site_id, app_id)
            changed = case.deny(cycle, by, reason=reason)
            return _commit(self, changed, case), _case(site_id, case)

        return self._retrying(attempt)

    @reported("block_request", result_of=lambda result: result[0])
    def block_request(
        self: _Service,
        site_id: str,
        case_id: str,
        by: Actor,
        *,
        reason: str,
        existing_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
    ) -> tuple[CommandResult, CaseState]:
        """Refuse the case for good: the app joins the blocked list in the same transaction."""
        app_id, cycle = parse_case_id(case_id)

        def attempt() -> tuple[CommandResult, CaseState]:
            site = self._get_site(site_id)
            case = self._get_case(site_id, app_id)
            changed = case.block(cycle, by, reason=reason, existing_installs=existing_installs)
            if changed:
                site.block_app(
                    app_id,
                    case.app_name,
                    by,
                    reason=reason,
                    existing_installs=existing_installs,
                    case_id=case.case_id,
                )
            return _commit(self, changed, case, site), _case(site_id, case)

        return self._retrying(attempt)

    @reported("cancel_request")
    def cancel_request(
        self: _Service, site_id: str, case_id: str, by: Actor, *, reason: str | None = None
    ) -> CommandResult:
        """The caller withdraws their own request (RequestNotFound when they have none open)."""
        app_id, cycle = parse_case_id(case_id)

        def attempt() -> CommandResult:
            self._get_site(site_id)
            case = self._get_case(site_id, app_id)
            case.cancel(cycle, by, reason=reason)
            return _commit(self, True, case)

        return self._retrying(attempt, _REQUEST_ATTEMPTS)

    @reported("expire_request")
    def expire_request(
        self: _Service,
        site_id: str,
        case_id: str,
        opened_before: datetime,
        by: Actor,
        *,
        reason: str,
    ) -> CommandResult:
        """Close the case if it is still open since before `opened_before`; else do nothing."""
        app_id, cycle = parse_case_id(case_id)

        def attempt() -> CommandResult:
            case = self._get_case(site_id, app_id)
            changed = case.expire(cycle, opened_before, by, reason=reason)
            return _commit(self, changed, case)

        return self._retrying(attempt)

    def _get_case(self: _Service, site_id: str, app_id: str) -> AppRequestCase:
        try:
            case: AppRequestCase = self.repository.get(AppRequestCase.id_for(site_id, app_id))
        except AggregateNotFoundError:
            return AppRequestCase.open(site_id, app_id, datetime.now(UTC))
        return case


def _commit(service: _Service, changed: bool, *aggregates: Aggregate) -> CommandResult:
    """Save the aggregates in one transaction when the command changed any of them."""
    position = service._save(*aggregates) if changed else service._head()
    return CommandResult(changed=changed, position=position)


def _known_name(site: Site, case: AppRequestCase, app_id: str) -> str:
    """The app's name as the site's lists or its requesters gave it, else its id."""
    listing = site.listing(app_id)
    return (listing["app_name"] if listing else None) or case.app_name or app_id


def _listing(site: Site, app_id: str) -> ListingState:
    listing = site.listing(app_id)
    if listing is None:
        return ListingState(site_id=site.site_id, app_id=app_id, status="none")
    return ListingState(
        site_id=site.site_id,
        app_id=app_id,
        status=listing["status"],
        app_name=listing["app_name"],
        scopes=tuple(listing["scopes"]),
        reason=listing["reason"],
        updated_by=listing["updated_by"],
        updated_at=listing["updated_at"],
        case_id=listing["case_id"],
    )


def _case(site_id: str, case: AppRequestCase) -> CaseState:
    return CaseState(
        site_id=site_id,
        case_id=case.case_id,
        app_id=case.app_id,
        app_name=case.app_name,
        status=case.status,
        requester_count=len(case.requesters),
        scopes=tuple(case.requested_scopes()),
        approved_scopes=tuple(case.approved_scopes),
        opened_at=case.opened_at,
        closed_at=case.closed_at,
        decided_by=case.decided_by,
        reason=case.reason,
    )
