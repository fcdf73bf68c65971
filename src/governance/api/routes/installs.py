"""End users' and admins' installs, self-revocations, and the consent screen's question."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from governance.api.access import installer_role, same_org
from governance.api.consent import consent_body
from governance.api.deps import (
    CurrentActor,
    CurrentPrincipal,
    Governance,
    RuntimeDep,
    WantedPosition,
)
from governance.api.errors import error_body
from governance.api.params import AppIdPath, AppIdQuery, ScopesQuery, SiteId
from governance.api.schemas import ConsentDecision, ErrorBody, InstallationPublic, InstallRequest
from governance.api.usecases import install_for
from governance.application import InstallStatus

router = APIRouter(prefix="/v1/sites/{site_id}", tags=["installs"])


@router.post(
    "/installations",
    status_code=201,
    response_model=InstallationPublic,
    responses={
        200: {"model": InstallationPublic, "description": "Already installed: nothing recorded"},
        403: {
            "model": ErrorBody,
            "description": "Refused; the code is the consent reason (user_installs_blocked,"
            " app_blocked, scopes_exceed_approval, request_pending) and `can_request` says"
            " whether the caller may ask an admin for it",
        },
    },
)
def install(
    site_id: SiteId,
    body: InstallRequest,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    response: Response,
) -> InstallationPublic | JSONResponse:
    outcome = install_for(
        governance, principal, by, site_id, body.app_id, body.app_name, body.scopes
    )
    position = {"X-Event-Position": str(outcome.position)}
    if outcome.status is InstallStatus.REFUSED:
        refusal = error_body(
            str(outcome.reason),
            outcome.message or "the install was refused",
            policy_version=outcome.policy_version,
            can_request=outcome.can_request,
        )
        return JSONResponse(refusal, status_code=403, headers=position)
    response.status_code = 201 if outcome.status is InstallStatus.INSTALLED else 200
    response.headers.update(position)
    return InstallationPublic(
        site_id=site_id,
        app_id=body.app_id,
        account_id=principal.account_id,
        installed_by=outcome.installed_by.value,
        installed_at=outcome.installed_at,
    )


@router.delete("/installations/{app_id}", status_code=204)
def uninstall(
    site_id: SiteId,
    app_id: AppIdPath,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
) -> Response:
    org_id = same_org(principal, governance.site_org(site_id))
    installer_role(principal, org_id, site_id)
    result = governance.uninstall_app(site_id, app_id, by)
    return Response(status_code=204, headers={"X-Event-Position": str(result.position)})


@router.get("/consent", response_model=ConsentDecision)
async def consent(
    site_id: SiteId,
    app_id: AppIdQuery,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    min_position: WantedPosition,
    scopes: ScopesQuery = [],  # noqa: B006 - never mutated
) -> Response:
    """May the caller install this app (with these scopes) now, and if not, may they request it?

    What a consent screen asks before showing Accept, or a "Request access" button.
    """
    body = await consent_body(runtime, principal, site_id, app_id, scopes, min_position)
    return Response(body, media_type="application/json")
