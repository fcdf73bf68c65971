"""The service layer: a command loads an aggregate, calls it, saves once, returns plain values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Recording

from governance.domain.errors import SiteIdTaken, SiteNotFound
from governance.domain.ids import site_aggregate_id
from governance.domain.site import Site, UserInstalls


@dataclass(frozen=True)
class CommandResult:
    """What a command did: whether it wrote events, and the log position to read one's writes at."""

    changed: bool
    position: int


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


@dataclass(frozen=True)
class Caller:
    """Who issued a command, recorded on every event it causes."""

    actor: str
    request_id: str | None = None


_ATTEMPTS = 3


class GovernanceApplication(Application[Any]):
    name = "governance"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        # Called after every save, e.g. to wake an in-process projector at once.
        self.after_save: list[Callable[[], None]] = []

    def register_site(self, org_id: str, site_id: str, name: str, caller: Caller) -> CommandResult:
        try:
            existing = self._get_site(site_id)
        except SiteNotFound:
            site = Site(org_id, site_id, name, caller.actor, caller.request_id)
            return CommandResult(changed=True, position=self._save(site))
        if existing.org_id != org_id or existing.name != name:
            raise SiteIdTaken(f"site id {site_id!r} is already registered")
        return CommandResult(changed=False, position=self._head())

    def set_user_installs(
        self,
        site_id: str,
        state: UserInstalls,
        caller: Caller,
        reason: str | None = None,
        expected_policy_version: int | None = None,
    ) -> tuple[CommandResult, PolicyState]:
        for attempt in range(_ATTEMPTS):
            site = self._get_site(site_id)
            changed = site.set_user_installs(
                state,
                actor=caller.actor,
                reason=reason,
                request_id=caller.request_id,
                expected_policy_version=expected_policy_version,
            )
            if not changed:
                return CommandResult(changed=False, position=self._head()), _policy(site)
            try:
                return CommandResult(changed=True, position=self._save(site)), _policy(site)
            except IntegrityError:
                # Another writer changed the site first: decide again on its new state.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def site_org(self, site_id: str) -> str:
        """The organization a site belongs to (raises SiteNotFound)."""
        return str(self._get_site(site_id).org_id)

    def head_position(self) -> int:
        return self._head()

    def _get_site(self, site_id: str) -> Site:
        try:
            site: Site = self.repository.get(site_aggregate_id(site_id))
        except AggregateNotFoundError:
            raise SiteNotFound(f"no site {site_id!r}") from None
        return site

    def _save(self, *aggregates: Site) -> int:
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
