"""A site and its "user-installed apps" security control."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate

from governance.domain.actor import Actor
from governance.domain.clock import event_time
from governance.domain.errors import StalePolicyVersion
from governance.domain.ids import site_aggregate_id


class UserInstalls(StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"


class ExistingUserInstalls(StrEnum):
    """What a block does to apps users installed before it (the reference product keeps them)."""

    KEEP = "keep"
    REMOVE = "remove"


class Site(Aggregate):
    """One product instance of an organization. Its stream holds only site-level decisions.

    Each event's `apply` only assigns state, so replaying the stream never re-runs a decision.
    """

    class Event(Aggregate.Event):
        # The library makes every event below a subclass of this one, so all take their time here.
        create_timestamp = staticmethod(event_time)

    class SiteRegistered(Aggregate.Created):
        org_id: str
        site_id: str
        name: str
        actor: str
        on_behalf_of: str | None
        request_id: str | None

    class UserInstallsBlocked(Aggregate.Event):
        org_id: str
        site_id: str
        policy_version: int
        existing_user_installs: str
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.change_policy(
                UserInstalls.BLOCKED, self.policy_version, self.actor, self.reason
            )

    class UserInstallsAllowed(Aggregate.Event):
        org_id: str
        site_id: str
        policy_version: int
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.change_policy(
                UserInstalls.ALLOWED, self.policy_version, self.actor, self.reason
            )

    class AppRemoved(Aggregate.Event):
        """An admin removed an app from the site: every account's grant of it is revoked."""

        org_id: str
        site_id: str
        app_id: str
        removal_epoch: int
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.removal_epochs[self.app_id] = self.removal_epoch

    def __init__(self, org_id: str, site_id: str, name: str, actor: str) -> None:
        # Called with SiteRegistered's fields when the site is registered or rebuilt.
        self.org_id = org_id
        self.site_id = site_id
        self.name = name
        self.user_installs = UserInstalls.ALLOWED
        self.policy_version = 1
        self.updated_by = actor
        self.reason: str | None = None
        # Per app, how many times an admin removed it: grants from an older epoch are revoked.
        self.removal_epochs: dict[str, int] = {}

    @classmethod
    def register(cls, org_id: str, site_id: str, name: str, by: Actor) -> Site:
        return cls._create(
            cls.SiteRegistered,
            id=site_aggregate_id(site_id),
            org_id=org_id,
            site_id=site_id,
            name=name,
            **by.recorded(),
        )

    def set_user_installs(
        self,
        state: UserInstalls,
        by: Actor,
        *,
        reason: str | None = None,
        expected_policy_version: int | None = None,
        existing_user_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
    ) -> bool:
        """Switch the control; return False (and record nothing) when it is already in `state`."""
        if expected_policy_version is not None and expected_policy_version != self.policy_version:
            raise StalePolicyVersion(expected_policy_version, self.policy_version)
        if state == self.user_installs:
            return False
        common = {
            "org_id": self.org_id,
            "site_id": self.site_id,
            "policy_version": self.policy_version + 1,
            "reason": reason,
            **by.recorded(),
        }
        if state is UserInstalls.BLOCKED:
            self.trigger_event(
                self.UserInstallsBlocked,
                existing_user_installs=str(existing_user_installs),
                **common,
            )
        else:
            self.trigger_event(self.UserInstallsAllowed, **common)
        return True

    def removal_epoch(self, app_id: str) -> int:
        return self.removal_epochs.get(app_id, 0)

    def remove_app(self, app_id: str, by: Actor, *, reason: str | None) -> None:
        """Revoke every grant of the app on this site (the caller checked it is connected)."""
        self.trigger_event(
            self.AppRemoved,
            org_id=self.org_id,
            site_id=self.site_id,
            app_id=app_id,
            removal_epoch=self.removal_epoch(app_id) + 1,
            reason=reason,
            **by.recorded(),
        )

    def change_policy(
        self, state: UserInstalls, version: int, actor: str, reason: str | None
    ) -> None:
        """Assign a recorded policy change (called only by the events' apply steps)."""
        self.user_installs = state
        self.policy_version = version
        self.updated_by = actor
        self.reason = reason
