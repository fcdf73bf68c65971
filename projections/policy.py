"""The current "user-installed apps" policy of every site, and each policy version's start."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from governance.domain.site import Site
from projections.base import Fold, Projection, Sink, folds, from_micros, handles, micros
from projections.store import Row, Tx

_POLICY_COLUMNS = (
    "site_id",
    "org_id",
    "name",
    "user_installs",
    "version",
    "updated_at",
    "updated_by",
    "reason",
    "position",
)
_VERSION_COLUMNS = (
    "site_id",
    "version",
    "org_id",
    "name",
    "user_installs",
    "valid_from",
    "updated_by",
    "reason",
    "position",
)


@dataclass(frozen=True)
class SitePolicy:
    site_id: str
    org_id: str
    name: str
    user_installs: str
    version: int
    updated_at: datetime
    updated_by: str
    reason: str | None


class SitePolicyProjection(Projection):
    name = "site_policy"
    rebuild_weight = 0.2
    partitioned = True
    tables = (
        """CREATE TABLE IF NOT EXISTS site_policy (
            site_id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            name TEXT NOT NULL,
            user_installs TEXT NOT NULL,
            version INTEGER NOT NULL,
            updated_at BIGINT NOT NULL,
            updated_by TEXT NOT NULL,
            reason TEXT,
            position BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS site_policy_org ON site_policy (org_id, site_id)",
        # One row per policy version, valid from its time until the next one: answers `as_of`.
        """CREATE TABLE IF NOT EXISTS site_policy_history (
            site_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            org_id TEXT NOT NULL,
            name TEXT NOT NULL,
            user_installs TEXT NOT NULL,
            valid_from BIGINT NOT NULL,
            updated_by TEXT NOT NULL,
            reason TEXT,
            position BIGINT NOT NULL,
            PRIMARY KEY (site_id, version)
        )""",
    )

    @handles(Site.SiteRegistered)
    def _registered(self, tx: Tx, event: Site.SiteRegistered, position: int) -> None:
        row = {
            "site_id": event.site_id,
            "org_id": event.org_id,
            "name": event.name,
            "user_installs": "allowed",
            "version": 1,
            "at": micros(event.timestamp),
            "actor": event.actor,
            "reason": None,
            "position": position,
        }
        tx.execute(
            "INSERT INTO site_policy (site_id, org_id, name, user_installs, version, updated_at,"
            " updated_by, reason, position) VALUES (%(site_id)s, %(org_id)s, %(name)s,"
            " %(user_installs)s, %(version)s, %(at)s, %(actor)s, %(reason)s, %(position)s)",
            row,
        )
        self._record_version(tx, row)

    @handles(Site.UserInstallsBlocked)
    def _blocked(self, tx: Tx, event: Site.UserInstallsBlocked, position: int) -> None:
        self._change(tx, event, "blocked", position)

    @handles(Site.UserInstallsAllowed)
    def _allowed(self, tx: Tx, event: Site.UserInstallsAllowed, position: int) -> None:
        self._change(tx, event, "allowed", position)

    def _change(
        self,
        tx: Tx,
        event: Site.UserInstallsBlocked | Site.UserInstallsAllowed,
        state: str,
        position: int,
    ) -> None:
        current = tx.one("SELECT name FROM site_policy WHERE site_id = %(s)s", {"s": event.site_id})
        row = {
            "site_id": event.site_id,
            "org_id": event.org_id,
            "name": current["name"] if current else "",
            "user_installs": state,
            "version": event.policy_version,
            "at": micros(event.timestamp),
            "actor": event.actor,
            "reason": event.reason,
            "position": position,
        }
        tx.execute(
            "UPDATE site_policy SET user_installs = %(user_installs)s, version = %(version)s,"
            " updated_at = %(at)s, updated_by = %(actor)s, reason = %(reason)s,"
            " position = %(position)s WHERE site_id = %(site_id)s",
            row,
        )
        self._record_version(tx, row)

    @staticmethod
    def _record_version(tx: Tx, row: dict[str, object]) -> None:
        tx.execute(
            "INSERT INTO site_policy_history (site_id, version, org_id, name, user_installs,"
            " valid_from, updated_by, reason, position) VALUES (%(site_id)s, %(version)s,"
            " %(org_id)s, %(name)s, %(user_installs)s, %(at)s, %(actor)s, %(reason)s,"
            " %(position)s)",
            row,
        )

    def fold(self, sink: Sink) -> Fold:
        return _PolicyFold(sink)


class _PolicyFold(Fold):
    """The same rows as the handlers above, built in memory for a replay."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._versions = sink.rows("site_policy_history", _VERSION_COLUMNS)
        self._sites: dict[str, list[object]] = {}  # site_id -> a site_policy row

    @folds(Site.SiteRegistered)
    def _registered(self, event: Site.SiteRegistered, position: int) -> None:
        at = micros(event.timestamp)
        self._sites[event.site_id] = [
            event.site_id,
            event.org_id,
            event.name,
            "allowed",
            1,
            at,
            event.actor,
            None,
            position,
        ]
        self._versions.append(
            (event.site_id, 1, event.org_id, event.name, "allowed", at, event.actor, None, position)
        )

    @folds(Site.UserInstallsBlocked)
    def _blocked(self, event: Site.UserInstallsBlocked, position: int) -> None:
        self._change(event, "blocked", position)

    @folds(Site.UserInstallsAllowed)
    def _allowed(self, event: Site.UserInstallsAllowed, position: int) -> None:
        self._change(event, "allowed", position)

    def _change(
        self,
        event: Site.UserInstallsBlocked | Site.UserInstallsAllowed,
        state: str,
        position: int,
    ) -> None:
        at = micros(event.timestamp)
        current = self._sites.get(event.site_id)
        if current is not None:
            current[3:] = [state, event.policy_version, at, event.actor, event.reason, position]
        name = current[2] if current is not None else ""
        self._versions.append(
            (
                event.site_id,
                event.policy_version,
                event.org_id,
                name,
                state,
                at,
                event.actor,
                event.reason,
                position,
            )
        )

    def finish(self) -> None:
        self._sink.rows("site_policy", _POLICY_COLUMNS).extend(
            tuple(row) for row in self._sites.values()
        )


def get_policy(tx: Tx, site_id: str) -> SitePolicy | None:
    row = tx.one(
        "SELECT site_id, org_id, name, user_installs, version, updated_by, reason, updated_at"
        " FROM site_policy WHERE site_id = %(s)s",
        {"s": site_id},
    )
    return _policy(row, "updated_at") if row else None


def get_policy_as_of(tx: Tx, site_id: str, moment: datetime) -> SitePolicy | None:
    """The policy in force at `moment`: the last version that started at or before it."""
    row = tx.one(
        "SELECT site_id, org_id, name, user_installs, version, updated_by, reason, valid_from"
        " FROM site_policy_history"
        " WHERE site_id = %(s)s AND valid_from <= %(t)s ORDER BY version DESC LIMIT 1",
        {"s": site_id, "t": micros(moment)},
    )
    return _policy(row, "valid_from") if row else None


def list_sites(tx: Tx, org_id: str) -> Sequence[SitePolicy]:
    rows = tx.all(
        "SELECT site_id, org_id, name, user_installs, version, updated_by, reason, updated_at"
        " FROM site_policy"
        " WHERE org_id = %(o)s ORDER BY site_id",
        {"o": org_id},
    )
    return [_policy(row, "updated_at") for row in rows]


def _policy(row: Row, time_column: str) -> SitePolicy:
    return SitePolicy(
        site_id=row["site_id"],
        org_id=row["org_id"],
        name=row["name"],
        user_installs=row["user_installs"],
        version=row["version"],
        updated_at=from_micros(row[time_column]),
        updated_by=row["updated_by"],
        reason=row["reason"],
    )
