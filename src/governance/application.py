"""The service layer: a command loads an aggregate, calls it, saves once, returns plain values."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Recording

from governance.approvals import ApprovalCommands
from governance.domain.actor import Actor
from governance.domain.consent import ConsentReason, decide_install
from governance.domain.errors import AppNotConnected, SiteIdTaken, SiteNotFound
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.ids import site_aggregate_id
from governance.domain.request_case import AppRequestCase
from governance.domain.site import ExistingUserInstalls, Site, UserInstalls
from governance.reporting import Observer, reported
from governance.results import CommandResult

__all__ = ["CommandResult", "GovernanceApplication", "InstallOutcome", "InstallStatus"]


@dataclass(frozen=True)
class PolicyState:
    """A site's "user-installed apps" policy, as the command left it."""

    site_id: str
    org_id: str
    user_installs: str
    version: int
    updated_at: datetime
    updated_by: str
    reason: str | None


class InstallStatus(StrEnum):
    INSTALLED = "installed"
    ALREADY_INSTALLED = "already_installed"
    REFUSED = "refused"


@dataclass(frozen=True)
class InstallOutcome:
    """What an install request came to; a refused one was still recorded (InstallBlocked)."""

    status: InstallStatus
    position: int
    installed_by: InstalledBy
    installed_at: datetime | None
    policy_version: int
    message: str | None = None
    reason: ConsentReason | None = None
    can_request: bool = False

    @property
    def changed(self) -> bool:
        return self.status is not InstallStatus.ALREADY_INSTALLED

    @property
    def refusal(self) -> str | None:
        return str(self.reason) if self.status is InstallStatus.REFUSED else None


_ATTEMPTS = 3
_SITE_ORGS_KEPT = 100_000
_BACKOFF = 0.005  # seconds: the first retry's longest wait, doubling with each attempt
T = TypeVar("T")


class GovernanceApplication(ApprovalCommands, Application[Any]):
    name = "governance"
    # A popular request case gathers many requesters: rebuild it from a recent snapshot.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {AppRequestCase: 100}

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        # Called after every save, e.g. to wake an in-process projector at once.
        self.after_save: list[Callable[[], None]] = []
        # Told what every command came to (see governance.reporting), e.g. by metrics and logs.
        self.command_observers: list[Observer] = []
        # A site's organization never changes once registered: every command asks for it first,
        # so remember it rather than read the site's events once more per command.
        self._site_orgs: dict[str, str] = {}

    @reported("register_site")
    def register_site(self, org_id: str, site_id: str, name: str, by: Actor) -> CommandResult:
        try:
            existing = self._get_site(site_id)
        except SiteNotFound:
            site = Site.register(org_id, site_id, name, by)
            return CommandResult(changed=True, position=self._save(site))
        if existing.org_id != org_id or existing.name != name:
            raise SiteIdTaken(f"site id {site_id!r} is already registered")
        return CommandResult(changed=False, position=self._head())

    @reported("set_user_installs", result_of=lambda result: result[0])
    def set_user_installs(
        self,
        site_id: str,
        state: UserInstalls,
        by: Actor,
        reason: str | None = None,
        expected_policy_version: int | None = None,
        existing_user_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
    ) -> tuple[CommandResult, PolicyState]:
        def attempt() -> tuple[CommandResult, PolicyState]:
            site = self._get_site(site_id)
            changed = site.set_user_installs(
                state,
                by,
                reason=reason,
                expected_policy_version=expected_policy_version,
                existing_user_installs=existing_user_installs,
            )
            position = self._save(site) if changed else self._head()
            return CommandResult(changed=changed, position=position), _policy(site)

        return self._retrying(attempt)

    @reported("install_app")
    def install_app(
        self,
        site_id: str,
        app_id: str,
        app_name: str,
        scopes: Sequence[str],
        by: Actor,
        installed_by: InstalledBy,
    ) -> InstallOutcome:
        """Install for the caller; while user installs are blocked, record a refusal instead."""
        return self._retrying(
            lambda: self._install(site_id, app_id, app_name, scopes, by, installed_by)
        )

    def _install(
        self,
        site_id: str,
        app_id: str,
        app_name: str,
        scopes: Sequence[str],
        by: Actor,
        installed_by: InstalledBy,
    ) -> InstallOutcome:
        site, grant = self._get_site_and_grant(site_id, app_id, by.account_id)
        epoch = site.removal_epoch(app_id)

        def outcome(status: InstallStatus, position: int) -> InstallOutcome:
            return InstallOutcome(
                status,
                position,
                InstalledBy(grant.installed_by or installed_by),
                grant.installed_at,
                site.policy_version,
                verdict.message,
                verdict.reason,
                verdict.can_request,
            )

        # Only an end user under a site block can have a request pending that matters.
        pending = (
            self._get_case(site_id, app_id).pending_scopes(by.account_id)
            if site.user_installs is UserInstalls.BLOCKED and installed_by is InstalledBy.USER
            else None
        )
        verdict = decide_install(site, grant, installed_by, app_id, scopes, pending)
        if verdict.reason is ConsentReason.ALREADY_INSTALLED:
            return outcome(InstallStatus.ALREADY_INSTALLED, self._head())
        request = InstallRequest(
            org_id=site.org_id,
            site_id=site_id,
            app_id=app_id,
            app_name=app_name,
            scopes=scopes,
            policy_version=site.policy_version,
        )
        if not verdict.allowed:
            grant.refuse(request, by, refusal=str(verdict.reason))
            return outcome(InstallStatus.REFUSED, self._save(grant))
        grant.install(request, by, installed_by=installed_by, removal_epoch=epoch)
        return outcome(InstallStatus.INSTALLED, self._save(grant))

    @reported("uninstall_app")
    def uninstall_app(self, site_id: str, app_id: str, by: Actor) -> CommandResult:
        """The caller revokes their own grant (GrantNotFound when they have none)."""

        def attempt() -> CommandResult:
            site, grant = self._get_site_and_grant(site_id, app_id, by.account_id)
            grant.uninstall(
                site.org_id, site_id, app_id, by, removal_epoch=site.removal_epoch(app_id)
            )
            return CommandResult(changed=True, position=self._save(grant))

        return self._retrying(attempt)

    @reported("remove_app")
    def remove_app(
        self, site_id: str, app_id: str, by: Actor, reason: str | None, *, connected: bool
    ) -> CommandResult:
        """An admin removes the app for everyone on the site; `connected` comes from the view."""
        if not connected:
            raise AppNotConnected(f"{app_id!r} is not connected to site {site_id!r}")

        def attempt() -> CommandResult:
            site = self._get_site(site_id)
            site.remove_app(app_id, by, reason=reason)
            return CommandResult(changed=True, position=self._save(site))

        return self._retrying(attempt)

    def site_org(self, site_id: str) -> str:
        """The organization a site belongs to (raises SiteNotFound)."""
        org = self._site_orgs.get(site_id)
        if org is None:
            if len(self._site_orgs) >= _SITE_ORGS_KEPT:
                self._site_orgs.clear()
            org = self._site_orgs[site_id] = str(self._get_site(site_id).org_id)
        return org

    def head_position(self) -> int:
        return self._head()

    def _get_site(self, site_id: str) -> Site:
        try:
            site: Site = self.repository.get(site_aggregate_id(site_id))
        except AggregateNotFoundError:
            raise SiteNotFound(f"no site {site_id!r}") from None
        return site

    def _get_site_and_grant(self, site_id: str, app_id: str, account_id: str) -> tuple[Site, Grant]:
        """Both aggregates an install decides on, read together (one statement, one snapshot)."""
        site_key, grant_key = site_aggregate_id(site_id), Grant.id_for(site_id, app_id, account_id)
        # Our recorders read both in one statement; the library's in-memory one (unit tests)
        # stream by stream.
        select_streams = getattr(self.recorder, "select_streams", None)
        keys = [site_key, grant_key]
        rows = (
            select_streams(keys)
            if select_streams is not None
            else [row for key in keys for row in self.recorder.select_events(key)]
        )
        streams: dict[UUID | str, list[DomainEventProtocol[UUID]]] = {site_key: [], grant_key: []}
        for stored in rows:
            streams[stored.originator_id].append(self.mapper.to_domain_event(stored))
        # Neither is ever snapshotted (only request cases are), so their events are all there is.
        site: Site | None = project_aggregate(None, streams[site_key])
        if site is None:
            raise SiteNotFound(f"no site {site_id!r}")
        grant: Grant | None = project_aggregate(None, streams[grant_key])
        if grant is None:
            grant = Grant.open(site_id, app_id, account_id, datetime.now(UTC))
        return site, grant

    @staticmethod
    def _retrying(command: Callable[[], T], attempts: int = _ATTEMPTS) -> T:
        """Run a command again when another writer saved the same aggregate first.

        The command reloads and decides afresh each time, so a retry never applies stale state.
        Writers that collided wait a random moment first, so they do not collide again in step.
        """
        for attempt in range(attempts):
            try:
                return command()
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                time.sleep(random.uniform(0, _BACKOFF * 2**attempt))  # noqa: S311 - jitter
        raise AssertionError("unreachable")

    def _save(self, *aggregates: Aggregate) -> int:
        recordings: list[Recording[Any]] = self.save(*aggregates)
        for callback in self.after_save:
            callback()
        return max(r.notification.id for r in recordings)

    def _head(self) -> int:
        # Nothing was written: reading one's writes means catching up with the log as it is now.
        return self.recorder.max_notification_id() or 0


def _policy(site: Site) -> PolicyState:
    return PolicyState(
        site_id=site.site_id,
        org_id=site.org_id,
        user_installs=str(site.user_installs),
        version=site.policy_version,
        updated_at=site.modified_on,
        updated_by=site.updated_by,
        reason=site.reason,
    )
