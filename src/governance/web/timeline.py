"""A site's timeline, for auditors and admins: who changed what, when and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from governance.api.access import require_admin_or_auditor
from governance.api.deps import Views
from governance.api.params import SiteId
from governance.api.usecases import viewed_site_org
from governance.web.pages import PagePrincipal, PageRoute, render
from projections import policy as policy_view
from projections import timeline as timeline_view

router = APIRouter(prefix="/admin/sites", route_class=PageRoute)

_PAGE = 50


@router.get("/{site_id}/history")
def history(
    request: Request,
    site_id: SiteId,
    principal: PagePrincipal,
    views: Views,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    with views.read() as tx:
        org_id = viewed_site_org(tx, site_id, principal)
        require_admin_or_auditor(principal, org_id, site_id)
        policy = policy_view.get_policy(tx, site_id)
        entries = timeline_view.site_history(tx, org_id, site_id, after, _PAGE)
    return render(
        request,
        "history.html",
        principal=principal,
        site=policy,
        entries=entries,
        after=after,
        next_after=entries[-1].position if len(entries) == _PAGE else None,
        current="history",
    )
