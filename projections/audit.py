"""The audit trail's queries: each public event's position, found by the columns auditors filter on.

The positions come from the `timeline` table (`projections/timeline.py`), whose organization
indexes serve these queries. No event content is read there: `GET /v1/audit/events` finds the
positions of a page here, then reads those events from the log and describes them with
`governance.published.describe`, exactly as the export does. So the API and the export give the
same fields by construction, and a replay does not have to describe a million events (measured:
describing and JSON-encoding every event was the dearest step of a replay). Pages are read by
position (`after`), never by offset, because positions have gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.base import micros
from projections.store import Tx


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
        "SELECT position FROM timeline WHERE "  # noqa: S608
        + " AND ".join(conditions)
        + " ORDER BY position LIMIT %(limit)s"
    )
    return [int(row["position"]) for row in tx.all(query, params)]


def org_holds(tx: Tx, org_id: str, position: int) -> bool:
    """Whether the timeline has an event of `org_id` at `position` (its key answers)."""
    row = tx.one(
        "SELECT 1 AS found FROM timeline WHERE position = %(position)s AND org_id = %(org)s",
        {"org": org_id, "position": position},
    )
    return row is not None
