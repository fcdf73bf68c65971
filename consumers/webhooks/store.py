"""Webhook endpoints, their pending deliveries and dead letters: configuration, not events.

Endpoints hold secrets, so they live in plain tables and never in the event log (which is
published). The API writes endpoints; the webhooks consumer enqueues one delivery per matching
endpoint and event, in the same transaction as the event's processed mark; the delivery worker
sends them, retries with backoff and, after the last attempt, keeps them as dead letters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.base import from_micros
from projections.store import Row, Tx, ViewStore

TABLES: Sequence[str] = (
    """CREATE TABLE IF NOT EXISTS webhook_endpoints (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_types TEXT NOT NULL,
        secret TEXT NOT NULL,
        description TEXT,
        after_position BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_endpoints_org ON webhook_endpoints (org_id)",
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        delivery_id TEXT PRIMARY KEY,
        endpoint_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        position BIGINT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        updated_at BIGINT NOT NULL,
        UNIQUE (endpoint_id, event_id)
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due"
    " ON webhook_deliveries (status, next_attempt_at)",
)
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# Fixed: a delivery's id is the same on every attempt, so receivers can drop repeats by it.
_DELIVERY_NAMESPACE = uuid.UUID("0b6f7d0e-3f5c-4a8e-9d51-6c1e2f7a9b13")


@dataclass(frozen=True)
class Endpoint:
    id: str
    org_id: str
    url: str
    event_types: list[str]
    description: str | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class DeadLetter:
    delivery_id: str
    event_id: str
    event_type: str
    position: int
    attempts: int
    last_status: int | None
    last_error: str | None
    failed_at: datetime
    event: dict[str, Any]


@dataclass(frozen=True)
class Due:
    """A delivery the worker has claimed for one attempt."""

    delivery_id: str
    url: str
    secret: str
    body: bytes
    event_type: str
    attempts: int


def delivery_id(endpoint_id: str, event_id: str) -> str:
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{endpoint_id}/{event_id}"))


def add_endpoint(
    tx: Tx,
    *,
    org_id: str,
    url: str,
    event_types: Sequence[str],
    secret: str,
    description: str | None,
    created_by: str,
    after_position: int,
    now: int,
) -> Endpoint:
    endpoint_id = str(uuid.uuid4())
    tx.execute(
        "INSERT INTO webhook_endpoints (id, org_id, url, event_types, secret, description,"
        " after_position, created_at, created_by) VALUES (%(id)s, %(org)s, %(url)s, %(types)s,"
        " %(secret)s, %(description)s, %(after)s, %(now)s, %(by)s)",
        {
            "id": endpoint_id,
            "org": org_id,
            "url": url,
            "types": json.dumps(sorted(set(event_types))),
            "secret": secret,
            "description": description,
            "after": after_position,
            "now": now,
            "by": created_by,
        },
    )
    found = get_endpoint(tx, org_id, endpoint_id)
    assert found is not None
    return found


_ENDPOINT = "SELECT id, org_id, url, event_types, description, created_at, created_by"


def list_endpoints(tx: Tx, org_id: str) -> list[Endpoint]:
    rows = tx.all(
        _ENDPOINT + " FROM webhook_endpoints WHERE org_id = %(org)s ORDER BY created_at, id",
        {"org": org_id},
    )
    return [_endpoint(row) for row in rows]


def get_endpoint(tx: Tx, org_id: str, endpoint_id: str) -> Endpoint | None:
    row = tx.one(
        _ENDPOINT + " FROM webhook_endpoints WHERE org_id = %(org)s AND id = %(id)s",
        {"org": org_id, "id": endpoint_id},
    )
    return _endpoint(row) if row else None


def delete_endpoint(tx: Tx, org_id: str, endpoint_id: str) -> bool:
    deleted = tx.execute(
        "DELETE FROM webhook_endpoints WHERE org_id = %(org)s AND id = %(id)s",
        {"org": org_id, "id": endpoint_id},
    )
    if deleted:
        tx.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = %(id)s", {"id": endpoint_id})
    return bool(deleted)


def dead_letters(tx: Tx, endpoint_id: str, limit: int) -> list[DeadLetter]:
    rows = tx.all(
        "SELECT delivery_id, event_id, event_type, position, attempts, last_status, last_error,"
        " updated_at, body FROM webhook_deliveries"
        " WHERE endpoint_id = %(id)s AND status = %(dead)s ORDER BY position LIMIT %(n)s",
        {"id": endpoint_id, "dead": DEAD, "n": limit},
    )
    return [
        DeadLetter(
            delivery_id=row["delivery_id"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            position=int(row["position"]),
            attempts=int(row["attempts"]),
            last_status=row["last_status"],
            last_error=row["last_error"],
            failed_at=from_micros(row["updated_at"]),
            event=json.loads(row["body"]),
        )
        for row in rows
    ]


def enqueue(tx: Tx, event: dict[str, Any], body: bytes, now: int) -> int:
    """One pending delivery per endpoint of the event's org that subscribed to its type."""
    rows = tx.all(
        "SELECT id, event_types FROM webhook_endpoints"
        " WHERE org_id = %(org)s AND after_position < %(p)s",
        {"org": event["data"].get("org_id"), "p": event["position"]},
    )
    targets = [row["id"] for row in rows if event["type"] in json.loads(row["event_types"])]
    tx.executemany(
        "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type,"
        " position, body, status, attempts, next_attempt_at, updated_at) VALUES (%(d)s, %(ep)s,"
        " %(e)s, %(type)s, %(p)s, %(body)s, %(status)s, 0, %(now)s, %(now)s)"
        " ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        [
            {
                "d": delivery_id(target, event["id"]),
                "ep": target,
                "e": event["id"],
                "type": event["type"],
                "p": event["position"],
                "body": body.decode(),
                "status": PENDING,
                "now": now,
            }
            for target in targets
        ],
    )
    return len(targets)


_CLAIM = (
    "SELECT d.delivery_id, e.url, e.secret, d.body, d.event_type, d.attempts"
    " FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
    " WHERE d.status = %(pending)s AND d.next_attempt_at <= %(now)s"
    " ORDER BY d.position LIMIT %(n)s"
)
# PostgreSQL: two workers never claim the same delivery (SQLite serialises writers anyway).
_CLAIM_LOCKED = _CLAIM + " FOR UPDATE OF d SKIP LOCKED"


def claim_due(store: ViewStore, now: int, limit: int, lease: int) -> list[Due]:
    """Take due deliveries for one attempt; an attempt that never reports back is due again
    when the lease ends (the worker died), so no delivery is lost to a crash."""
    with store.transaction() as tx:
        rows = tx.all(
            _CLAIM_LOCKED if store.dialect == "postgres" else _CLAIM,
            {"pending": PENDING, "now": now, "n": limit},
        )
        tx.executemany(
            "UPDATE webhook_deliveries SET next_attempt_at = %(until)s WHERE delivery_id = %(d)s",
            [{"until": now + lease, "d": row["delivery_id"]} for row in rows],
        )
    return [
        Due(
            row["delivery_id"],
            row["url"],
            row["secret"],
            row["body"].encode(),
            row["event_type"],
            int(row["attempts"]),
        )
        for row in rows
    ]


def record_attempt(
    tx: Tx,
    due: Due,
    *,
    status: str,
    http_status: int | None,
    error: str | None,
    next_attempt_at: int,
    now: int,
) -> None:
    tx.execute(
        "UPDATE webhook_deliveries SET status = %(status)s, attempts = attempts + 1,"
        " next_attempt_at = %(next)s, last_status = %(code)s, last_error = %(error)s,"
        " updated_at = %(now)s WHERE delivery_id = %(d)s",
        {
            "status": status,
            "next": next_attempt_at,
            "code": http_status,
            "error": error,
            "now": now,
            "d": due.delivery_id,
        },
    )


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        id=row["id"],
        org_id=row["org_id"],
        url=row["url"],
        event_types=json.loads(row["event_types"]),
        description=row["description"],
        created_at=from_micros(row["created_at"]),
        created_by=row["created_by"],
    )
