"""A site's "Connected apps" list, admins' removals, and the site's timeline."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from governance.api.access import require_admin_or_auditor
from governance.api.deps import CurrentActor, CurrentPrincipal, RuntimeDep, Views
from governance.api.params import (
    AppIdPath,
    AsOf,
    Since,
    SiteId,
    Until,
    check_period,
)
from governance.api.schemas import (
    ConnectedAppList,
    ConnectedAppPublic,
    HistoryEntryPublic,
    HistoryPage,
    Reason,
)
from governance.api.usecases import remove_connected_app as remove
from governance.api.usecases import viewed_site_org
from governance.eventstore import MAX_POSITION
from projections import connected_apps as apps_view
from projections import timeline as timeline_view

router = APIRouter(prefix="/v1/sites/{site_id}", tags=["connected apps"])


@router.get("/connected-apps", response_model=ConnectedAppList)
def list_connected_apps(
    site_id: SiteId, principal: CurrentPrincipal, views: Views, as_of: AsOf = None
) -> ConnectedAppList:
    with views.read() as tx:
        org_id = viewed_site_org(tx, site_id, principal)
        require_admin_or_auditor(principal, org_id, site_id)
        if as_of is None:
            apps = apps_view.connected_apps(tx, site_id)
        else:
            apps = apps_view.connected_apps_as_of(tx, site_id, as_of)
    return ConnectedAppList(
        site_id=site_id,
        apps=[ConnectedAppPublic.model_validate(app, from_attributes=True) for app in apps],
    )


@router.delete("/connected-apps/{app_id}", status_code=204)
def remove_connected_app(
    site_id: SiteId,
    app_id: AppIdPath,
    principal: CurrentPrincipal,
    by: CurrentActor,
    runtime: RuntimeDep,
    reason: Annotated[Reason | None, Query(description="Why; shown in the history")] = None,
) -> Response:
    result = remove(runtime, principal, by, site_id, app_id, reason)
    return Response(status_code=204, headers={"X-Event-Position": str(result.position)})


@router.get("/history", response_model=HistoryPage)
def site_history(
    site_id: SiteId,
    principal: CurrentPrincipal,
    views: Views,
    after: Annotated[
        int, Query(ge=0, le=MAX_POSITION, description="Return entries after this position")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Since = None,
    until: Until = None,
) -> HistoryPage:
    """The site's timeline in sentences, a page at a time: pass `next_after` back as `after`."""
    check_period(since, until)
    with views.read() as tx:
        org_id = viewed_site_org(tx, site_id, principal)
        require_admin_or_auditor(principal, org_id, site_id)
        entries = timeline_view.site_history(tx, org_id, site_id, after, limit, since, until)
    return HistoryPage(
        site_id=site_id,
        events=[HistoryEntryPublic.model_validate(e, from_attributes=True) for e in entries],
        next_after=entries[-1].position if len(entries) == limit else None,
    )
