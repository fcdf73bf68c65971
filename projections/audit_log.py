"""The audit trail: every public event with its envelope in indexed columns, its data as JSON.

Events are described only through `governance.published.describe`, so the audit API, the export
and the Kafka stream name the same types and fields. The columns auditors filter on (org, site,
type, actor, time) are indexed; pages are read by position (`after`), never by offset, because
positions have gaps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from governance.published import EVENT_TYPES, PublishedEvent, describe
from projections.base import Fold, Projection, Sink, from_micros, micros
from projections.store import Row, Tx

COLUMNS = (
    "position",
    "event_id",
    "type",
    "org_id",
    "site_id",
    "actor",
    "on_behalf_of",
    "request_id",
    "reason",
    "occurred_at",
    "data",
)
_INSERT = (
    "INSERT INTO audit_log (position, event_id, type, org_id, site_id, actor, on_behalf_of,"
    " request_id, reason, occurred_at, data) VALUES (%(position)s, %(event_id)s, %(type)s,"
    " %(org_id)s, %(site_id)s, %(actor)s, %(on_behalf_of)s, %(request_id)s, %(reason)s,"
    " %(occurred_at)s, %(data)s)"
)


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
        return cls(
            position=published.position,
            event_id=published.event_id,
            type=published.type,
            org_id=published.org_id,
            site_id=published.site_id,
            actor=published.actor,
            on_behalf_of=published.on_behalf_of,
            request_id=published.request_id,
            reason=published.reason,
            occurred_at=published.occurred_at,
            data=json.loads(data_json(published.data)),
        )


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot put {type(value).__name__} into an audit record")


# One encoder for every call: json.dumps with options would build a new one each time.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_plain)


def data_json(data: dict[str, Any]) -> str:
    """The event's data as canonical JSON (sorted keys), the same in the view and the export."""
    return _ENCODER.encode(data)


def _row(position: int, event: object) -> tuple[Any, ...]:
    described = describe(position, event)
    return (
        position,
        described.event_id,
        described.type,
        described.org_id,
        described.site_id,
        described.actor,
        described.on_behalf_of,
        described.request_id,
        described.reason,
        micros(described.occurred_at),
        data_json(described.data),
    )


class AuditLogProjection(Projection):
    name = "audit_log"
    rebuild_weight = 5.0  # describe() and JSON for every event
    tables = (
        """CREATE TABLE IF NOT EXISTS audit_log (
            position BIGINT PRIMARY KEY,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            org_id TEXT NOT NULL,
            site_id TEXT NOT NULL,
            actor TEXT NOT NULL,
            on_behalf_of TEXT,
            request_id TEXT,
            reason TEXT,
            occurred_at BIGINT NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS audit_log_org ON audit_log (org_id, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_site ON audit_log (org_id, site_id, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_type ON audit_log (org_id, type, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (org_id, actor, position)",
    )

    def apply(self, tx: Tx, event: object, position: int) -> None:
        # Every public event, whatever its type: one handler for all of them.
        if type(event) in EVENT_TYPES:
            tx.execute(_INSERT, dict(zip(COLUMNS, _row(position, event), strict=True)))

    def fold(self, sink: Sink) -> Fold:
        return _AuditLogFold(sink)


class _AuditLogFold(Fold):
    def __init__(self, sink: Sink) -> None:
        self._rows = sink.rows("audit_log", COLUMNS)

    def apply(self, event: object, position: int) -> None:
        if type(event) in EVENT_TYPES:
            self._rows.append(_row(position, event))


@dataclass(frozen=True)
class AuditFilter:
    """Which events of one organization to list; None means any."""

    org_id: str
    site_id: str | None = None
    type: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_events(tx: Tx, where: AuditFilter, after: int, limit: int) -> Sequence[AuditRecord]:
    """The next `limit` events after position `after` that match, in log order."""
    conditions = ["org_id = %(org)s", "position > %(after)s"]
    params: dict[str, Any] = {"org": where.org_id, "after": after, "limit": limit}
    optional = {
        "site_id = %(site)s": ("site", where.site_id),
        "type = %(type)s": ("type", where.type),
        "actor = %(actor)s": ("actor", where.actor),
        "occurred_at >= %(since)s": ("since", micros(where.since) if where.since else None),
        "occurred_at < %(until)s": ("until", micros(where.until) if where.until else None),
    }
    for condition, (key, value) in optional.items():
        if value is not None:
            conditions.append(condition)
            params[key] = value
    # Only constant fragments are joined here; every value is a bound parameter.
    query = (
        "SELECT position, event_id, type, org_id, site_id, actor, on_behalf_of, request_id,"  # noqa: S608
        " reason, occurred_at, data FROM audit_log WHERE "
        + " AND ".join(conditions)
        + " ORDER BY position LIMIT %(limit)s"
    )
    rows = tx.all(query, params)
    return [_record(row) for row in rows]


def _record(row: Row) -> AuditRecord:
    return AuditRecord(
        position=row["position"],
        event_id=row["event_id"],
        type=row["type"],
        org_id=row["org_id"],
        site_id=row["site_id"],
        actor=row["actor"],
        on_behalf_of=row["on_behalf_of"],
        request_id=row["request_id"],
        reason=row["reason"],
        occurred_at=from_micros(row["occurred_at"]),
        data=json.loads(row["data"]),
    )
