"""The audit trail of an organization, and the verification of the log's hash chain."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from governance.api.deps import CurrentPrincipal, Governance, RuntimeDep, Views
from governance.api.errors import ApiError, forbidden
from governance.api.params import Since, Until, check_period
from governance.api.schemas import (
    TEXT_PATTERN,
    AuditPage,
    ChainVerification,
)
from governance.audit.scoped import for_organization
from governance.audit.trail import records_at
from governance.audit.verify import Head, chain_store, verify
from governance.auth import Principal, Role
from governance.eventstore import MAX_POSITION
from governance.published import EVENT_TYPES
from projections.audit import AuditFilter, audit_positions, org_holds

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_ID = r"^[A-Za-z0-9._:-]+$"
_TYPES = sorted(name for name, _ in EVENT_TYPES.values())


def _auditor(principal: CurrentPrincipal) -> Principal:
    if not (principal.has(Role.ORG_ADMIN) or principal.audits(principal.org_id)):
        raise forbidden("only auditors and org-admins may read the audit trail")
    return principal


Auditor = Annotated[Principal, Depends(_auditor)]


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"{field}: {message}",
        details=[{"field": field, "message": message}],
    )


def _filter(
    principal: Auditor,
    site_id: Annotated[str | None, Query(min_length=1, max_length=128, pattern=_ID)] = None,
    event_type: Annotated[
        str | None,
        Query(alias="type", max_length=100, description=f"One of: {', '.join(_TYPES)}"),
    ] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=200, pattern=TEXT_PATTERN)] = None,
    since: Since = None,
    until: Until = None,
) -> AuditFilter:
    if event_type is not None and event_type not in _TYPES:
        known = ", ".join(_TYPES)
        raise _invalid("type", f"unknown event type {event_type!r}; use one of {known}")
    check_period(since, until)
    # Only the caller's organization, whatever the query says.
    return AuditFilter(principal.org_id, site_id, event_type, actor, since, until)


@router.get("/events", response_model=AuditPage)
def list_events(
    where: Annotated[AuditFilter, Depends(_filter)],
    views: Views,
    governance: Governance,
    after: Annotated[
        int, Query(ge=0, le=MAX_POSITION, description="Return events after this position")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The organization's events in log order, a page at a time: pass `next_after` back."""
    with views.read() as tx:
        positions = audit_positions(tx, where, after, limit)
    # The page's events themselves come from the log, described as the export describes them.
    records = records_at(governance.recorder, governance.mapper, positions)
    return AuditPage(
        events=records,
        next_after=positions[-1] if len(positions) == limit else None,
    )


@router.get("/verify", response_model=ChainVerification)
def verify_log(
    principal: Auditor,
    runtime: RuntimeDep,
    views: Views,
    governance: Governance,
    head: Annotated[
        str | None,
        Query(
            max_length=200, description="A head published earlier, HASH@POSITION, to compare with"
        ),
    ] = None,
) -> ChainVerification:
    """Recompute the hash chain over the whole log; say where it broke only inside your org."""
    published = None
    if head is not None:
        try:
            published = Head.parse(head)
        except ValueError as error:
            raise _invalid("head", str(error)) from None
    result = verify(chain_store(runtime.settings), published)

    def ours(position: int) -> bool:
        # The index remembers a deleted or edited event's organization; the log names the
        # organization of an event the index never saw (one inserted behind the projector).
        with views.read() as tx:
            if org_holds(tx, principal.org_id, position):
                return True
        try:
            stored = records_at(governance.recorder, governance.mapper, [position])
        except (ValueError, TypeError, KeyError):
            return False  # an edited event that no longer decodes names no organization
        return any(record.org_id == principal.org_id for record in stored)

    scoped = for_organization(result, ours)
    return ChainVerification.model_validate(
        {
            "intact": scoped.intact,
            "problem": scoped.problem.__dict__ if scoped.problem else None,
            "scope": "the whole event log (the chain is global); positions only of your"
            " organization's events",
        }
    )
