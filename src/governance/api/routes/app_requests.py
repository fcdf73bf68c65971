"""End users ask for apps the site block refuses them; admins approve, deny or block the case."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from governance.api.access import require_reader, same_org
from governance.api.app_schemas import (
    AppRequestCaseDetail,
    AppRequestCaseList,
    AppRequestCasePublic,
    AppRequestCreate,
    AppRequestCreated,
    CaseApproval,
    CaseBlock,
    CaseDenial,
    OwnAppRequestList,
    OwnAppRequestPublic,
    RequesterPublic,
)
from governance.api.deps import CurrentActor, CurrentPrincipal, Governance, RuntimeDep, Views
from governance.api.errors import not_found
from governance.api.params import AsOf, CaseIdPath, SiteId
from governance.api.schemas import Reason
from governance.api.usecases import decide_case, request_app_for
from governance.approvals import CaseState
from governance.domain.site import ExistingUserInstalls
from governance.results import CommandResult
from governance.runtime import Runtime
from projections import app_requests as requests_view

router = APIRouter(prefix="/v1", tags=["app requests"])

StatusFilter = Annotated[
    Literal["open", "approved", "denied", "blocked", "cancelled", "expired", "all"],
    Query(description="Which cases; `all` for every status"),
]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _position(response: Response, result: CommandResult) -> None:
    response.headers["X-Event-Position"] = str(result.position)


@router.post(
    "/sites/{site_id}/app-requests",
    status_code=201,
    response_model=AppRequestCreated,
    responses={
        200: {"model": AppRequestCreated, "description": "Already requested: nothing recorded"},
        403: {"description": "The app is blocked on the site (code app_blocked)"},
        409: {"description": "The caller may install it already (code request_not_needed)"},
    },
)
def request_app(
    site_id: SiteId,
    body: AppRequestCreate,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    response: Response,
) -> AppRequestCreated:
    """Ask the site's admins for an app the install rule refuses (opens or joins its case)."""
    result, mine = request_app_for(
        governance,
        principal,
        by,
        site_id,
        body.app_id,
        body.app_name,
        body.scopes,
        body.justification,
    )
    response.status_code = 201 if result.changed else 200
    _position(response, result)
    return AppRequestCreated(
        case_id=mine.case.case_id,
        site_id=site_id,
        app_id=mine.case.app_id,
        app_name=mine.case.app_name,
        status="open",
        scopes=list(mine.scopes),
        requester_count=mine.case.requester_count,
    )


@router.get("/sites/{site_id}/app-requests", response_model=AppRequestCaseList)
def list_cases(
    site_id: SiteId,
    principal: CurrentPrincipal,
    views: Views,
    runtime: RuntimeDep,
    status: StatusFilter = "open",
    limit: Limit = 100,
    as_of: AsOf = None,
) -> AppRequestCaseList:
    """The site's request cases, most requested first (then oldest first)."""
    wanted = None if status == "all" else status
    with views.read() as tx:
        require_reader(tx, principal, site_id)
        if as_of is None:
            found = requests_view.cases(tx, site_id, wanted, limit)
        else:
            found = requests_view.cases_as_of(tx, site_id, wanted, limit, as_of)
    return AppRequestCaseList(site_id=site_id, cases=[_case(case, runtime) for case in found])


@router.get("/sites/{site_id}/app-requests/{case_id}", response_model=AppRequestCaseDetail)
def get_case(
    site_id: SiteId,
    case_id: CaseIdPath,
    principal: CurrentPrincipal,
    views: Views,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Requesters, oldest first")] = 100,
) -> AppRequestCaseDetail:
    """One case with its requesters, their scopes and justifications."""
    with views.read() as tx:
        require_reader(tx, principal, site_id)
        found = requests_view.case(tx, site_id, case_id)
        if found is None:
            raise not_found("request case")
        asking = requests_view.requesters(tx, site_id, case_id, limit)
    return AppRequestCaseDetail(
        **_case(found, runtime).model_dump(),
        requesters=[RequesterPublic.model_validate(r, from_attributes=True) for r in asking],
    )


@router.post("/sites/{site_id}/app-requests/{case_id}/approve", response_model=AppRequestCasePublic)
def approve_case(
    site_id: SiteId,
    case_id: CaseIdPath,
    body: CaseApproval,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    runtime: RuntimeDep,
    response: Response,
) -> AppRequestCasePublic:
    """Approve the app for the site, for the requested scopes or fewer."""
    result, case = decide_case(
        governance,
        principal,
        by,
        site_id,
        case_id,
        "approve",
        scopes=body.scopes,
        reason=body.reason,
    )
    _position(response, result)
    return _case(case, runtime)


@router.post("/sites/{site_id}/app-requests/{case_id}/deny", response_model=AppRequestCasePublic)
def deny_case(
    site_id: SiteId,
    case_id: CaseIdPath,
    body: CaseDenial,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    runtime: RuntimeDep,
    response: Response,
) -> AppRequestCasePublic:
    """Refuse for now: the app may be requested again later (a new case)."""
    result, case = decide_case(
        governance, principal, by, site_id, case_id, "deny", reason=body.reason
    )
    _position(response, result)
    return _case(case, runtime)


@router.post("/sites/{site_id}/app-requests/{case_id}/block", response_model=AppRequestCasePublic)
def block_case(
    site_id: SiteId,
    case_id: CaseIdPath,
    body: CaseBlock,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    runtime: RuntimeDep,
    response: Response,
) -> AppRequestCasePublic:
    """Refuse for good: the app is blocked on the site and may not be requested again."""
    result, case = decide_case(
        governance,
        principal,
        by,
        site_id,
        case_id,
        "block",
        reason=body.reason,
        existing_installs=ExistingUserInstalls(body.existing_installs),
    )
    _position(response, result)
    return _case(case, runtime)


@router.delete("/sites/{site_id}/app-requests/{case_id}/mine", status_code=204)
def cancel_own_request(
    site_id: SiteId,
    case_id: CaseIdPath,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    reason: Annotated[Reason | None, Query(description="Why; shown in the history")] = None,
) -> Response:
    """The caller withdraws their open request (404 when they have none in that case)."""
    same_org(principal, governance.site_org(site_id))
    result = governance.cancel_request(site_id, case_id, by, reason=reason)
    return Response(status_code=204, headers={"X-Event-Position": str(result.position)})


@router.get("/me/app-requests", response_model=OwnAppRequestList)
def own_requests(
    principal: CurrentPrincipal,
    views: Views,
    status: StatusFilter = "all",
    limit: Limit = 100,
) -> OwnAppRequestList:
    """The caller's requests on every site of their organization, newest first."""
    wanted = None if status == "all" else status
    with views.read() as tx:
        found = requests_view.own_requests(
            tx, principal.org_id, principal.account_id, wanted, limit
        )
    return OwnAppRequestList(
        account_id=principal.account_id,
        requests=[OwnAppRequestPublic.model_validate(r, from_attributes=True) for r in found],
    )


def _case(case: requests_view.RequestCase | CaseState, runtime: Runtime) -> AppRequestCasePublic:
    public = AppRequestCasePublic.model_validate(case, from_attributes=True)
    if public.status == "open" and public.opened_at is not None:
        ttl = timedelta(days=runtime.settings.app_request_ttl_days)
        public.expires_at = public.opened_at + ttl
    return public
