"""The console's "App requests" page: a site's approved and blocked apps, and its open cases."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response

from governance.api.access import require_reader
from governance.api.deps import Governance, RuntimeDep, Views
from governance.api.params import CaseIdPath, SiteId
from governance.api.schemas import TEXT_PATTERN
from governance.api.usecases import decide_case, viewed_site_org
from governance.domain.site import ExistingUserInstalls
from governance.web.pages import PageActor, PagePrincipal, PageRoute, redirect, render
from projections import app_lists as lists_view
from projections import app_requests as requests_view
from projections import policy as policy_view

router = APIRouter(prefix="/admin/sites", route_class=PageRoute)


@router.get("/{site_id}/app-requests")
def app_requests(
    request: Request, site_id: SiteId, principal: PagePrincipal, views: Views, runtime: RuntimeDep
) -> Response:
    with views.read() as tx:
        require_reader(tx, principal, site_id)
        org_id = viewed_site_org(tx, site_id, principal)
        policy = policy_view.get_policy(tx, site_id)
        listed = lists_view.app_lists(tx, site_id)
        cases = requests_view.cases(tx, site_id, "open", 100)
    return render(
        request,
        "app_requests.html",
        principal=principal,
        site=policy,
        approved=[app for app in listed if app.status == "approved"],
        blocked=[app for app in listed if app.status == "blocked"],
        cases=cases,
        ttl=timedelta(days=runtime.settings.app_request_ttl_days),
        manages=principal.administers(org_id, site_id),
        current="requests",
    )


@router.post("/{site_id}/app-requests/{case_id}/decide")
def decide(
    site_id: SiteId,
    case_id: CaseIdPath,
    principal: PagePrincipal,
    by: PageActor,
    governance: Governance,
    outcome: Annotated[Literal["approve", "deny", "block"], Form()],
    reason: Annotated[str, Form(max_length=500, pattern=TEXT_PATTERN)] = "",
) -> Response:
    """Approve (every requested scope), deny or block one case, from its row in the queue."""
    result, _ = decide_case(
        governance,
        principal,
        by,
        site_id,
        case_id,
        outcome,
        reason=reason.strip() or None,
        existing_installs=ExistingUserInstalls.KEEP,
    )
    return redirect(f"/admin/sites/{site_id}/app-requests?min_position={result.position}")
