"""Streams the audit trail out of the event log as JSON Lines or CSV, in constant memory.

The export reads the log itself (not a read model), a page at a time, so it includes every event
stored up to the moment it reads, and describes each through `governance.published.describe`:
the same fields, the same values as `GET /v1/audit/events`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

from governance.audit.trail import FIELDS, AuditRecord, Selection, records

__all__ = ["FIELDS", "Format", "Selection", "public", "records", "timestamp", "write"]


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


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
