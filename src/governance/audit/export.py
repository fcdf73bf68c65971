"""Streams the audit trail out of the event log as JSON Lines or CSV, in constant memory.

The export reads the log itself (not a read model), a page at a time, so it includes every event
stored up to the moment it reads, and describes each through `governance.published.describe`:
the same fields, the same values as `GET /v1/audit/events`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

from eventsourcing.persistence import ApplicationRecorder, Mapper

from governance.published import EVENT_TYPES, describe
from projections.audit_log import COLUMNS, AuditRecord

FIELDS = COLUMNS  # position, event_id, type, org_id, site_id, actor, on_behalf_of, ...


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


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
        for notification in notifications:
            event = mapper.to_domain_event(notification)
            if type(event) in EVENT_TYPES:
                record = AuditRecord.of(describe(notification.id, event))
                if selection.admits(record):
                    yield record
        position = notifications[-1].id


def timestamp(moment: datetime) -> str:
    """UTC in ISO 8601 with "Z", as the API writes it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public(record: AuditRecord) -> dict[str, Any]:
    """The record as the API's JSON body gives it."""
    fields = {name: getattr(record, name) for name in FIELDS}
    fields["occurred_at"] = timestamp(record.occurred_at)
    return fields


def write(rows: Iterable[AuditRecord], out: TextIO, form: Format) -> int:
    """Write each record as it comes; return how many were written."""
    count = 0
    if form is Format.CSV:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for record in rows:
            fields = public(record)
            fields["data"] = json.dumps(record.data, sort_keys=True, separators=(",", ":"))
            writer.writerow(["" if fields[name] is None else fields[name] for name in FIELDS])
            count += 1
        return count
    for record in rows:
        out.write(json.dumps(public(record), separators=(",", ":")))
        out.write("\n")
        count += 1
    return count
