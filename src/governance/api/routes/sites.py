"""Sites of an organization and their "user-installed apps" policy."""

import re
from typing import Annotated

from fastapi import APIRouter, Header, Response

from governance.api.deps import CurrentActor, CurrentPrincipal, Governance, Views
from governance.api.errors import ApiError, forbidden, not_found
from governance.api.params import AsOf, OrgId, SiteId
from governance.api.schemas import (
    PolicyPublic,
    SiteList,
    SitePublic,
    SiteRegistration,
    SiteSummary,
    UserInstallsChange,
)
from governance.api.usecases import change_user_installs, visible_sites
from governance.application import CommandResult
from governance.auth import Principal, Role
from governance.domain.site import ExistingUserInstalls, UserInstalls
from projections import policy as policy_view

router = APIRouter(prefix="/v1", tags=["sites"])

_ETAG = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')


def _position(response: Response, result: CommandResult) -> None:
    response.headers["X-Event-Position"] = str(result.position)


def _own_org(principal: Principal, org_id: str) -> None:
    if principal.org_id != org_id:
        raise not_found("organization")


@router.put(
    "/orgs/{org_id}/sites/{site_id}",
    status_code=201,
    response_model=SitePublic,
    responses={200: {"model": SitePublic, "description": "Already registered with that name"}},
)
def register_site(
    org_id: OrgId,
    site_id: SiteId,
    body: SiteRegistration,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    response: Response,
) -> SitePublic:
    _own_org(principal, org_id)
    if not principal.has(Role.ORG_ADMIN):
        raise forbidden("only an org-admin of this organization may register sites")
    result = governance.register_site(org_id, site_id, body.name, by)
    response.status_code = 201 if result.changed else 200
    _position(response, result)
    return SitePublic(site_id=site_id, org_id=org_id, name=body.name)


@router.get("/orgs/{org_id}/sites", response_model=SiteList)
def list_sites(org_id: OrgId, principal: CurrentPrincipal, views: Views) -> SiteList:
    _own_org(principal, org_id)
    with views.read() as tx:
        visible = visible_sites(tx, principal)
    return SiteList(
        sites=[
            SiteSummary(site_id=s.site_id, name=s.name, user_installs=s.user_installs)
            for s in visible
        ]
    )


@router.get("/sites/{site_id}/policy", response_model=PolicyPublic)
def get_policy(
    site_id: SiteId,
    principal: CurrentPrincipal,
    views: Views,
    as_of: AsOf = None,
) -> PolicyPublic:
    with views.read() as tx:
        current = policy_view.get_policy(tx, site_id)
        if current is None or current.org_id != principal.org_id:
            raise not_found("site")
        _may_read_policy(principal, current.org_id, site_id)
        if as_of is not None:
            current = policy_view.get_policy_as_of(tx, site_id, as_of)
            if current is None:
                raise ApiError(404, "not_found", "the site was not registered yet at that time")
    return _policy_public(current)


@router.put("/sites/{site_id}/policy/user-installs", response_model=PolicyPublic)
def set_user_installs(
    site_id: SiteId,
    body: UserInstallsChange,
    principal: CurrentPrincipal,
    by: CurrentActor,
    governance: Governance,
    response: Response,
    if_match: Annotated[
        str | None, Header(description='The policy version you read, e.g. "3"; 412 when stale.')
    ] = None,
) -> PolicyPublic:
    result, state = change_user_installs(
        governance,
        principal,
        by,
        site_id,
        UserInstalls(body.state),
        reason=body.reason,
        expected_policy_version=_expected_version(if_match),
        existing_user_installs=ExistingUserInstalls(body.existing_user_installs),
    )
    _position(response, result)
    response.headers["ETag"] = f'"{state.version}"'
    return PolicyPublic(
        site_id=state.site_id,
        org_id=state.org_id,
        user_installs=state.user_installs,
        version=state.version,
        updated_at=state.updated_at,
        updated_by=state.updated_by,
        reason=state.reason,
    )


def _may_read_policy(principal: Principal, org_id: str, site_id: str) -> None:
    if not (principal.administers(org_id, site_id) or principal.audits(org_id)):
        raise forbidden("only admins of this site, org-admins and auditors may read its policy")


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    match = _ETAG.match(if_match.strip())
    if match is None:
        raise ApiError(
            422,
            "invalid_request",
            'If-Match: expected a policy version such as "3"',
            details=[{"field": "If-Match", "message": 'expected a policy version such as "3"'}],
        )
    return int(match.group(1))


def _policy_public(policy: policy_view.SitePolicy) -> PolicyPublic:
    return PolicyPublic(
        site_id=policy.site_id,
        org_id=policy.org_id,
        user_installs=policy.user_installs,
        version=policy.version,
        updated_at=policy.updated_at,
        updated_by=policy.updated_by,
        reason=policy.reason,
    )
