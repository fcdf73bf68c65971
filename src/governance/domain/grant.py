"""One account's grant of one app on one site: installs, refused attempts and revocations.

A grant is its own short stream, so 100,000 users installing one app on one site write to
100,000 streams that never conflict, and each install costs what the first one did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from governance.domain.errors import GrantNotFound
from governance.domain.ids import grant_aggregate_id
from governance.domain.stream import ImplicitAggregate


class InstalledBy(StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class GrantFacts:
    """What an install or a refused attempt records about who asked for which app where."""

    org_id: str
    site_id: str
    app_id: str
    app_name: str
    scopes: Sequence[str]
    account_id: str
    policy_version: int
    request_id: str | None


class Grant(ImplicitAggregate):
    class AppInstalled(ImplicitAggregate.Event):
        org_id: str
        site_id: str
        app_id: str
        app_name: str
        scopes: list[str]
        account_id: str
        installed_by: str
        policy_version: int
        removal_epoch: int
        actor: str
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.installed = True
            aggregate.scopes = self.scopes
            aggregate.installed_by = self.installed_by
            aggregate.removal_epoch = self.removal_epoch
            aggregate.installed_at = self.timestamp

    class InstallBlocked(ImplicitAggregate.Event):
        org_id: str
        site_id: str
        app_id: str
        app_name: str
        scopes: list[str]
        account_id: str
        policy_version: int
        actor: str
        request_id: str | None

    class AppUninstalled(ImplicitAggregate.Event):
        org_id: str
        site_id: str
        app_id: str
        account_id: str
        removal_epoch: int
        actor: str
        request_id: str | None

    @classmethod
    def open(cls, site_id: str, app_id: str, account_id: str, now: datetime) -> Grant:
        return cls.empty(grant_aggregate_id(site_id, app_id, account_id), now)

    @staticmethod
    def id_for(site_id: str, app_id: str, account_id: str) -> UUID:
        return grant_aggregate_id(site_id, app_id, account_id)

    def _empty(self) -> None:
        self.installed = False
        self.removal_epoch = 0
        self.scopes: list[str] = []
        self.installed_by: str | None = None
        self.installed_at: datetime | None = None

    def is_active(self, removal_epoch: int) -> bool:
        """Installed, and not swept away by an admin removal since (a newer removal epoch)."""
        return self.installed and self.removal_epoch == removal_epoch

    def covers(self, scopes: Sequence[str], removal_epoch: int) -> bool:
        return self.is_active(removal_epoch) and set(scopes) <= set(self.scopes)

    def install(self, facts: GrantFacts, *, installed_by: InstalledBy, removal_epoch: int) -> bool:
        """Record the install; False (nothing recorded) when the grant already covers it."""
        if self.covers(facts.scopes, removal_epoch):
            return False
        # Consenting to more scopes widens an active grant; after a revocation it starts afresh.
        kept = self.scopes if self.is_active(removal_epoch) else []
        self.trigger_event(
            self.AppInstalled,
            org_id=facts.org_id,
            site_id=facts.site_id,
            app_id=facts.app_id,
            app_name=facts.app_name,
            scopes=sorted(set(facts.scopes) | set(kept)),
            account_id=facts.account_id,
            installed_by=str(installed_by),
            policy_version=facts.policy_version,
            removal_epoch=removal_epoch,
            actor=facts.account_id,
            request_id=facts.request_id,
        )
        return True

    def refuse(self, facts: GrantFacts) -> None:
        """Record an attempt the policy refused: auditors see who tried what, and when."""
        self._refused(
            org_id=facts.org_id,
            site_id=facts.site_id,
            app_id=facts.app_id,
            app_name=facts.app_name,
            scopes=sorted(set(facts.scopes)),
            account_id=facts.account_id,
            policy_version=facts.policy_version,
            actor=facts.account_id,
            request_id=facts.request_id,
        )

    def uninstall(
        self,
        *,
        org_id: str,
        site_id: str,
        app_id: str,
        account_id: str,
        removal_epoch: int,
        request_id: str | None,
    ) -> None:
        if not self.is_active(removal_epoch):
            raise GrantNotFound(f"{account_id} has no grant of {app_id!r} on this site")
        self._uninstalled(
            org_id=org_id,
            site_id=site_id,
            app_id=app_id,
            account_id=account_id,
            removal_epoch=removal_epoch,
            actor=account_id,
            request_id=request_id,
        )

    # Apply steps only assign (AppInstalled's is on its class: it needs the event's time).

    @event(InstallBlocked)
    def _refused(
        self,
        org_id: str,
        site_id: str,
        app_id: str,
        app_name: str,
        scopes: list[str],
        account_id: str,
        policy_version: int,
        actor: str,
        request_id: str | None,
    ) -> None:
        pass  # a refused attempt changes nothing but the record

    @event(AppUninstalled)
    def _uninstalled(
        self,
        org_id: str,
        site_id: str,
        app_id: str,
        account_id: str,
        removal_epoch: int,
        actor: str,
        request_id: str | None,
    ) -> None:
        self.installed = False
        self.scopes = []
