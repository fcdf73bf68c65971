"""The public face of every domain event: a stable type name, its envelope fields and its data.

The relay (Kafka), the audit API and the exports all describe events through `describe`, so a
consumer sees the same names and fields everywhere. Domain classes stay private to this service:
renaming one changes nothing here but the mapping below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from governance.domain.grant import Grant
from governance.domain.request_case import AppRequestCase
from governance.domain.site import Site

# Public name -> CloudEvents type suffix. A breaking change to an event's data is a new version.
EVENT_TYPES: dict[type, tuple[str, str]] = {
    Site.SiteRegistered: ("SiteRegistered", "site.registered.v1"),
    Site.UserInstallsBlocked: ("UserInstallsBlocked", "site.user_installs.blocked.v1"),
    Site.UserInstallsAllowed: ("UserInstallsAllowed", "site.user_installs.allowed.v1"),
    Site.AppRemoved: ("AppRemoved", "site.app.removed.v1"),
    Grant.AppInstalled: ("AppInstalled", "site.app.installed.v1"),
    Grant.InstallBlocked: ("InstallBlocked", "site.app.install_blocked.v1"),
    Grant.AppUninstalled: ("AppUninstalled", "site.app.uninstalled.v1"),
    Site.AppApproved: ("AppApproved", "site.app.approved.v1"),
    Site.AppBlocked: ("AppBlocked", "site.app.blocked.v1"),
    Site.AppApprovalWithdrawn: ("AppApprovalWithdrawn", "site.app.approval_withdrawn.v1"),
    Site.AppUnblocked: ("AppUnblocked", "site.app.unblocked.v1"),
    AppRequestCase.AppRequested: ("AppRequested", "site.app_request.created.v1"),
    AppRequestCase.AppRequestApproved: ("AppRequestApproved", "site.app_request.approved.v1"),
    AppRequestCase.AppRequestDenied: ("AppRequestDenied", "site.app_request.denied.v1"),
    AppRequestCase.AppRequestBlocked: ("AppRequestBlocked", "site.app_request.blocked.v1"),
    AppRequestCase.AppRequestCancelled: ("AppRequestCancelled", "site.app_request.cancelled.v1"),
    AppRequestCase.AppRequestExpired: ("AppRequestExpired", "site.app_request.expired.v1"),
}
CLOUDEVENT_TYPE_PREFIX = "io.governance."
# Event class -> its full CloudEvents type, looked up once per published event.
CLOUDEVENT_TYPES = {
    cls: CLOUDEVENT_TYPE_PREFIX + suffix for cls, (_, suffix) in EVENT_TYPES.items()
}
ENVELOPE = frozenset(("originator_id", "originator_version", "timestamp", "originator_topic"))
_EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:governance:event")
_NAMESPACE_SHA1 = sha1(_EVENT_ID_NAMESPACE.bytes, usedforsecurity=False)
_VARIANT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}


@dataclass(frozen=True)
class PublishedEvent:
    position: int
    event_id: str
    type: str
    cloudevent_type: str
    org_id: str
    site_id: str
    actor: str
    on_behalf_of: str | None
    request_id: str | None
    reason: str | None
    occurred_at: datetime
    data: dict[str, Any]


def event_id(originator_id: UUID, originator_version: int) -> str:
    """Stable across redeliveries and replays: derived from the event's place in its stream.

    Exactly `str(uuid5(_EVENT_ID_NAMESPACE, f"{originator_id}/{originator_version}"))`, computed
    without the UUID objects: the relay and a replay describe every event, so this is on their
    hot paths. The digest of the namespace is taken once and copied.
    """
    digest = _NAMESPACE_SHA1.copy()
    digest.update(f"{originator_id}/{originator_version}".encode())
    h = digest.hexdigest()
    # Version 5 in the 13th hex digit, the RFC 4122 variant in the two top bits of the 17th.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True)
class Headline:
    """What an index of events needs: the public type, whose it is, who did it, when."""

    type: str
    org_id: str
    site_id: str
    actor: str
    occurred_at: datetime


def headline(event: Any) -> Headline | None:
    """The envelope fields `describe` gives, without the data; None for an unpublished type."""
    known = EVENT_TYPES.get(type(event))
    if known is None:
        return None
    fields = vars(event)
    return Headline(known[0], fields["org_id"], fields["site_id"], fields["actor"], event.timestamp)


def describe(position: int, event: Any) -> PublishedEvent:
    name, suffix = EVENT_TYPES[type(event)]
    fields = vars(event)
    data = {key: value for key, value in fields.items() if key not in ENVELOPE}
    return PublishedEvent(
        position=position,
        event_id=event_id(event.originator_id, event.originator_version),
        type=name,
        cloudevent_type=CLOUDEVENT_TYPE_PREFIX + suffix,
        org_id=fields["org_id"],
        site_id=fields["site_id"],
        actor=fields["actor"],
        on_behalf_of=fields.get("on_behalf_of"),
        request_id=fields.get("request_id"),
        reason=fields.get("reason"),
        occurred_at=event.timestamp,
        data=data,
    )
