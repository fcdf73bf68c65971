"""What the API routes and the web pages both do: the same checks, views and commands.

Each function takes the caller and raises the API's errors (404, 403), so an answer never depends
on whether it was asked for as JSON or as a page.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from governance.api.access import installer_role, require_admin, same_org
from governance.api.errors import ApiError, forbidden, not_found
from governance.application import (
    CommandResult,
    GovernanceApplication,
    InstallOutcome,
    PolicyState,
)
from governance.approvals import CaseState, RequestState
from governance.auth import Principal, Role
from governance.domain.actor import Actor
from governance.domain.consent import Decision, decide
from governance.domain.grant import InstalledBy
from governance.domain.site import AppList, ExistingUserInstalls, UserInstalls
from governance.runtime import Runtime
from projections import app_lists as lists_view
from projections import app_requests as requests_view
from projections import connected_apps as apps_view
from projections import policy as policy_view
from projections.store import Tx


def viewed_site_org(tx: Tx, site_id: str, principal: Principal) -> str:
    """The site's org, read from the policy view; a missing or foreign site is the same 404."""
    policy = policy_view.get_policy(tx, site_id)
    return same_org(principal, policy.org_id if policy else None)


def visible_sites(tx: Tx, principal: Principal) -> Sequence[policy_view.SitePolicy]:
    """The sites of the caller's org that the caller administers or audits."""
    org_id = principal.org_id
    if not (principal.has(Role.ORG_ADMIN, Role.SITE_ADMIN) or principal.audits(org_id)):
        raise forbidden("only admins and auditors of this organization may list its sites")
    return [
        site
        for site in policy_view.list_sites(tx, org_id)
        if principal.administers(org_id, site.site_id) or principal.audits(org_id)
    ]


@dataclass(frozen=True)
class Consent:
    """What a consent screen shows one caller for one app on one site."""

    policy: policy_view.SitePolicy
    role: InstalledBy
    grant: apps_view.AccountGrant | None
    verdict: Decision


def consent_for(
    tx: Tx, principal: Principal, site_id: str, app_id: str, scopes: Sequence[str] = ()
) -> Consent:
    """May the caller install this app with these scopes now, and if not, may they request it?

    As the views say; the install and request commands decide by the same rule.
    """
    policy = policy_view.get_policy(tx, site_id)
    org_id = same_org(principal, policy.org_id if policy else None)
    assert policy is not None
    role = installer_role(principal, org_id, site_id)
    grant = apps_view.account_grant(tx, site_id, app_id, principal.account_id)
    listed = lists_view.listed_app(tx, site_id, app_id)
    verdict = decide(
        UserInstalls(policy.user_installs),
        role,
        scopes=scopes,
        granted=grant is not None and set(scopes) <= set(grant.scopes),
        listed=AppList(listed.status) if listed else None,
        approved_scopes=listed.scopes if listed else [],
        pending_scopes=requests_view.pending_scopes(tx, site_id, app_id, principal.account_id),
    )
    return Consent(policy, role, grant, verdict)


def install_for(
    governance: GovernanceApplication,
    principal: Principal,
    by: Actor,
    site_id: str,
    app_id: str,
    app_name: str,
    scopes: Sequence[str],
) -> InstallOutcome:
    """The caller installs an app: as an admin or a user of the site; refused while blocked."""
    org_id = same_org(principal, governance.site_org(site_id))
    role = installer_role(principal, org_id, site_id)
    return governance.install_app(site_id, app_id, app_name, scopes, by, role)


def remove_connected_app(
    runtime: Runtime,
    principal: Principal,
    by: Actor,
    site_id: str,
    app_id: str,
    reason: str | None,
) -> CommandResult:
    """An admin removes an app for everyone on the site, if it is connected as of now."""
    governance = runtime.application
    org_id = same_org(principal, governance.site_org(site_id))
    require_admin(principal, org_id, site_id)
    # Decide on the list as it is now: let the view catch up with every install saved so far.
    runtime.projector.wait_for(governance.head_position(), runtime.settings.min_position_timeout)
    with runtime.views.read() as tx:
        connected = apps_view.is_connected(tx, site_id, app_id)
    return governance.remove_app(site_id, app_id, by, reason, connected=connected)


def change_user_installs(
    governance: GovernanceApplication,
    principal: Principal,
    by: Actor,
    site_id: str,
    state: UserInstalls,
    *,
    reason: str | None,
    expected_policy_version: int | None,
    existing_user_installs: ExistingUserInstalls,
) -> tuple[CommandResult, PolicyState]:
    """An admin of the site blocks or allows user installs."""
    org_id = governance.site_org(site_id)
    if org_id != principal.org_id:
        raise not_found("site")
    if not principal.administers(org_id, site_id):
        raise forbidden("only an admin of this site or an org-admin may change its policy")
    return governance.set_user_installs(
        site_id,
        state,
        by,
        reason=reason,
        expected_policy_version=expected_policy_version,
        existing_user_installs=existing_user_installs,
    )


def request_app_for(
    governance: GovernanceApplication,
    principal: Principal,
    by: Actor,
    site_id: str,
    app_id: str,
    app_name: str,
    scopes: Sequence[str],
    justification: str,
) -> tuple[CommandResult, RequestState]:
    """A user of the site asks its admins for an app the install rule refuses them."""
    role = installer_role(principal, same_org(principal, governance.site_org(site_id)), site_id)
    return governance.request_app(site_id, app_id, app_name, scopes, justification, by, role)


CaseOutcome = Literal["approve", "deny", "block"]


def decide_case(
    governance: GovernanceApplication,
    principal: Principal,
    by: Actor,
    site_id: str,
    case_id: str,
    outcome: CaseOutcome,
    *,
    reason: str | None,
    scopes: Sequence[str] | None = None,
    existing_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
) -> tuple[CommandResult, CaseState]:
    """An admin of the site approves (for `scopes`, default all requested), denies or blocks."""
    require_admin(principal, same_org(principal, governance.site_org(site_id)), site_id)
    if outcome == "approve":
        return governance.approve_request(site_id, case_id, by, scopes=scopes, reason=reason)
    if not reason:
        raise ApiError(
            422,
            "invalid_request",
            "reason: say why; the requesters see it",
            details=[{"field": "reason", "message": "say why; the requesters see it"}],
        )
    if outcome == "deny":
        return governance.deny_request(site_id, case_id, by, reason=reason)
    return governance.block_request(
        site_id, case_id, by, reason=reason, existing_installs=existing_installs
    )
