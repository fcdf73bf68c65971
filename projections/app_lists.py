"""Each site's approved and blocked apps, and every change to them (which answers `as_of`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from governance.domain.site import Site
from projections.base import Fold, Projection, Sink, folds, from_micros, handles, micros
from projections.store import Row, Tx


@dataclass(frozen=True)
class ListedApp:
    site_id: str
    app_id: str
    app_name: str
    status: str  # "approved" or "blocked"
    scopes: list[str]
    reason: str | None
    updated_by: str
    updated_at: datetime
    case_id: str | None


_LIST_COLUMNS = (
    "site_id",
    "app_id",
    "app_name",
    "status",
    "scopes",
    "reason",
    "updated_by",
    "updated_at",
    "case_id",
    "position",
)
# The same values, keyed by the change's position first.
_HISTORY_COLUMNS = ("position", *_LIST_COLUMNS[:-1])


class AppListsProjection(Projection):
    name = "app_lists"
    rebuild_weight = 0.1
    partitioned = True  # every row is one site's, written from that site's events
    tables = (
        """CREATE TABLE IF NOT EXISTS site_app_lists (
            site_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            app_name TEXT NOT NULL,
            status TEXT NOT NULL,
            scopes TEXT NOT NULL,
            reason TEXT,
            updated_by TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            case_id TEXT,
            position BIGINT NOT NULL,
            PRIMARY KEY (site_id, app_id)
        )""",
        # One row per change, valid from its time until the app's next change; status "none"
        # marks an app taken off both lists.
        """CREATE TABLE IF NOT EXISTS site_app_list_history (
            position BIGINT PRIMARY KEY,
            site_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            app_name TEXT NOT NULL,
            status TEXT NOT NULL,
            scopes TEXT NOT NULL,
            reason TEXT,
            updated_by TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            case_id TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS site_app_list_history_app"
        " ON site_app_list_history (site_id, app_id, updated_at)",
    )

    @handles(Site.AppApproved)
    def _approved(self, tx: Tx, event: Site.AppApproved, position: int) -> None:
        self._list(tx, event, "approved", event.app_name, event.scopes, event.case_id, position)

    @handles(Site.AppBlocked)
    def _blocked(self, tx: Tx, event: Site.AppBlocked, position: int) -> None:
        self._list(tx, event, "blocked", event.app_name, [], event.case_id, position)

    @handles(Site.AppApprovalWithdrawn)
    def _withdrawn(self, tx: Tx, event: Site.AppApprovalWithdrawn, position: int) -> None:
        self._unlist(tx, event, position)

    @handles(Site.AppUnblocked)
    def _unblocked(self, tx: Tx, event: Site.AppUnblocked, position: int) -> None:
        self._unlist(tx, event, position)

    @staticmethod
    def _list(
        tx: Tx,
        event: Site.AppApproved | Site.AppBlocked,
        status: str,
        app_name: str,
        scopes: list[str],
        case_id: str | None,
        position: int,
    ) -> None:
        row = {
            "s": event.site_id,
            "a": event.app_id,
            "name": app_name,
            "status": status,
            "scopes": json.dumps(scopes),
            "reason": event.reason,
            "by": event.actor,
            "at": micros(event.timestamp),
            "case": case_id,
            "p": position,
        }
        tx.execute(
            "INSERT INTO site_app_lists (site_id, app_id, app_name, status, scopes, reason,"
            " updated_by, updated_at, case_id, position) VALUES (%(s)s, %(a)s, %(name)s,"
            " %(status)s, %(scopes)s, %(reason)s, %(by)s, %(at)s, %(case)s, %(p)s)"
            " ON CONFLICT (site_id, app_id) DO UPDATE SET app_name = excluded.app_name,"
            " status = excluded.status, scopes = excluded.scopes, reason = excluded.reason,"
            " updated_by = excluded.updated_by, updated_at = excluded.updated_at,"
            " case_id = excluded.case_id, position = excluded.position",
            row,
        )
        _record_change(tx, row)

    @staticmethod
    def _unlist(
        tx: Tx, event: Site.AppApprovalWithdrawn | Site.AppUnblocked, position: int
    ) -> None:
        key = {"s": event.site_id, "a": event.app_id}
        before = tx.one(
            "SELECT app_name FROM site_app_lists WHERE site_id = %(s)s AND app_id = %(a)s", key
        )
        tx.execute("DELETE FROM site_app_lists WHERE site_id = %(s)s AND app_id = %(a)s", key)
        _record_change(
            tx,
            key
            | {
                "name": before["app_name"] if before else event.app_id,
                "status": "none",
                "scopes": "[]",
                "reason": event.reason,
                "by": event.actor,
                "at": micros(event.timestamp),
                "case": None,
                "p": position,
            },
        )

    def fold(self, sink: Sink) -> Fold:
        return _AppListsFold(sink)


class _AppListsFold(Fold):
    """The same rows as the handlers above, built in memory for a replay."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._history = sink.rows("site_app_list_history", _HISTORY_COLUMNS)
        self._lists: dict[tuple[str, str], tuple[object, ...]] = {}  # a site_app_lists row

    @folds(Site.AppApproved)
    def _approved(self, event: Site.AppApproved, position: int) -> None:
        scopes = json.dumps(event.scopes)
        self._list(event, "approved", event.app_name, scopes, event.case_id, position)

    @folds(Site.AppBlocked)
    def _blocked(self, event: Site.AppBlocked, position: int) -> None:
        self._list(event, "blocked", event.app_name, "[]", event.case_id, position)

    @folds(Site.AppApprovalWithdrawn)
    def _withdrawn(self, event: Site.AppApprovalWithdrawn, position: int) -> None:
        self._unlist(event, position)

    @folds(Site.AppUnblocked)
    def _unblocked(self, event: Site.AppUnblocked, position: int) -> None:
        self._unlist(event, position)

    def _list(
        self,
        event: Site.AppApproved | Site.AppBlocked,
        status: str,
        app_name: str,
        scopes: str,
        case_id: str | None,
        position: int,
    ) -> None:
        site, app = event.site_id, event.app_id
        change = (app_name, status, scopes, event.reason, event.actor, micros(event.timestamp))
        self._lists[site, app] = (site, app, *change, case_id, position)
        self._history.append((position, site, app, *change, case_id))

    def _unlist(self, event: Site.AppApprovalWithdrawn | Site.AppUnblocked, position: int) -> None:
        before = self._lists.pop((event.site_id, event.app_id), None)
        name = before[2] if before is not None else event.app_id
        self._history.append(
            (
                position,
                event.site_id,
                event.app_id,
                name,
                "none",
                "[]",
                event.reason,
                event.actor,
                micros(event.timestamp),
                None,
            )
        )

    def finish(self) -> None:
        self._sink.rows("site_app_lists", _LIST_COLUMNS).extend(self._lists.values())


def _record_change(tx: Tx, row: Mapping[str, object]) -> None:
    tx.execute(
        "INSERT INTO site_app_list_history (position, site_id, app_id, app_name, status, scopes,"
        " reason, updated_by, updated_at, case_id) VALUES (%(p)s, %(s)s, %(a)s, %(name)s,"
        " %(status)s, %(scopes)s, %(reason)s, %(by)s, %(at)s, %(case)s)",
        row,
    )


def app_lists(tx: Tx, site_id: str) -> Sequence[ListedApp]:
    rows = tx.all(
        "SELECT site_id, app_id, app_name, status, scopes, reason, updated_by, case_id,"
        " updated_at"
        " FROM site_app_lists"
        " WHERE site_id = %(s)s ORDER BY status, app_name, app_id",
        {"s": site_id},
    )
    return [_listed(row) for row in rows]


def app_lists_as_of(tx: Tx, site_id: str, moment: datetime) -> Sequence[ListedApp]:
    """The lists as they stood at `moment`: each app's last change at or before it."""
    rows = tx.all(
        "SELECT site_id, app_id, app_name, status, scopes, reason, updated_by, case_id,"
        " updated_at"
        " FROM site_app_list_history h"
        " WHERE site_id = %(s)s AND status <> 'none' AND position = ("
        "   SELECT MAX(position) FROM site_app_list_history x"
        "   WHERE x.site_id = h.site_id AND x.app_id = h.app_id AND x.updated_at <= %(t)s)"
        " ORDER BY status, app_name, app_id",
        {"s": site_id, "t": micros(moment)},
    )
    return [_listed(row) for row in rows]


def listed_app(tx: Tx, site_id: str, app_id: str) -> ListedApp | None:
    row = tx.one(
        "SELECT site_id, app_id, app_name, status, scopes, reason, updated_by, case_id,"
        " updated_at"
        " FROM site_app_lists"
        " WHERE site_id = %(s)s AND app_id = %(a)s",
        {"s": site_id, "a": app_id},
    )
    return _listed(row) if row else None


def listed_app_as_of(tx: Tx, site_id: str, app_id: str, moment: datetime) -> ListedApp | None:
    row = tx.one(
        "SELECT site_id, app_id, app_name, status, scopes, reason, updated_by, case_id,"
        " updated_at"
        " FROM site_app_list_history"
        " WHERE site_id = %(s)s AND app_id = %(a)s AND updated_at <= %(t)s"
        " ORDER BY position DESC LIMIT 1",
        {"s": site_id, "a": app_id, "t": micros(moment)},
    )
    return _listed(row) if row and row["status"] != "none" else None


def _listed(row: Row) -> ListedApp:
    return ListedApp(
        site_id=row["site_id"],
        app_id=row["app_id"],
        app_name=row["app_name"],
        status=row["status"],
        scopes=json.loads(row["scopes"]),
        reason=row["reason"],
        updated_by=row["updated_by"],
        updated_at=from_micros(row["updated_at"]),
        case_id=row["case_id"],
    )
