"""A site as it stood at a moment: its policy and its connected apps (`governance history`).

It asks the read models the same `as_of` questions as the API does
(`projections.policy.get_policy_as_of`, `projections.connected_apps.connected_apps_as_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from governance.audit.export import timestamp
from governance.config import Settings
from projections import connected_apps as apps_view
from projections import policy as policy_view
from projections.generations import GenerationalViewStore


@dataclass(frozen=True)
class SiteState:
    site_id: str
    as_of: datetime | None
    policy: policy_view.SitePolicy
    apps: Sequence[apps_view.ConnectedApp]
    views_position: int  # the log position the read models had reached

    def as_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return timestamp(value) if isinstance(value, datetime) else value

        return {
            "site_id": self.site_id,
            "as_of": timestamp(self.as_of) if self.as_of else None,
            "views_position": self.views_position,
            "policy": {k: plain(v) for k, v in asdict(self.policy).items()},
            "apps": [{k: plain(v) for k, v in asdict(app).items()} for app in self.apps],
        }

    def as_text(self) -> str:
        policy = self.policy
        when = f"as of {timestamp(self.as_of)}" if self.as_of else "now"
        lines = [
            f"site {policy.site_id} ({policy.name!r}, org {policy.org_id}), {when}"
            f" [read models at log position {self.views_position}]",
            f"policy v{policy.version}: user installs {policy.user_installs}"
            f" (since {timestamp(policy.updated_at)}, by {policy.updated_by}"
            + (f", reason: {policy.reason}" if policy.reason else "")
            + ")",
            f"connected apps: {len(self.apps)}",
        ]
        for app in self.apps:
            users = f"{app.user_count} account" + ("s" if app.user_count != 1 else "")
            lines.append(
                f"  {app.app_name} ({app.app_id}): installed by {app.installed_by}, {users},"
                f" scopes {', '.join(app.scopes) or '-'}, since {timestamp(app.installed_at)}"
            )
        return "\n".join(lines)


def site_at(settings: Settings, site_id: str, moment: datetime | None) -> SiteState | None:
    """The site's state at `moment` (now when None), or None when it did not exist then."""
    from governance.runtime import view_generations

    views = GenerationalViewStore(view_generations(settings))
    try:
        with views.read() as tx:
            if moment is None:
                policy = policy_view.get_policy(tx, site_id)
                apps = apps_view.connected_apps(tx, site_id)
            else:
                policy = policy_view.get_policy_as_of(tx, site_id, moment)
                apps = apps_view.connected_apps_as_of(tx, site_id, moment)
            rows = tx.all("SELECT position FROM projection_tracking")
    finally:
        views.close()
    if policy is None:
        return None
    reached = min((int(row["position"]) for row in rows), default=0)
    return SiteState(site_id, moment, policy, apps, reached)
