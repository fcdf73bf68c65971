"""The compacted topic's value: a site's whole policy as of one event.

It is built from the Site aggregate at that event's version, never from a read model, which may
stand at another position: the snapshot and the event it follows always agree.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

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


def folded(event_class: type) -> bool:
    """Whether `SiteFolds.follow` needs events of this class: a site's own. Another aggregate's
    event never changes a site (ids of different aggregates never collide)."""
    return issubclass(event_class, Site.Event)


class SiteFolds:
    """Sites kept current by folding the events the relay reads, so that a policy snapshot seldom
    reads the log again (reading a site back cost ~3 ms, most of a backlog's relaying time).

    A site is taken from the repository at the snapshot's own version whenever the fold is not
    exactly there (first sight, evicted, or a batch sent again after a failure), so the snapshot
    is always the site as of its event, as the repository would give it.
    """

    def __init__(self, repository: Repository[Any], capacity: int = 10_000) -> None:
        self._repository = repository
        self._capacity = capacity
        self._sites: OrderedDict[UUID, Site] = OrderedDict()

    def follow(self, event: Any) -> None:
        """Fold an event of the log (any aggregate's) into the site it belongs to, if held."""
        site = self._sites.get(event.originator_id)
        if site is None:
            registered = event.mutate(None) if isinstance(event, Site.SiteRegistered) else None
            if registered is not None:
                self._keep(event.originator_id, registered)
            return
        if site.version + 1 == event.originator_version:
            event.mutate(site)
        else:
            del self._sites[event.originator_id]  # out of step: read it again when needed

    def at(self, event: Any) -> Site:
        """The site as of `event` (which `follow` has seen)."""
        site = self._sites.get(event.originator_id)
        if site is None or site.version != event.originator_version:
            site = self._repository.get(event.originator_id, version=event.originator_version)
        self._keep(event.originator_id, site)
        return site

    def _keep(self, site_id: UUID, site: Site) -> None:
        self._sites[site_id] = site
        self._sites.move_to_end(site_id)
        if len(self._sites) > self._capacity:
            self._sites.popitem(last=False)


def policy_snapshot(site: Site, published: PublishedEvent) -> dict[str, Any]:
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
