"""One account's grant of one app on one site: installs, refused attempts and revocations.

A grant is its own short stream, so 100,000 users installing one app on one site write to
100,000 streams that never conflict, and each install costs what the first one did.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from governance.domain.actor import Actor
from governance.domain.errors import GrantNotFound
from governance.domain.ids import grant_aggregate_id
from governance.domain.stream import ImplicitAggregate


class InstalledBy(StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class InstallRequest:
    """Which app, with which scopes, an account asks for on a site, under which policy version."""

    org_id: str
    site_id: str
    app_id: str
    app_name: str
    scopes: Sequence[str]
    policy_version: int


class Grant(ImplicitAggregate):
    """Each event's `apply` only assigns state: replaying the stream never re-runs a decision."""

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
        on_behalf_of: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.installed = True
            aggregate.scopes = self.scopes
            aggregate.installed_by = self.installed_by
            aggregate.removal_epoch = self.removal_epoch
            aggregate.installed_at = self.timestamp

    class InstallBlocked(ImplicitAggregate.Event):
        """An attempt the install rule refused (`refusal`: its reason code); it changes nothing
        but the record."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        scopes: list[str]
        account_id: str
        policy_version: int
        refusal: str
        actor: str
        on_behalf_of: str | None
        request_id: str | None

    class AppUninstalled(ImplicitAggregate.Event):
        org_id: str
        site_id: str
        app_id: str
        account_id: str
        removal_epoch: int
        actor: str
        on_behalf_of: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.installed = False
            aggregate.scopes = []

    @classmethod
    def open(cls, site_id: str, app_id: str, account_id: str, now: datetime) -> Grant:
        return cls.empty(cls.id_for(site_id, app_id, account_id), now)

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

    def covers(self, scopes: Collection[str], removal_epoch: int) -> bool:
        return self.is_active(removal_epoch) and set(scopes) <= set(self.scopes)

    def install(
        self,
        request: InstallRequest,
        by: Actor,
        *,
        installed_by: InstalledBy,
        removal_epoch: int,
    ) -> bool:
        """Record the install; False (nothing recorded) when the grant already covers it."""
        if self.covers(request.scopes, removal_epoch):
            return False
        # Consenting to more scopes widens an active grant; after a revocation it starts afresh.
        kept = self.scopes if self.is_active(removal_epoch) else []
        self.trigger_event(
            self.AppInstalled,
            org_id=request.org_id,
            site_id=request.site_id,
            app_id=request.app_id,
            app_name=request.app_name,
            scopes=sorted(set(request.scopes) | set(kept)),
            account_id=by.account_id,
            installed_by=str(installed_by),
            policy_version=request.policy_version,
            removal_epoch=removal_epoch,
            **by.recorded(),
        )
        return True

    def refuse(self, request: InstallRequest, by: Actor, *, refusal: str) -> None:
        """Record an attempt the install rule refused: auditors see who tried what, when, and
        which rule refused it."""
        self.trigger_event(
            self.InstallBlocked,
            org_id=request.org_id,
            site_id=request.site_id,
            app_id=request.app_id,
            app_name=request.app_name,
            scopes=sorted(set(request.scopes)),
            account_id=by.account_id,
            policy_version=request.policy_version,
            refusal=refusal,
            **by.recorded(),
        )

    def uninstall(
        self, org_id: str, site_id: str, app_id: str, by: Actor, *, removal_epoch: int
    ) -> None:
        if not self.is_active(removal_epoch):
            raise GrantNotFound(f"{by.account_id} has no grant of {app_id!r} on this site")
        self.trigger_event(
            self.AppUninstalled,
            org_id=org_id,
            site_id=site_id,
            app_id=app_id,
            account_id=by.account_id,
            removal_epoch=removal_epoch,
            **by.recorded(),
        )
