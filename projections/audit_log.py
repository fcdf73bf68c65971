"""An index of the audit trail: each public event's position under the columns auditors filter on.

The index holds no event content: `GET /v1/audit/events` finds the positions of a page here, then
reads those events from the log and describes them with `governance.published.describe`, exactly
as the export does. So the API and the export give the same fields by construction, the index
stays small, and a replay does not have to describe a million events (measured: describing and
JSON-encoding every event was the dearest step of a replay). Pages are read by position (`after`),
never by offset, because positions have gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from governance.published import EVENT_TYPES, headline
from projections.base import Fold, Projection, Sink, micros
from projections.store import Tx

COLUMNS = ("position", "org_id", "site_id", "type", "actor", "occurred_at")
_INSERT = (
    "INSERT INTO audit_log (position, org_id, site_id, type, actor, occurred_at) VALUES"
    " (%(position)s, %(org_id)s, %(site_id)s, %(type)s, %(actor)s, %(occurred_at)s)"
)


def _row(position: int, event: object) -> tuple[Any, ...] | None:
    known = headline(event)
    if known is None:
        return None
    return (
        position,
        known.org_id,
        known.site_id,
        known.type,
        known.actor,
        micros(known.occurred_at),
    )


class AuditLogProjection(Projection):
    name = "audit_log"
    rebuild_weight = 1.0
    partitioned = True
    # Rows come in log order, so this is the key's order: its build, and the other three's (org
    # first too), sort faster.
    load_order: ClassVar[Mapping[str, Sequence[str]]] = {"audit_log": ("org_id",)}
    tables = (
        # Keyed by organization first: every query names one, so the key is the org index.
        """CREATE TABLE IF NOT EXISTS audit_log (
            org_id TEXT NOT NULL,
            position BIGINT NOT NULL,
            site_id TEXT NOT NULL,
            type TEXT NOT NULL,
            actor TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            PRIMARY KEY (org_id, position)
        )""",
        "CREATE INDEX IF NOT EXISTS audit_log_site ON audit_log (org_id, site_id, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_type ON audit_log (org_id, type, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (org_id, actor, position)",
    )

    def apply(self, tx: Tx, event: object, position: int) -> None:
        # Every public event, whatever its type: one handler for all of them.
        row = _row(position, event)
        if row is not None:
            tx.execute(_INSERT, dict(zip(COLUMNS, row, strict=True)))

    def fold(self, sink: Sink) -> Fold:
        return _AuditLogFold(sink)


class _AuditLogFold(Fold):
    def __init__(self, sink: Sink) -> None:
        self._rows = sink.rows("audit_log", COLUMNS)

    def apply(self, event: object, position: int) -> None:
        # `_row` without its Headline object in between (a frozen dataclass is slow to build):
        # the same fields, read the same way as `headline` reads them.
        known = EVENT_TYPES.get(type(event))
        if known is not None:
            fields = vars(event)
            org, site, actor = fields["org_id"], fields["site_id"], fields["actor"]
            self._rows.append((position, org, site, known[0], actor, micros(fields["timestamp"])))

    def handler_for(self, event_class: type) -> Callable[[Any, int], None] | None:
        return self.apply if event_class in EVENT_TYPES else None


@dataclass(frozen=True)
class AuditFilter:
    """Which events of one organization to list; None means any."""

    org_id: str
    site_id: str | None = None
    type: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_positions(tx: Tx, where: AuditFilter, after: int, limit: int) -> Sequence[int]:
    """The positions of the next `limit` matching events after `after`, in log order."""
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
        "SELECT position FROM audit_log WHERE "  # noqa: S608
        + " AND ".join(conditions)
        + " ORDER BY position LIMIT %(limit)s"
    )
    return [int(row["position"]) for row in tx.all(query, params)]


def org_holds(tx: Tx, org_id: str, position: int) -> bool:
    """Whether the index has an event of `org_id` at `position` (the primary key answers)."""
    row = tx.one(
        "SELECT 1 AS found FROM audit_log WHERE org_id = %(org)s AND position = %(position)s",
        {"org": org_id, "position": position},
    )
    return row is not None
