"""The audit trail's records: public events, described once, for the API and the export alike.

A record is `governance.published.describe` of a stored event, with the data as plain JSON
values. `records` streams the log a page at a time (the export); `records_at` reads the events at
given positions (a page of the API, found in the `timeline` read model's organization indexes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from governance.published import EVENT_TYPES, PublishedEvent, describe


@dataclass(frozen=True)
class AuditRecord:
    """One event as auditors see it (the API and the export give exactly these fields)."""

    position: int
    event_id: str
    type: str
    org_id: str
    site_id: str
    actor: str
    on_behalf_of: str | None
    request_id: str | None
    reason: str | None
    occurred_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, published: PublishedEvent) -> AuditRecord:
        # The published event's fields, but for its CloudEvents type, with the data as JSON.
        shared = {name: getattr(published, name) for name in FIELDS if name != "data"}
        return cls(**shared, data=json.loads(data_json(published.data)))


FIELDS = tuple(field.name for field in fields(AuditRecord))  # in the export's column order


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot put {type(value).__name__} into an audit record")


# One encoder for every call: json.dumps with options would build a new one each time.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_plain)


def data_json(data: dict[str, Any]) -> str:
    """The event's data as canonical JSON (sorted keys)."""
    return _ENCODER.encode(data)


@dataclass(frozen=True)
class Selection:
    """Which events to export; None means any."""

    org_id: str | None = None
    site_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, record: AuditRecord) -> bool:
        return (
            (self.org_id is None or record.org_id == self.org_id)
            and (self.site_id is None or record.site_id == self.site_id)
            and (self.since is None or record.occurred_at >= self.since)
            and (self.until is None or record.occurred_at < self.until)
        )


def records(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    selection: Selection,
    page: int = 1000,
) -> Iterator[AuditRecord]:
    """Every public event that `selection` admits, in log order, read `page` events at a time."""
    position = 0
    while notifications := recorder.select_notifications(
        start=position, limit=page, inclusive_of_start=False
    ):
        for record in _described(mapper, notifications):
            if selection.admits(record):
                yield record
        position = notifications[-1].id


@runtime_checkable
class ReadsPositions(Protocol):
    """A recorder that reads the events at given positions (governance.audit.seal's do)."""

    def select_notifications_at(self, positions: Sequence[int]) -> Sequence[Notification]: ...


def records_at(
    recorder: ApplicationRecorder, mapper: Mapper[Any], positions: Sequence[int]
) -> list[AuditRecord]:
    """The records of the events stored at `positions`, in log order."""
    if not positions:
        return []
    if not isinstance(recorder, ReadsPositions):
        raise TypeError(f"{type(recorder).__name__} cannot read events by position")
    return list(_described(mapper, recorder.select_notifications_at(positions)))


def _described(mapper: Mapper[Any], notifications: Sequence[Notification]) -> Iterator[AuditRecord]:
    for notification in notifications:
        event = mapper.to_domain_event(notification)
        if type(event) in EVENT_TYPES:
            yield AuditRecord.of(describe(notification.id, event))
