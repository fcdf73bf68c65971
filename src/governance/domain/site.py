"""A site and its "user-installed apps" security control."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict

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


class AppList(StrEnum):
    """A site's lists of apps: approved ones users may install while installs are blocked (within
    the approved scopes), blocked ones nobody may install."""

    APPROVED = "approved"
    BLOCKED = "blocked"


class AppListing(TypedDict):
    """An app's place on a site's lists. A plain dict, so the state stays snapshot-safe (JSON)."""

    status: str
    app_name: str
    scopes: list[str]
    reason: str | None
    updated_by: str
    updated_at: datetime
    case_id: str | None


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

    class AppApproved(Aggregate.Event):
        """Users may install the app, within `scopes`, even while user installs are blocked."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        scopes: list[str]
        case_id: str | None
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.app_lists[self.app_id] = AppListing(
                status=AppList.APPROVED,
                app_name=self.app_name,
                scopes=self.scopes,
                reason=self.reason,
                updated_by=self.actor,
                updated_at=self.timestamp,
                case_id=self.case_id,
            )

    class AppBlocked(Aggregate.Event):
        """Nobody, admins included, may install the app; `existing_installs` says what happened
        to the grants of it (on `remove`, an AppRemoved follows in the same transaction)."""

        org_id: str
        site_id: str
        app_id: str
        app_name: str
        existing_installs: str
        case_id: str | None
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.app_lists[self.app_id] = AppListing(
                status=AppList.BLOCKED,
                app_name=self.app_name,
                scopes=[],
                reason=self.reason,
                updated_by=self.actor,
                updated_at=self.timestamp,
                case_id=self.case_id,
            )

    class AppApprovalWithdrawn(Aggregate.Event):
        """The app is no longer approved: the site policy alone decides again. Grants stay."""

        org_id: str
        site_id: str
        app_id: str
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.app_lists.pop(self.app_id, None)

    class AppUnblocked(Aggregate.Event):
        """The app is no longer blocked: the site policy alone decides again."""

        org_id: str
        site_id: str
        app_id: str
        actor: str
        on_behalf_of: str | None
        reason: str | None
        request_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.app_lists.pop(self.app_id, None)

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
        # Apps on the approved or blocked list; an app on neither is not a key.
        self.app_lists: dict[str, AppListing] = {}

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

    def listing(self, app_id: str) -> AppListing | None:
        return self.app_lists.get(app_id)

    def listed(self, app_id: str) -> AppList | None:
        listing = self.app_lists.get(app_id)
        return AppList(listing["status"]) if listing else None

    def approved_scopes(self, app_id: str) -> list[str]:
        listing = self.app_lists.get(app_id)
        return list(listing["scopes"]) if listing else []

    def approve_app(
        self,
        app_id: str,
        app_name: str,
        scopes: Collection[str],
        by: Actor,
        *,
        reason: str | None = None,
        case_id: str | None = None,
    ) -> bool:
        """Approve the app for exactly `scopes` (replacing a block or an earlier approval).

        False, and nothing recorded, when it is approved for those scopes already.
        """
        wanted = sorted(set(scopes))
        if self.listed(app_id) is AppList.APPROVED and self.approved_scopes(app_id) == wanted:
            return False
        self.trigger_event(
            self.AppApproved,
            org_id=self.org_id,
            site_id=self.site_id,
            app_id=app_id,
            app_name=app_name,
            scopes=wanted,
            case_id=case_id,
            reason=reason,
            **by.recorded(),
        )
        return True

    def block_app(
        self,
        app_id: str,
        app_name: str,
        by: Actor,
        *,
        reason: str | None = None,
        existing_installs: ExistingUserInstalls = ExistingUserInstalls.KEEP,
        case_id: str | None = None,
    ) -> bool:
        """Block the app for everyone; on `remove`, revoke every grant of it as well.

        False, and nothing recorded, when it is blocked already.
        """
        if self.listed(app_id) is AppList.BLOCKED:
            return False
        self.trigger_event(
            self.AppBlocked,
            org_id=self.org_id,
            site_id=self.site_id,
            app_id=app_id,
            app_name=app_name,
            existing_installs=str(existing_installs),
            case_id=case_id,
            reason=reason,
            **by.recorded(),
        )
        if existing_installs is ExistingUserInstalls.REMOVE:
            # The new removal epoch revokes every grant decided before the block, including an
            # install still in flight, so this does not depend on a (possibly lagging) view.
            self.remove_app(app_id, by, reason=reason)
        return True

    def clear_app_listing(self, app_id: str, by: Actor, *, reason: str | None = None) -> bool:
        """Take the app off whichever list it is on; False when it is on neither."""
        listed = self.listed(app_id)
        if listed is None:
            return False
        event = self.AppApprovalWithdrawn if listed is AppList.APPROVED else self.AppUnblocked
        self.trigger_event(
            event,
            org_id=self.org_id,
            site_id=self.site_id,
            app_id=app_id,
            reason=reason,
            **by.recorded(),
        )
        return True

    def change_policy(
        self, state: UserInstalls, version: int, actor: str, reason: str | None
    ) -> None:
        """Assign a recorded policy change (called only by the events' apply steps)."""
        self.user_installs = state
        self.policy_version = version
        self.updated_by = actor
        self.reason = reason
