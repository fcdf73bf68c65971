"""The compacted topic's value: a site's whole policy as of one event.

It is built from the Site aggregate at that event's version, never from a read model, which may
stand at another position: the snapshot and the event it follows always agree.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Repository

from governance.domain.site import Site
from governance.published import PublishedEvent
from governance.relay.envelope import rfc3339

# The events after which a site's policy may read differently. Others need no new snapshot.
POLICY_EVENTS: tuple[type, ...] = (
    Site.SiteRegistered,
    Site.UserInstallsBlocked,
    Site.UserInstallsAllowed,
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
        "user_installs": str(site.user_installs),
        "policy_version": site.policy_version,
        "updated_at": rfc3339(site.modified_on),
        "updated_by": site.updated_by,
        "reason": site.reason,
        "event_id": published.event_id,
        "position": published.position,
    }
