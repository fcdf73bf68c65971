"""The admin console: a site's connected apps, its security control, and app removals."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response

from governance.api.access import require_admin, require_admin_or_auditor
from governance.api.deps import Governance, RuntimeDep, Views
from governance.api.errors import ApiError, not_found
from governance.api.params import AppIdPath, SiteId
from governance.api.schemas import TEXT_PATTERN
from governance.api.usecases import (
    change_user_installs,
    remove_connected_app,
    viewed_site_org,
    visible_sites,
)
from governance.domain.site import ExistingUserInstalls, UserInstalls
from governance.web.pages import PageActor, PagePrincipal, PageRoute, redirect, render
from projections import connected_apps as apps_view
from projections import policy as policy_view

router = APIRouter(prefix="/admin/sites", route_class=PageRoute)

# Stored on events and shown in views: no control characters (PostgreSQL refuses NUL outright).
Reason = Annotated[str, Form(max_length=500, pattern=TEXT_PATTERN)]


def apps_page(site_id: str, position: int) -> str:
    return f"/admin/sites/{site_id}/connected-apps?min_position={position}"


@router.get("")
def sites(request: Request, principal: PagePrincipal, views: Views) -> Response:
    with views.read() as tx:
        listed = visible_sites(tx, principal)
    return render(request, "sites.html", principal=principal, sites=listed)


@router.get("/{site_id}/connected-apps")
def connected_apps(
    request: Request, site_id: SiteId, principal: PagePrincipal, views: Views
) -> Response:
    with views.read() as tx:
        org_id = viewed_site_org(tx, site_id, principal)
        require_admin_or_auditor(principal, org_id, site_id)
        policy = policy_view.get_policy(tx, site_id)
        apps = apps_view.connected_apps(tx, site_id)
    return render(
        request,
        "connected_apps.html",
        principal=principal,
        site=policy,
        apps=apps,
        manages=principal.administers(org_id, site_id),
        current="apps",
    )


@router.post("/{site_id}/user-installs")
def set_user_installs(
    site_id: SiteId,
    principal: PagePrincipal,
    by: PageActor,
    governance: Governance,
    state: Annotated[Literal["blocked", "allowed"], Form()],
    expected_policy_version: Annotated[int, Form(ge=1)],
    existing_user_installs: Annotated[Literal["keep", "remove"], Form()] = "keep",
    reason: Reason = "",
) -> Response:
    result, _ = change_user_installs(
        governance,
        principal,
        by,
        site_id,
        UserInstalls(state),
        reason=reason.strip() or None,
        # The version the admin saw: a change made meanwhile by someone else is not overwritten.
        expected_policy_version=expected_policy_version,
        existing_user_installs=ExistingUserInstalls(existing_user_installs),
    )
    return redirect(apps_page(site_id, result.position) + "#security-controls")


@router.get("/{site_id}/connected-apps/{app_id}/remove")
def confirm_removal(
    request: Request, site_id: SiteId, app_id: AppIdPath, principal: PagePrincipal, views: Views
) -> Response:
    with views.read() as tx:
        org_id = viewed_site_org(tx, site_id, principal)
        require_admin(principal, org_id, site_id)
        policy = policy_view.get_policy(tx, site_id)
        app = next((a for a in apps_view.connected_apps(tx, site_id) if a.app_id == app_id), None)
    if app is None:
        raise not_found("app")
    return render(
        request, "remove_app.html", principal=principal, site=policy, app=app, current="apps"
    )


@router.post("/{site_id}/connected-apps/{app_id}/remove")
def remove_app(
    site_id: SiteId,
    app_id: AppIdPath,
    principal: PagePrincipal,
    by: PageActor,
    runtime: RuntimeDep,
    reason: Reason = "",
) -> Response:
    if not reason.strip():
        raise ApiError(422, "invalid_request", "reason: say why the app is removed")
    result = remove_connected_app(runtime, principal, by, site_id, app_id, reason.strip())
    return redirect(apps_page(site_id, result.position))
