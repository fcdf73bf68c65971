"""A site's approved and blocked apps: read them (now or as of a time), and change them."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from governance.api.access import require_admin, require_reader, same_org
from governance.api.app_schemas import AppListingChange, AppListingPublic, AppListsPublic
from governance.api.deps import CurrentActor, CurrentPrincipal, Governance, Views
from governance.api.params import AppIdPath, AsOf, SiteId
from governance.api.schemas import Reason
from governance.approvals import ListingState
from governance.domain.site import ExistingUserInstalls
from projections import app_lists as lists_view

router = APIRouter(prefix="/v1/sites/{site_id}/apps", tags=["app lists"])


@router.get("", response_model=AppListsPublic)
def list_apps(
    site_id: SiteId,
    principal: CurrentPrincipal,
    views: Views,
    status: Annotated[Literal["approved", "blocked"] | None, Query()] = None,
    as_of: AsOf = None,
) -> AppListsPublic:
    """The site's approved and blocked apps (or one list), now or as they stood at `as_of`."""
    with views.read() as tx:
        require_reader(tx, principal, site_id)
        if as_of is None:
            listed = lists_view.app_lists(tx, site_id)
        else:
            listed = lists_view.app_lists_as_of(tx, site_id, as_of)
    return AppListsPublic(
        site_id=site_id,
        apps=[_public(app) for app in listed if status in (None, app.status)],
    )


@router.get("/{app_id}/approval", response_model=AppListingPublic)
def get_listing(
    site_id: SiteId,
    app_id: AppIdPath,
    principal: CurrentPrincipal,
    views: Views,
    as_of: AsOf = None,
) -> AppListingPublic:
    """Whether the app is approved (and for which scopes), blocked, or on neither list."""
    with views.read() as tx:
        require_reader(tx, principal, site_id)
        if as_of is None:
            listed = lists_view.listed_app(tx, site_id, app_id)
        else:
            listed = lists_view.listed_app_as_of(tx, site_id, app_id, as_of)
    return _public(listed or ListingState(site_id=site_id, app_id=app_id, status="none"))


@router.put("/{app_id}/approval", response_model=AppListingPublic)
def set_listing(
    site_id: SiteId,
    app_id: AppIdPath,
    body: AppListingChange,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    response: Response,
) -> AppListingPublic:
    """Approve the app (within `scopes`) or block it; an open request case for it is answered."""
    org_id = same_org(principal, governance.site_org(site_id))
    require_admin(principal, org_id, site_id)
    if body.status == "approved":
        result, state = governance.approve_app(
            site_id, app_id, body.app_name, body.scopes, by, reason=body.reason
        )
    else:
        result, state = governance.block_app(
            site_id,
            app_id,
            body.app_name,
            by,
            reason=body.reason,
            existing_installs=ExistingUserInstalls(body.existing_installs),
        )
    response.headers["X-Event-Position"] = str(result.position)
    return _public(state)


@router.delete("/{app_id}/approval", status_code=204)
def clear_listing(
    site_id: SiteId,
    app_id: AppIdPath,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    reason: Annotated[Reason | None, Query(description="Why; shown in the history")] = None,
) -> Response:
    """Take the app off the approved or blocked list (204 also when it was on neither)."""
    org_id = same_org(principal, governance.site_org(site_id))
    require_admin(principal, org_id, site_id)
    result, _ = governance.clear_app_listing(site_id, app_id, by, reason=reason)
    return Response(status_code=204, headers={"X-Event-Position": str(result.position)})


def _public(listing: lists_view.ListedApp | ListingState) -> AppListingPublic:
    return AppListingPublic.model_validate(listing, from_attributes=True)
