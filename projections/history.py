"""Each site's timeline, in sentences an auditor can read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from governance.domain.grant import Grant
from governance.domain.request_case import AppRequestCase
from governance.domain.site import Site
from projections.base import Projection, from_micros, handles, micros
from projections.store import Tx


@dataclass(frozen=True)
class HistoryEntry:
    position: int
    occurred_at: datetime
    type: str
    actor: str
    summary: str
    reason: str | None
    app_id: str | None
    account_id: str | None
    policy_version: int | None
    request_id: str | None
    on_behalf_of: str | None


class SiteHistoryProjection(Projection):
    name = "site_history"
    tables = (
        """CREATE TABLE IF NOT EXISTS site_history (
            position BIGINT PRIMARY KEY,
            site_id TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            type TEXT NOT NULL,
            actor TEXT NOT NULL,
            summary TEXT NOT NULL,
            reason TEXT,
            app_id TEXT,
            account_id TEXT,
            policy_version INTEGER,
            request_id TEXT,
            on_behalf_of TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS site_history_site ON site_history (site_id, position)",
        # App names as last seen on the site, so removals can name the app they removed.
        """CREATE TABLE IF NOT EXISTS site_history_apps (
            site_id TEXT NOT NULL,
            app_id TEXT NOT NULL,
            app_name TEXT NOT NULL,
            PRIMARY KEY (site_id, app_id)
        )""",
    )

    @handles(Site.SiteRegistered)
    def _registered(self, tx: Tx, event: Site.SiteRegistered, position: int) -> None:
        summary = f"{event.actor} registered the site {event.name!r}"
        _write(tx, position, event, "SiteRegistered", summary, policy_version=1)

    @handles(Site.UserInstallsBlocked)
    def _blocked(self, tx: Tx, event: Site.UserInstallsBlocked, position: int) -> None:
        summary = f"{event.actor} blocked user installs{_because(event.reason)}"
        _write(
            tx,
            position,
            event,
            "UserInstallsBlocked",
            summary,
            reason=event.reason,
            policy_version=event.policy_version,
        )

    @handles(Site.UserInstallsAllowed)
    def _allowed(self, tx: Tx, event: Site.UserInstallsAllowed, position: int) -> None:
        summary = f"{event.actor} allowed user installs{_because(event.reason)}"
        _write(
            tx,
            position,
            event,
            "UserInstallsAllowed",
            summary,
            reason=event.reason,
            policy_version=event.policy_version,
        )

    @handles(Grant.AppInstalled)
    def _installed(self, tx: Tx, event: Grant.AppInstalled, position: int) -> None:
        _remember_name(tx, event.site_id, event.app_id, event.app_name)
        role = "an admin" if event.installed_by == "admin" else "a user"
        scopes = ", ".join(event.scopes) or "no scopes"
        summary = (
            f"{event.account_id} installed {event.app_name} as {role} ({scopes})"
            f" under policy v{event.policy_version}"
        )
        _write(
            tx,
            position,
            event,
            "AppInstalled",
            summary,
            app_id=event.app_id,
            account_id=event.account_id,
            policy_version=event.policy_version,
        )

    @handles(Grant.InstallBlocked)
    def _refused(self, tx: Tx, event: Grant.InstallBlocked, position: int) -> None:
        why = _REFUSALS.get(event.refusal, event.refusal).format(version=event.policy_version)
        summary = f"{event.account_id}'s install of {event.app_name} was refused: {why}"
        _write(
            tx,
            position,
            event,
            "InstallBlocked",
            summary,
            app_id=event.app_id,
            account_id=event.account_id,
            policy_version=event.policy_version,
        )

    @handles(Grant.AppUninstalled)
    def _uninstalled(self, tx: Tx, event: Grant.AppUninstalled, position: int) -> None:
        name = _app_name(tx, event.site_id, event.app_id)
        summary = f"{event.account_id} revoked their grant of {name}"
        _write(
            tx,
            position,
            event,
            "AppUninstalled",
            summary,
            app_id=event.app_id,
            account_id=event.account_id,
        )

    @handles(Site.AppRemoved)
    def _removed(self, tx: Tx, event: Site.AppRemoved, position: int) -> None:
        name = _app_name(tx, event.site_id, event.app_id)
        summary = f"{event.actor} removed {name} for everyone on the site{_because(event.reason)}"
        _write(tx, position, event, "AppRemoved", summary, reason=event.reason, app_id=event.app_id)

    @handles(Site.AppApproved)
    def _approved(self, tx: Tx, event: Site.AppApproved, position: int) -> None:
        _remember_name(tx, event.site_id, event.app_id, event.app_name)
        summary = (
            f"{event.actor} approved {event.app_name} for users ({_scopes(event.scopes)})"
            f"{_answering(event.case_id)}{_because(event.reason)}"
        )
        _write(
            tx, position, event, "AppApproved", summary, reason=event.reason, app_id=event.app_id
        )

    @handles(Site.AppBlocked)
    def _app_blocked(self, tx: Tx, event: Site.AppBlocked, position: int) -> None:
        _remember_name(tx, event.site_id, event.app_id, event.app_name)
        existing = "removing" if event.existing_installs == "remove" else "keeping"
        summary = (
            f"{event.actor} blocked {event.app_name} for everyone ({existing} existing installs)"
            f"{_answering(event.case_id)}{_because(event.reason)}"
        )
        _write(tx, position, event, "AppBlocked", summary, reason=event.reason, app_id=event.app_id)

    @handles(Site.AppApprovalWithdrawn)
    def _withdrawn(self, tx: Tx, event: Site.AppApprovalWithdrawn, position: int) -> None:
        name = _app_name(tx, event.site_id, event.app_id)
        summary = f"{event.actor} withdrew the approval of {name}{_because(event.reason)}"
        _write(
            tx,
            position,
            event,
            "AppApprovalWithdrawn",
            summary,
            reason=event.reason,
            app_id=event.app_id,
        )

    @handles(Site.AppUnblocked)
    def _unblocked(self, tx: Tx, event: Site.AppUnblocked, position: int) -> None:
        name = _app_name(tx, event.site_id, event.app_id)
        summary = f"{event.actor} unblocked {name}{_because(event.reason)}"
        _write(
            tx, position, event, "AppUnblocked", summary, reason=event.reason, app_id=event.app_id
        )

    @handles(AppRequestCase.AppRequested)
    def _requested(self, tx: Tx, event: AppRequestCase.AppRequested, position: int) -> None:
        _remember_name(tx, event.site_id, event.app_id, event.app_name)
        case = "opening" if event.opens_case else "joining"
        summary = (
            f"{event.account_id} asked for {event.app_name} ({_scopes(event.scopes)}),"
            f" {case} request case {event.case_id}"
        )
        # The requester's justification is the entry's "why".
        _write(
            tx,
            position,
            event,
            "AppRequested",
            summary,
            reason=event.justification,
            app_id=event.app_id,
            account_id=event.account_id,
        )

    @handles(AppRequestCase.AppRequestApproved)
    def _case_approved(
        self, tx: Tx, event: AppRequestCase.AppRequestApproved, position: int
    ) -> None:
        summary = (
            f"{event.actor} approved request case {event.case_id} for {event.app_name}"
            f" ({_scopes(event.scopes)}) from {_people(event.requesters)}{_because(event.reason)}"
        )
        _write_outcome(tx, position, event, "AppRequestApproved", summary)

    @handles(AppRequestCase.AppRequestDenied)
    def _case_denied(self, tx: Tx, event: AppRequestCase.AppRequestDenied, position: int) -> None:
        summary = (
            f"{event.actor} denied request case {event.case_id} for {event.app_name}"
            f" from {_people(event.requesters)}{_because(event.reason)}"
        )
        _write_outcome(tx, position, event, "AppRequestDenied", summary)

    @handles(AppRequestCase.AppRequestBlocked)
    def _case_blocked(self, tx: Tx, event: AppRequestCase.AppRequestBlocked, position: int) -> None:
        summary = (
            f"{event.actor} refused request case {event.case_id} for {event.app_name}"
            f" from {_people(event.requesters)} and blocked the app{_because(event.reason)}"
        )
        _write_outcome(tx, position, event, "AppRequestBlocked", summary)

    @handles(AppRequestCase.AppRequestExpired)
    def _case_expired(self, tx: Tx, event: AppRequestCase.AppRequestExpired, position: int) -> None:
        summary = (
            f"request case {event.case_id} for {event.app_name} from"
            f" {_people(event.requesters)} expired{_because(event.reason)}"
        )
        _write_outcome(tx, position, event, "AppRequestExpired", summary)

    @handles(AppRequestCase.AppRequestCancelled)
    def _case_cancelled(
        self, tx: Tx, event: AppRequestCase.AppRequestCancelled, position: int
    ) -> None:
        name = _app_name(tx, event.site_id, event.app_id)
        closing = ", which closed the case" if event.closes_case else ""
        summary = (
            f"{event.account_id} withdrew their request for {name}"
            f" (request case {event.case_id}){closing}{_because(event.reason)}"
        )
        _write(
            tx,
            position,
            event,
            "AppRequestCancelled",
            summary,
            reason=event.reason,
            app_id=event.app_id,
            account_id=event.account_id,
        )


_REFUSALS = {
    "user_installs_blocked": "user installs are blocked under policy v{version}",
    "app_blocked": "the app is blocked on this site",
    "scopes_exceed_approval": "it asks for more scopes than an admin approved",
    "request_pending": "their request for it awaits an admin's decision",
}


class _Recorded(Protocol):
    """What every site and grant event says about itself."""

    @property
    def site_id(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def on_behalf_of(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime: ...


def _answering(case_id: str | None) -> str:
    return f", answering request case {case_id}" if case_id else ""


def _scopes(scopes: list[str]) -> str:
    return ", ".join(scopes) or "no scopes"


def _people(accounts: list[str]) -> str:
    return f"{len(accounts)} requester{'' if len(accounts) == 1 else 's'}"


def _remember_name(tx: Tx, site_id: str, app_id: str, app_name: str) -> None:
    tx.execute(
        "INSERT INTO site_history_apps (site_id, app_id, app_name) VALUES (%(s)s, %(a)s, %(n)s)"
        " ON CONFLICT (site_id, app_id) DO UPDATE SET app_name = excluded.app_name",
        {"s": site_id, "a": app_id, "n": app_name},
    )


class _Outcome(_Recorded, Protocol):
    @property
    def app_id(self) -> str: ...
    @property
    def reason(self) -> str | None: ...


def _write_outcome(tx: Tx, position: int, event: _Outcome, type_name: str, summary: str) -> None:
    _write(tx, position, event, type_name, summary, reason=event.reason, app_id=event.app_id)


def _because(reason: str | None) -> str:
    return f" (reason: {reason})" if reason else ""


def _app_name(tx: Tx, site_id: str, app_id: str) -> str:
    row = tx.one(
        "SELECT app_name FROM site_history_apps WHERE site_id = %(s)s AND app_id = %(a)s",
        {"s": site_id, "a": app_id},
    )
    return str(row["app_name"]) if row else app_id


def _write(
    tx: Tx,
    position: int,
    event: _Recorded,
    type_name: str,
    summary: str,
    *,
    reason: str | None = None,
    app_id: str | None = None,
    account_id: str | None = None,
    policy_version: int | None = None,
) -> None:
    tx.execute(
        "INSERT INTO site_history (position, site_id, occurred_at, type, actor, summary, reason,"
        " app_id, account_id, policy_version, request_id, on_behalf_of) VALUES (%(p)s, %(s)s,"
        " %(t)s, %(type)s, %(actor)s, %(summary)s, %(reason)s, %(app)s, %(account)s,"
        " %(version)s, %(rid)s, %(obo)s)",
        {
            "p": position,
            "s": event.site_id,
            "t": micros(event.timestamp),
            "type": type_name,
            "actor": event.actor,
            "summary": summary,
            "reason": reason,
            "app": app_id,
            "account": account_id,
            "version": policy_version,
            "rid": event.request_id,
            "obo": event.on_behalf_of,
        },
    )


def site_history(tx: Tx, site_id: str, after: int, limit: int) -> Sequence[HistoryEntry]:
    rows = tx.all(
        "SELECT position, occurred_at, type, actor, summary, reason, app_id, account_id,"
        " policy_version, request_id, on_behalf_of FROM site_history"
        " WHERE site_id = %(s)s AND position > %(after)s ORDER BY position LIMIT %(limit)s",
        {"s": site_id, "after": after, "limit": limit},
    )
    return [
        HistoryEntry(
            position=row["position"],
            occurred_at=from_micros(row["occurred_at"]),
            type=row["type"],
            actor=row["actor"],
            summary=row["summary"],
            reason=row["reason"],
            app_id=row["app_id"],
            account_id=row["account_id"],
            policy_version=row["policy_version"],
            request_id=row["request_id"],
            on_behalf_of=row["on_behalf_of"],
        )
        for row in rows
    ]
