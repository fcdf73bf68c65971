"""The install rule, shared by the install command, the request command and the consent screen."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from governance.domain.grant import Grant, InstalledBy
from governance.domain.site import AppList, Site, UserInstalls

BLOCKED_ALERT = (
    "An admin has disabled end-user installs for this site, so you can't install this app"
    " yet. You can ask a site admin to approve it."
)
APP_BLOCKED_ALERT = "An admin has blocked this app on this site, so no one can install it."
SCOPES_ALERT = (
    "An admin approved this app for this site with fewer permissions than it asks for."
    " You can ask a site admin to approve the others."
)
PENDING_ALERT = (
    "You have asked a site admin for this app. You'll be able to install it once they approve."
)


class ConsentReason(StrEnum):
    APP_BLOCKED = "app_blocked"
    ALREADY_INSTALLED = "already_installed"
    ADMIN_INSTALL = "admin_install"
    ALLOWED_BY_POLICY = "allowed_by_policy"
    ALLOWED_BY_APPROVAL = "allowed_by_approval"
    REQUEST_PENDING = "request_pending"
    SCOPES_EXCEED_APPROVAL = "scopes_exceed_approval"
    USER_INSTALLS_BLOCKED = "user_installs_blocked"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: ConsentReason
    message: str | None
    can_request: bool = False


def _allow(reason: ConsentReason) -> Decision:
    return Decision(True, reason, None)


def decide(
    user_installs: UserInstalls,
    installed_by: InstalledBy,
    *,
    scopes: Collection[str],
    granted: bool,
    listed: AppList | None,
    approved_scopes: Collection[str],
    pending_scopes: Collection[str] | None,
) -> Decision:
    """May this install go ahead, and if not, may the account ask an admin for it?

    `granted`: the account's grant already covers `scopes`. `pending_scopes`: the account's open
    request for the app, if it has one. The first rule that applies decides:
    a blocked app is refused to everyone, admins included, and may not be requested; an app the
    account already has stays usable after a site block, as in the reference product; admins
    install anything else; users install anything while the policy allows it, and an approved
    app within its approved scopes while it blocks. Otherwise the account may request it, unless
    its open request already covers these scopes.
    """
    wanted = set(scopes)
    if listed is AppList.BLOCKED:
        return Decision(False, ConsentReason.APP_BLOCKED, APP_BLOCKED_ALERT)
    if granted:
        return _allow(ConsentReason.ALREADY_INSTALLED)
    if installed_by == InstalledBy.ADMIN:
        return _allow(ConsentReason.ADMIN_INSTALL)
    if user_installs == UserInstalls.ALLOWED:
        return _allow(ConsentReason.ALLOWED_BY_POLICY)
    approved = listed is AppList.APPROVED
    if approved and wanted <= set(approved_scopes):
        return _allow(ConsentReason.ALLOWED_BY_APPROVAL)
    if pending_scopes is not None and wanted <= set(pending_scopes):
        return Decision(False, ConsentReason.REQUEST_PENDING, PENDING_ALERT)
    if approved:
        return Decision(False, ConsentReason.SCOPES_EXCEED_APPROVAL, SCOPES_ALERT, can_request=True)
    return Decision(False, ConsentReason.USER_INSTALLS_BLOCKED, BLOCKED_ALERT, can_request=True)


def decide_install(
    site: Site,
    grant: Grant,
    installed_by: InstalledBy,
    app_id: str,
    scopes: Collection[str],
    pending_scopes: Collection[str] | None,
) -> Decision:
    """`decide`, with what the Site and the account's Grant aggregates know."""
    return decide(
        site.user_installs,
        installed_by,
        scopes=scopes,
        granted=grant.covers(scopes, site.removal_epoch(app_id)),
        listed=site.listed(app_id),
        approved_scopes=site.approved_scopes(app_id),
        pending_scopes=pending_scopes,
    )
