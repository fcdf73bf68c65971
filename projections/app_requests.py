"""End users' request cases: the admins' queue, each requester's status, and their history.

`app_request_cases` keeps one row per case with its requester count, so the queue sorts by
demand without counting; `app_requesters` answers "my requests"; `app_requester_intervals`
keeps when each request stood, which answers `as_of` questions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeAlias

from governance.domain.request_case import AppRequestCase, CaseStatus, make_case_id
from projections.base import Projection, from_micros, handles, micros
from projections.store import Row, Tx

Outcome: TypeAlias = (
    AppRequestCase.AppRequestApproved
    | AppRequestCase.AppRequestDenied
    | AppRequestCase.AppRequestBlocked
    | AppRequestCase.AppRequestExpired
)


@dataclass(frozen=True)
class RequestCase:
    site_id: str
    case_id: str
    app_id: str
    app_name: str
    status: str
    requester_count: int
    scopes: list[str]
    approved_scopes: list[str]
    opened_at: datetime
    closed_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class Requester:
    account_id: str
    scopes: list[str]
    justification: str
    requested_at: datetime
    status: str


@dataclass(frozen=True)
class OwnRequest:
    site_id: str
    case_id: str
    app_id: str
    app_name: str
    status: str
    scopes: list[str]
    justification: str
    requested_at: datetime
    closed_at: datetime | None
    decided_by: str | None
    reason: str | None
    approved_scopes: list[str]


class AppRequestsProjection(Projection):
    name = "app_requests"
    rebuild_weight = 0.1
    partitioned = True  # every row is one site's, written from that site's events
    tables = (
        """CREATE TABLE IF NOT EXISTS app_request_cases (
            site_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            cycle INTEGER NOT NULL,
            case_id TEXT NOT NULL,
            org_id TEXT NOT NULL,
            app_name TEXT NOT NULL,
            status TEXT NOT NULL,
            requester_count INTEGER NOT NULL,
            scopes TEXT NOT NULL,
            approved_scopes TEXT NOT NULL,
            opened_at BIGINT NOT NULL,
            closed_at BIGINT,
            decided_by TEXT,
            reason TEXT,
            PRIMARY KEY (site_id, app_id, cycle)
        )""",
        "CREATE INDEX IF NOT EXISTS app_request_cases_queue"
        " ON app_request_cases (site_id, status, requester_count)",
        "CREATE INDEX IF NOT EXISTS app_request_cases_age ON app_request_cases (status, opened_at)",
        """CREATE TABLE IF NOT EXISTS app_requesters (
            site_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            cycle INTEGER NOT NULL,
            account_id TEXT NOT NULL,
            org_id TEXT NOT NULL,
            scopes TEXT NOT NULL,
            justification TEXT NOT NULL,
            requested_at BIGINT NOT NULL,
            status TEXT NOT NULL,
            PRIMARY KEY (site_id, app_id, cycle, account_id)
        )""",
        "CREATE INDEX IF NOT EXISTS app_requesters_account"
        " ON app_requesters (org_id, account_id, requested_at)",
        """CREATE TABLE IF NOT EXISTS app_requester_intervals (
            position BIGINT PRIMARY KEY,
            site_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            cycle INTEGER NOT NULL,
            account_id TEXT NOT NULL,
            scopes TEXT NOT NULL,
            valid_from BIGINT NOT NULL,
            valid_to BIGINT
        )""",
        "CREATE INDEX IF NOT EXISTS app_requester_intervals_site"
        " ON app_requester_intervals (site_id, valid_from)",
        "CREATE INDEX IF NOT EXISTS app_requester_intervals_open"
        " ON app_requester_intervals (site_id, app_id, cycle, account_id, valid_to)",
    )

    @handles(AppRequestCase.AppRequested)
    def _requested(self, tx: Tx, event: AppRequestCase.AppRequested, position: int) -> None:
        at = micros(event.timestamp)
        row = _key(event) | {
            "u": event.account_id,
            "o": event.org_id,
            "case": event.case_id,
            "name": event.app_name,
            "scopes": json.dumps(event.scopes),
            "why": event.justification,
            "at": at,
            "p": position,
        }
        if event.opens_case:
            tx.execute(
                "INSERT INTO app_request_cases (site_id, app_id, cycle, case_id, org_id, app_name,"
                " status, requester_count, scopes, approved_scopes, opened_at) VALUES (%(s)s,"
                " %(a)s, %(c)s, %(case)s, %(o)s, %(name)s, 'open', 0, '[]', '[]', %(at)s)",
                row,
            )
        # A requester asking again widens their request: same row, same requested_at.
        joined = tx.execute(
            "INSERT INTO app_requesters (site_id, app_id, cycle, account_id, org_id, scopes,"
            " justification, requested_at, status) VALUES (%(s)s, %(a)s, %(c)s, %(u)s, %(o)s,"
            " %(scopes)s, %(why)s, %(at)s, 'open') ON CONFLICT (site_id, app_id, cycle,"
            " account_id) DO NOTHING",
            row,
        )
        if not joined:
            tx.execute(
                "UPDATE app_requesters SET scopes = %(scopes)s, justification = %(why)s"
                " WHERE site_id = %(s)s AND app_id = %(a)s AND cycle = %(c)s"
                " AND account_id = %(u)s",
                row,
            )
        case = tx.one(
            "SELECT scopes FROM app_request_cases"
            " WHERE site_id = %(s)s AND app_id = %(a)s AND cycle = %(c)s",
            row,
        )
        assert case is not None
        merged = sorted(set(json.loads(case["scopes"])) | set(event.scopes))
        tx.execute(
            "UPDATE app_request_cases SET app_name = %(name)s, scopes = %(merged)s,"
            " requester_count = requester_count + %(joined)s"
            " WHERE site_id = %(s)s AND app_id = %(a)s AND cycle = %(c)s",
            row | {"merged": json.dumps(merged), "joined": 1 if joined else 0},
        )
        _close_intervals(tx, row, at, account=event.account_id)
        tx.execute(
            "INSERT INTO app_requester_intervals (position, site_id, app_id, cycle, account_id,"
            " scopes, valid_from) VALUES (%(p)s, %(s)s, %(a)s, %(c)s, %(u)s, %(scopes)s, %(at)s)",
            row,
        )

    @handles(AppRequestCase.AppRequestApproved)
    def _approved(self, tx: Tx, event: AppRequestCase.AppRequestApproved, position: int) -> None:
        _close(tx, event, CaseStatus.APPROVED, event.scopes)

    @handles(AppRequestCase.AppRequestDenied)
    def _denied(self, tx: Tx, event: AppRequestCase.AppRequestDenied, position: int) -> None:
        _close(tx, event, CaseStatus.DENIED)

    @handles(AppRequestCase.AppRequestBlocked)
    def _blocked(self, tx: Tx, event: AppRequestCase.AppRequestBlocked, position: int) -> None:
        _close(tx, event, CaseStatus.BLOCKED)

    @handles(AppRequestCase.AppRequestExpired)
    def _expired(self, tx: Tx, event: AppRequestCase.AppRequestExpired, position: int) -> None:
        _close(tx, event, CaseStatus.EXPIRED)

    @handles(AppRequestCase.AppRequestCancelled)
    def _cancelled(self, tx: Tx, event: AppRequestCase.AppRequestCancelled, position: int) -> None:
        at = micros(event.timestamp)
        key = _key(event) | {"u": event.account_id, "at": at}
        tx.execute(
            "UPDATE app_requesters SET status = 'cancelled' WHERE site_id = %(s)s"
            " AND app_id = %(a)s AND cycle = %(c)s AND account_id = %(u)s",
            key,
        )
        _close_intervals(tx, key, at, account=event.account_id)
        # The union shrinks only on a withdrawal: recount it from those still asking.
        remaining = tx.all(
            "SELECT scopes FROM app_requesters WHERE site_id = %(s)s AND app_id = %(a)s"
            " AND cycle = %(c)s AND status = 'open'",
            key,
        )
        scopes = sorted({scope for row in remaining for scope in json.loads(row["scopes"])})
        tx.execute(
            "UPDATE app_request_cases SET requester_count = requester_count - 1,"
            " scopes = %(scopes)s WHERE site_id = %(s)s AND app_id = %(a)s AND cycle = %(c)s",
            key | {"scopes": json.dumps(scopes)},
        )
        if event.closes_case:
            tx.execute(
                "UPDATE app_request_cases SET status = 'cancelled', closed_at = %(at)s,"
                " decided_by = %(by)s, reason = %(reason)s"
                " WHERE site_id = %(s)s AND app_id = %(a)s AND cycle = %(c)s",
                key | {"by": event.actor, "reason": event.reason},
            )


class _OfCase(Protocol):
    """What every case event says about the case it belongs to."""

    @property
    def site_id(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def cycle(self) -> int: ...


def _key(event: _OfCase) -> dict[str, object]:
    return {"s": event.site_id, "a": event.app_id, "c": event.cycle}


def _close(tx: Tx, event: Outcome, status: CaseStatus, approved: list[str] | None = None) -> None:
    at = micros(event.timestamp)
    row = _key(event) | {
        "status": str(status),
        "at": at,
        "by": event.actor,
        "reason": event.reason,
        "approved": json.dumps(approved or []),
    }
    tx.execute(
        "UPDATE app_request_cases SET status = %(status)s, closed_at = %(at)s,"
        " decided_by = %(by)s, reason = %(reason)s, approved_scopes = %(approved)s"
        " WHERE site_id = %(s)s AND app_id = %(a)s AND cycle = %(c)s",
        row,
    )
    tx.execute(
        "UPDATE app_requesters SET status = %(status)s WHERE site_id = %(s)s"
        " AND app_id = %(a)s AND cycle = %(c)s AND status = 'open'",
        row,
    )
    _close_intervals(tx, row, at, account=None)


def _close_intervals(tx: Tx, key: dict[str, object], at: int, *, account: str | None) -> None:
    params = key | {"now": at, "u": account}
    if account is None:
        tx.execute(
            "UPDATE app_requester_intervals SET valid_to = %(now)s WHERE site_id = %(s)s"
            " AND app_id = %(a)s AND cycle = %(c)s AND valid_to IS NULL",
            params,
        )
    else:
        tx.execute(
            "UPDATE app_requester_intervals SET valid_to = %(now)s WHERE site_id = %(s)s"
            " AND app_id = %(a)s AND cycle = %(c)s AND account_id = %(u)s AND valid_to IS NULL",
            params,
        )


def cases(tx: Tx, site_id: str, status: str | None, limit: int) -> Sequence[RequestCase]:
    """A site's cases, most requested first, then oldest first (every status when None)."""
    rows = tx.all(
        "SELECT site_id, case_id, app_id, app_name, status, requester_count, scopes,"
        " approved_scopes, opened_at, closed_at, decided_by, reason FROM app_request_cases"
        " WHERE site_id = %(s)s AND (CAST(%(status)s AS TEXT) IS NULL OR status = %(status)s)"
        " ORDER BY requester_count DESC, opened_at, app_id LIMIT %(limit)s",
        {"s": site_id, "status": status, "limit": limit},
    )
    return [_case(row) for row in rows]


def cases_as_of(
    tx: Tx, site_id: str, status: str | None, limit: int, moment: datetime
) -> Sequence[RequestCase]:
    """The cases as they stood at `moment`: their status then, and who was asking then."""
    t = micros(moment)
    rows = tx.all(
        "SELECT site_id, case_id, app_id, app_name, status, requester_count, scopes,"
        " approved_scopes, opened_at, closed_at, decided_by, reason FROM app_request_cases"
        " WHERE site_id = %(s)s AND opened_at <= %(t)s",
        {"s": site_id, "t": t},
    )
    standing = tx.all(
        "SELECT app_id, cycle, scopes FROM app_requester_intervals WHERE site_id = %(s)s"
        " AND valid_from <= %(t)s AND (valid_to IS NULL OR valid_to > %(t)s)",
        {"s": site_id, "t": t},
    )
    asking: dict[str, list[list[str]]] = {}
    for row in standing:
        key = make_case_id(row["app_id"], row["cycle"])
        asking.setdefault(key, []).append(json.loads(row["scopes"]))
    then = [_case_then(row, t, asking.get(row["case_id"], [])) for row in rows]
    chosen = [case for case in then if status is None or case.status == status]
    chosen.sort(key=lambda case: (-case.requester_count, case.opened_at, case.app_id))
    return chosen[:limit]


def _case_then(row: Row, t: int, asking: list[list[str]]) -> RequestCase:
    case = _case(row)
    if row["closed_at"] is not None and row["closed_at"] <= t:
        return case  # closed by then: as it is now
    return RequestCase(
        site_id=case.site_id,
        case_id=case.case_id,
        app_id=case.app_id,
        app_name=case.app_name,
        status=str(CaseStatus.OPEN),
        requester_count=len(asking),
        scopes=sorted({scope for scopes in asking for scope in scopes}),
        approved_scopes=[],
        opened_at=case.opened_at,
        closed_at=None,
        decided_by=None,
        reason=None,
    )


def case(tx: Tx, site_id: str, case_id: str) -> RequestCase | None:
    row = tx.one(
        "SELECT site_id, case_id, app_id, app_name, status, requester_count, scopes,"
        " approved_scopes, opened_at, closed_at, decided_by, reason FROM app_request_cases"
        " WHERE site_id = %(s)s AND case_id = %(case)s",
        {"s": site_id, "case": case_id},
    )
    return _case(row) if row else None


def requesters(tx: Tx, site_id: str, case_id: str, limit: int) -> Sequence[Requester]:
    rows = tx.all(
        "SELECT r.account_id, r.scopes, r.justification, r.requested_at, r.status"
        " FROM app_requesters r JOIN app_request_cases c"
        " ON c.site_id = r.site_id AND c.app_id = r.app_id AND c.cycle = r.cycle"
        " WHERE c.site_id = %(s)s AND c.case_id = %(case)s"
        " ORDER BY r.requested_at, r.account_id LIMIT %(limit)s",
        {"s": site_id, "case": case_id, "limit": limit},
    )
    return [
        Requester(
            account_id=row["account_id"],
            scopes=json.loads(row["scopes"]),
            justification=row["justification"],
            requested_at=from_micros(row["requested_at"]),
            status=row["status"],
        )
        for row in rows
    ]


def own_requests(
    tx: Tx, org_id: str, account_id: str, status: str | None, limit: int
) -> Sequence[OwnRequest]:
    """An account's requests, newest first, with the outcome of each one's case."""
    rows = tx.all(
        "SELECT r.site_id, c.case_id, r.app_id, c.app_name, r.status, c.status AS outcome,"
        " r.scopes, r.justification, r.requested_at, c.closed_at, c.decided_by, c.reason,"
        " c.approved_scopes FROM app_requesters r JOIN app_request_cases c"
        " ON c.site_id = r.site_id AND c.app_id = r.app_id AND c.cycle = r.cycle"
        " WHERE r.org_id = %(o)s AND r.account_id = %(u)s"
        " AND (CAST(%(status)s AS TEXT) IS NULL OR r.status = %(status)s)"
        " ORDER BY r.requested_at DESC, c.case_id LIMIT %(limit)s",
        {"o": org_id, "u": account_id, "status": status, "limit": limit},
    )
    return [_own(row) for row in rows]


def _own(row: Row) -> OwnRequest:
    # The case's outcome is this request's only when it ended with the case: a request its
    # author withdrew keeps no decision, whatever became of the others'.
    decided = row["status"] == row["outcome"] and row["closed_at"] is not None
    return OwnRequest(
        site_id=row["site_id"],
        case_id=row["case_id"],
        app_id=row["app_id"],
        app_name=row["app_name"],
        status=row["status"],
        scopes=json.loads(row["scopes"]),
        justification=row["justification"],
        requested_at=from_micros(row["requested_at"]),
        closed_at=from_micros(row["closed_at"]) if decided else None,
        decided_by=row["decided_by"] if decided else None,
        reason=row["reason"] if decided else None,
        approved_scopes=json.loads(row["approved_scopes"]) if decided else [],
    )


def pending_scopes(tx: Tx, site_id: str, app_id: str, account_id: str) -> list[str] | None:
    """The account's open request for the app on the site, if it has one."""
    row = tx.one(
        "SELECT scopes FROM app_requesters WHERE site_id = %(s)s AND app_id = %(a)s"
        " AND account_id = %(u)s AND status = 'open'",
        {"s": site_id, "a": app_id, "u": account_id},
    )
    return json.loads(row["scopes"]) if row else None


def open_cases_opened_before(tx: Tx, moment: datetime) -> Sequence[tuple[str, str]]:
    """(site_id, case_id) of every case still open since before `moment`, oldest first."""
    rows = tx.all(
        "SELECT site_id, case_id FROM app_request_cases WHERE status = 'open'"
        " AND opened_at <= %(t)s ORDER BY opened_at",
        {"t": micros(moment)},
    )
    return [(row["site_id"], row["case_id"]) for row in rows]


def _case(row: Row) -> RequestCase:
    return RequestCase(
        site_id=row["site_id"],
        case_id=row["case_id"],
        app_id=row["app_id"],
        app_name=row["app_name"],
        status=row["status"],
        requester_count=row["requester_count"],
        scopes=json.loads(row["scopes"]),
        approved_scopes=json.loads(row["approved_scopes"]),
        opened_at=from_micros(row["opened_at"]),
        closed_at=from_micros(row["closed_at"]) if row["closed_at"] is not None else None,
        decided_by=row["decided_by"],
        reason=row["reason"],
    )
