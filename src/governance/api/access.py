"""Who may do what on a site. A site of another organization is answered as missing (404)."""

from governance.api.errors import forbidden, not_found
from governance.auth import Principal, Role
from governance.domain.grant import InstalledBy
from projections import policy as policy_view
from projections.store import Tx


def same_org(principal: Principal, org_id: str | None) -> str:
    """The site's org when it is the caller's; a missing or foreign site is the same 404."""
    if org_id is None or org_id != principal.org_id:
        raise not_found("site")
    return org_id


def require_admin(principal: Principal, org_id: str, site_id: str) -> None:
    if not principal.administers(org_id, site_id):
        raise forbidden("only an admin of this site or an org-admin may do this")


def require_admin_or_auditor(principal: Principal, org_id: str, site_id: str) -> None:
    if not (principal.administers(org_id, site_id) or principal.audits(org_id)):
        raise forbidden("only admins of this site, org-admins and auditors may read this")


def require_reader(tx: Tx, principal: Principal, site_id: str) -> None:
    """Admins of the site, org-admins and auditors may read its views (a foreign site: 404)."""
    policy = policy_view.get_policy(tx, site_id)
    org_id = same_org(principal, policy.org_id if policy else None)
    require_admin_or_auditor(principal, org_id, site_id)


def installer_role(principal: Principal, org_id: str, site_id: str) -> InstalledBy:
    """Admins install as admins; users of the site as users; anyone else may not install."""
    if principal.administers(org_id, site_id):
        return InstalledBy.ADMIN
    if principal.has(Role.USER) and site_id in principal.sites:
        return InstalledBy.USER
    raise forbidden("only users and admins of this site may install apps on it")
