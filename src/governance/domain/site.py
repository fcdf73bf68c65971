"""A site and its "user-installed apps" security control."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from governance.domain.errors import StalePolicyVersion
from governance.domain.ids import site_aggregate_id


class UserInstalls(StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"


class Site(Aggregate):
    """One product instance of an organization. Its stream holds only site-level decisions."""

    class SiteRegistered(Aggregate.Created):
        org_id: str
        site_id: str
        name: str
        actor: str
        request_id: str | None

    class UserInstallsBlocked(Aggregate.Event):
        org_id: str
        site_id: str
        policy_version: int
        actor: str
        reason: str | None
        request_id: str | None

    class UserInstallsAllowed(Aggregate.Event):
        org_id: str
        site_id: str
        policy_version: int
        actor: str
        reason: str | None
        request_id: str | None

    class AppRemoved(Aggregate.Event):
        """An admin removed an app from the site: every account's grant of it is revoked."""

        org_id: str
        site_id: str
        app_id: str
        removal_epoch: int
        actor: str
        reason: str | None
        request_id: str | None

    @staticmethod
    def create_id(org_id: str, site_id: str, name: str, actor: str, request_id: str | None) -> UUID:
        del org_id, name, actor, request_id  # the id depends on the site id alone
        return site_aggregate_id(site_id)

    @event(SiteRegistered)
    def __init__(
        self, org_id: str, site_id: str, name: str, actor: str, request_id: str | None
    ) -> None:
        self.org_id = org_id
        self.site_id = site_id
        self.name = name
        self.user_installs = UserInstalls.ALLOWED
        self.policy_version = 1
        self.updated_by = actor
        self.reason: str | None = None
        # Per app, how many times an admin removed it: grants from an older epoch are revoked.
        self.removal_epochs: dict[str, int] = {}

    def set_user_installs(
        self,
        state: UserInstalls,
        *,
        actor: str,
        reason: str | None,
        request_id: str | None,
        expected_policy_version: int | None = None,
    ) -> bool:
        """Switch the control; return False (and record nothing) when it is already in `state`."""
        if expected_policy_version is not None and expected_policy_version != self.policy_version:
            raise StalePolicyVersion(expected_policy_version, self.policy_version)
        if state == self.user_installs:
            return False
        change = self._block if state is UserInstalls.BLOCKED else self._allow
        change(
            org_id=self.org_id,
            site_id=self.site_id,
            policy_version=self.policy_version + 1,
            actor=actor,
            reason=reason,
            request_id=request_id,
        )
        return True

    def removal_epoch(self, app_id: str) -> int:
        return self.removal_epochs.get(app_id, 0)

    def remove_app(
        self, app_id: str, *, actor: str, reason: str | None, request_id: str | None
    ) -> None:
        """Revoke every grant of the app on this site (the caller checked it is connected)."""
        self._remove_app(
            org_id=self.org_id,
            site_id=self.site_id,
            app_id=app_id,
            removal_epoch=self.removal_epoch(app_id) + 1,
            actor=actor,
            reason=reason,
            request_id=request_id,
        )

    # The apply steps below only assign: replaying them never re-runs a decision.

    @event(UserInstallsBlocked)
    def _block(
        self,
        org_id: str,
        site_id: str,
        policy_version: int,
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.user_installs = UserInstalls.BLOCKED
        self.policy_version = policy_version
        self.updated_by = actor
        self.reason = reason

    @event(UserInstallsAllowed)
    def _allow(
        self,
        org_id: str,
        site_id: str,
        policy_version: int,
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.user_installs = UserInstalls.ALLOWED
        self.policy_version = policy_version
        self.updated_by = actor
        self.reason = reason

    @event(AppRemoved)
    def _remove_app(
        self,
        org_id: str,
        site_id: str,
        app_id: str,
        removal_epoch: int,
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.removal_epochs[app_id] = removal_epoch
