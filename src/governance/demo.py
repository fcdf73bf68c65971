"""`governance demo`: three weeks of an organization's life, written through the application.

Every event goes through `GovernanceApplication` like a request's would, stamped at a moment in
the past (`events_at`), so the views, the history and `as_of` answers are populated at once.
It fills only an empty event store: demo events dated in the past after newer real ones would
make `as_of` answers about that past wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.clock import events_at
from governance.domain.grant import InstalledBy
from governance.domain.site import ExistingUserInstalls, UserInstalls
from governance.runtime import Runtime, migrate
from projections import connected_apps as apps_view

ORG = "acme"
SITES = {
    "eng": "Engineering",
    "sales": "Sales",
    "support": "Support",
    "marketing": "Marketing",
}
# Which sites each end user belongs to (their token lists them).
MEMBERS = {
    "ann": ("eng", "sales"),
    "ben": ("eng",),
    "chen": ("eng", "support"),
    "dana": ("sales", "marketing"),
    "eve": ("support", "marketing"),
}
APPS = {
    "jira-cloud-sync": ("Jira Cloud Sync", ["read:jira-work", "write:jira-work"]),
    "slack-notify": ("Slack Notify", ["read:page", "write:comment"]),
    "github-link": ("GitHub Link", ["read:repo"]),
    "draw-diagrams": ("Draw Diagrams", ["read:page", "write:page"]),
    "team-calendar": ("Team Calendar", ["read:calendar"]),
    "backup-pro": ("Backup Pro", ["read:space", "read:page", "read:attachment"]),
    "time-tracker": ("Time Tracker", ["read:issue", "write:worklog"]),
    "quick-survey": ("Quick Survey", ["read:user"]),
    "pdf-export": ("PDF Export", ["read:page"]),
    "translate-it": ("Translate It", ["read:page", "write:page"]),
    "chat-assist": ("Chat Assist", ["read:page", "read:user", "write:comment"]),
    "crm-bridge": ("CRM Bridge", ["read:contact", "write:contact"]),
}
ORG_ADMIN, SITE_ADMIN, AUDITOR = "olga", "sam", "audrey"
# Days before now of the moment the `as_of` examples ask about: before eng's block and removal.
AS_OF_DAYS = 8


class DemoRefused(Exception):
    """The store already holds events."""


@dataclass
class _Scene:
    runtime: Runtime
    now: datetime
    request_ids: count[int] = field(default_factory=lambda: count(1))
    last: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))

    def at(self, days_ago: int, clock: str) -> datetime:
        hour, minute = (int(part) for part in clock.split(":"))
        day = self.now - timedelta(days=days_ago)
        return day.replace(hour=hour, minute=minute, second=0, microsecond=0)

    def step(self, days_ago: int, clock: str) -> AbstractContextManager[None]:
        """Stamp the next events; the log's order must be the timestamps' for `as_of` answers."""
        moment = self.at(days_ago, clock)
        if moment < self.last:
            raise ValueError(f"the timeline goes back in time at {moment:%Y-%m-%d %H:%M}")
        self.last = moment
        return events_at(moment)

    def actor(self, account_id: str) -> Actor:
        return Actor(account_id, request_id=f"demo-{next(self.request_ids):04d}")

    def register(self, days_ago: int, clock: str, site_id: str) -> None:
        with self.step(days_ago, clock):
            app = self.runtime.application
            app.register_site(ORG, site_id, SITES[site_id], self.actor(ORG_ADMIN))

    def install(
        self, days_ago: int, clock: str, who: str, site_id: str, app_id: str, *, admin: bool = False
    ) -> None:
        name, scopes = APPS[app_id]
        role = InstalledBy.ADMIN if admin else InstalledBy.USER
        with self.step(days_ago, clock):
            self.runtime.application.install_app(
                site_id, app_id, name, scopes, self.actor(who), role
            )

    def policy(
        self,
        days_ago: int,
        clock: str,
        who: str,
        site_id: str,
        state: UserInstalls,
        reason: str,
    ) -> None:
        with self.step(days_ago, clock):
            self.runtime.application.set_user_installs(
                site_id,
                state,
                self.actor(who),
                reason=reason,
                existing_user_installs=ExistingUserInstalls.KEEP,
            )

    def uninstall(self, days_ago: int, clock: str, who: str, site_id: str, app_id: str) -> None:
        with self.step(days_ago, clock):
            self.runtime.application.uninstall_app(site_id, app_id, self.actor(who))

    def remove(
        self, days_ago: int, clock: str, who: str, site_id: str, app_id: str, reason: str
    ) -> None:
        # As the API does: decide on the "Connected apps" list as it is now.
        self.runtime.projector.catch_up()
        with self.runtime.views.read() as tx:
            connected = apps_view.is_connected(tx, site_id, app_id)
        with self.step(days_ago, clock):
            self.runtime.application.remove_app(
                site_id, app_id, self.actor(who), reason, connected=connected
            )


def _play(scene: _Scene) -> None:
    """The timeline, oldest first (the scene refuses to go back in time)."""
    for site_id in SITES:
        scene.register(21, "09:00", site_id)
    scene.install(20, "10:12", "ann", "eng", "jira-cloud-sync")
    scene.install(19, "11:40", "ben", "eng", "jira-cloud-sync")
    scene.install(18, "09:30", "ann", "eng", "draw-diagrams")
    scene.install(18, "14:05", "dana", "sales", "crm-bridge")
    scene.install(17, "10:20", "chen", "eng", "slack-notify")
    scene.install(17, "15:45", "chen", "support", "chat-assist")
    scene.install(16, "13:10", "ann", "sales", "team-calendar")
    scene.install(16, "17:00", SITE_ADMIN, "eng", "backup-pro", admin=True)
    scene.install(15, "09:55", "ben", "eng", "github-link")
    scene.install(15, "16:30", "eve", "support", "translate-it")
    scene.install(14, "11:00", "chen", "eng", "time-tracker")
    scene.install(14, "17:30", ORG_ADMIN, "support", "backup-pro", admin=True)
    scene.install(13, "10:40", "dana", "sales", "pdf-export")
    scene.install(12, "14:20", "eve", "marketing", "quick-survey")
    scene.install(11, "09:15", "dana", "marketing", "draw-diagrams")
    scene.uninstall(9, "12:00", "ben", "eng", "github-link")
    scene.policy(
        7, "09:00", SITE_ADMIN, "eng", UserInstalls.BLOCKED, "Security review of apps (SEC-142)"
    )
    scene.install(6, "10:05", "ann", "eng", "chat-assist")  # refused: installs are blocked
    scene.install(6, "15:20", "ben", "eng", "pdf-export")  # refused
    scene.install(5, "11:00", SITE_ADMIN, "eng", "team-calendar", admin=True)  # admins still may
    scene.policy(4, "08:30", ORG_ADMIN, "sales", UserInstalls.BLOCKED, "Quarter-end freeze")
    scene.remove(
        3, "16:00", SITE_ADMIN, "eng", "slack-notify", "Posts page content to an outside workspace"
    )
    scene.install(2, "10:45", "dana", "sales", "translate-it")  # refused during the freeze
    scene.policy(1, "09:00", ORG_ADMIN, "sales", UserInstalls.ALLOWED, "Freeze is over")
    scene.install(1, "13:30", "eve", "marketing", "pdf-export")


def run_demo(settings: Settings, now: datetime | None = None) -> str:
    """Fill the configured (empty) store; return what to show the person who asked."""
    migrate(settings)
    runtime = Runtime(settings)
    try:
        head = runtime.application.head_position()
        if head > 0:
            raise DemoRefused(
                f"the event store already holds events (log position {head}); the demo fills only"
                " an empty one. Point GOVERNANCE_DATA_DIR (or DATABASE_URL) at a new store,"
                " or remove the data directory to start again."
            )
        scene = _Scene(runtime, now or datetime.now(UTC))
        _play(scene)
        runtime.projector.catch_up()
        return _instructions(settings, runtime.tokens, scene)
    finally:
        runtime.close()


def _instructions(settings: Settings, codec: TokenCodec, scene: _Scene) -> str:
    ttl = settings.token_ttl_seconds

    def token(sub: str, roles: Sequence[Role], sites: Sequence[str] = ()) -> str:
        return codec.issue(sub=sub, org=ORG, roles=roles, sites=sites, ttl_seconds=ttl)

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    as_of = scene.at(AS_OF_DAYS, "12:00").strftime("%Y-%m-%dT%H:%M:%SZ")
    auth = '-H "Authorization: Bearer ${}"'
    return "\n".join(
        [
            f"The demo organization {ORG!r} is in place: {len(SITES)} sites, {len(APPS)} apps,"
            f" installs, blocks, refused attempts and a removal over the last three weeks.",
            "",
            "Start the service (`make run`, or `governance serve`), then paste these lines:",
            "",
            f"export ORG_ADMIN={token(ORG_ADMIN, [Role.ORG_ADMIN])}",
            f"export SITE_ADMIN={token(SITE_ADMIN, [Role.SITE_ADMIN], ['eng'])}",
            f"export END_USER={token('ann', [Role.USER], MEMBERS['ann'])}",
            f"export AUDITOR={token(AUDITOR, [Role.AUDITOR])}",
            f"export URL=http://{host}:{settings.port}",
            "",
            "# the organization's sites, as its org admin (olga) sees them",
            f'curl -s "$URL/v1/orgs/{ORG}/sites" {auth.format("ORG_ADMIN")}',
            "# Engineering's Connected apps, as its site admin (sam) sees them",
            f'curl -s "$URL/v1/sites/eng/connected-apps" {auth.format("SITE_ADMIN")}',
            "# Engineering's history: who blocked, who was refused, who removed what, and why",
            f'curl -s "$URL/v1/sites/eng/history" {auth.format("AUDITOR")}',
            f"# the same list and policy {AS_OF_DAYS} days ago, before the block and the removal",
            f'curl -s "$URL/v1/sites/eng/connected-apps?as_of={as_of}" {auth.format("AUDITOR")}',
            f'curl -s "$URL/v1/sites/eng/policy?as_of={as_of}" {auth.format("AUDITOR")}',
            "# the consent screen's question for an end user (ann): denied, installs are blocked",
            f'curl -s "$URL/v1/sites/eng/consent?app_id=chat-assist" {auth.format("END_USER")}',
            "# the service's own metrics",
            'curl -s "$URL/metrics"',
        ]
    )
