"""A site's "Connected apps" list, admins' removals, and the site's timeline."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from governance.api.access import require_admin, require_admin_or_auditor, same_org
from governance.api.deps import CurrentActor, CurrentPrincipal, Governance, RuntimeDep, Views
from governance.api.errors import ApiError
from governance.api.params import AppIdPath, AsOf, SiteId
from governance.api.schemas import (
    ConnectedAppList,
    ConnectedAppPublic,
    HistoryEntryPublic,
    HistoryPage,
    Reason,
)
from projections import connected_apps as apps_view
from projections import history as history_view
from projections import policy as policy_view
from projections.store import Tx

router = APIRouter(prefix="/v1/sites/{site_id}", tags=["connected apps"])


def _site_org(tx: Tx, site_id: str, principal_org: str) -> str:
    policy = policy_view.get_policy(tx, site_id)
    org_id = policy.org_id if policy else None
    if org_id is None or org_id != principal_org:
        raise ApiError(404, "not_found", "site was not found")
    return org_id


@router.get("/connected-apps", response_model=ConnectedAppList)
def list_connected_apps(
    site_id: SiteId, principal: CurrentPrincipal, views: Views, as_of: AsOf = None
) -> ConnectedAppList:
    with views.read() as tx:
        org_id = _site_org(tx, site_id, principal.org_id)
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
    governance: Governance,
    runtime: RuntimeDep,
    reason: Annotated[Reason | None, Query(description="Why; shown in the history")] = None,
) -> Response:
    org_id = same_org(principal, governance.site_org(site_id))
    require_admin(principal, org_id, site_id)
    # Decide on the list as it is now: let the view catch up with every install saved so far.
    runtime.projector.wait_for(governance.head_position(), runtime.settings.min_position_timeout)
    with runtime.views.read() as tx:
        connected = apps_view.is_connected(tx, site_id, app_id)
    result = governance.remove_app(site_id, app_id, by, reason, connected=connected)
    return Response(status_code=204, headers={"X-Event-Position": str(result.position)})


@router.get("/history", response_model=HistoryPage)
def site_history(
    site_id: SiteId,
    principal: CurrentPrincipal,
    views: Views,
    after: Annotated[int, Query(ge=0, description="Return entries after this position")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HistoryPage:
    with views.read() as tx:
        org_id = _site_org(tx, site_id, principal.org_id)
        require_admin_or_auditor(principal, org_id, site_id)
        entries = history_view.site_history(tx, site_id, after, limit)
    return HistoryPage(
        site_id=site_id,
        events=[HistoryEntryPublic.model_validate(e, from_attributes=True) for e in entries],
        next_after=entries[-1].position if len(entries) == limit else None,
    )
