"""The compacted topic's value: a site's whole policy as of one event.

It is built from the Site aggregate at that event's version, never from a read model, which may
stand at another position: the snapshot and the event it follows always agree.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Repository

from governance.domain.site import AppList, AppListing, Site
from governance.published import PublishedEvent
from governance.relay.envelope import rfc3339

# The events after which a site's policy reads differently: the user-installs control and the
# approved and blocked app lists. Other events need no new snapshot.
POLICY_EVENTS: tuple[type, ...] = (
    Site.SiteRegistered,
    Site.UserInstallsBlocked,
    Site.UserInstallsAllowed,
    Site.AppApproved,
    Site.AppBlocked,
    Site.AppApprovalWithdrawn,
    Site.AppUnblocked,
)
SNAPSHOT_TYPE = "io.governance.site.policy.v1"


def changes_policy(event: object) -> bool:
    return isinstance(event, POLICY_EVENTS)


def policy_snapshot(
    repository: Repository[Any], event: Any, published: PublishedEvent
) -> dict[str, Any]:
    site: Site = repository.get(event.originator_id, version=event.originator_version)
    return {
        "type": SNAPSHOT_TYPE,
        "site_id": site.site_id,
        "org_id": site.org_id,
        "name": site.name,
        # The user-installs control as its last change left it (as GET .../policy shows it).
        "user_installs": str(site.user_installs),
        "policy_version": site.policy_version,
        "updated_by": site.updated_by,
        "reason": site.reason,
        # When this value's event happened: the last change to the control or to the lists.
        "changed_at": rfc3339(site.modified_on),
        "approved_apps": _listed(site, AppList.APPROVED),
        "blocked_apps": _listed(site, AppList.BLOCKED),
        "event_id": published.event_id,
        "position": published.position,
    }


def _listed(site: Site, status: AppList) -> list[dict[str, Any]]:
    return [
        _listing(app_id, listing)
        for app_id, listing in sorted(site.app_lists.items())
        if listing["status"] == status
    ]


def _listing(app_id: str, listing: AppListing) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "app_name": listing["app_name"],
        "scopes": list(listing["scopes"]),
        "reason": listing["reason"],
        "updated_by": listing["updated_by"],
        "updated_at": rfc3339(listing["updated_at"]),
        "case_id": listing["case_id"],
    }
