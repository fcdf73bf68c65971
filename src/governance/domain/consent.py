"""The install rule, shared by the install command and the consent screen's question."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from governance.domain.grant import InstalledBy
from governance.domain.site import UserInstalls

BLOCKED_ALERT = (
    "An admin has disabled end-user installs for this site, so you can't install this app."
    " Contact a site admin if you need it."
)


class ConsentReason(StrEnum):
    ALREADY_INSTALLED = "already_installed"
    ADMIN_INSTALL = "admin_install"
    ALLOWED_BY_POLICY = "allowed_by_policy"
    USER_INSTALLS_BLOCKED = "user_installs_blocked"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: ConsentReason
    message: str | None


def decide(user_installs: UserInstalls, installed_by: InstalledBy, *, granted: bool) -> Decision:
    """May this install go ahead? Admins may always install; users only while installs are allowed.

    An app the account already has stays usable after a block, as in the reference product.
    """
    if granted:
        return Decision(True, ConsentReason.ALREADY_INSTALLED, None)
    if installed_by == InstalledBy.ADMIN:
        return Decision(True, ConsentReason.ADMIN_INSTALL, None)
    if user_installs == UserInstalls.BLOCKED:
        return Decision(False, ConsentReason.USER_INSTALLS_BLOCKED, BLOCKED_ALERT)
    return Decision(True, ConsentReason.ALLOWED_BY_POLICY, None)
