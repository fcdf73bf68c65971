"""Filling a store fast: many grants saved per transaction through the real application."""

from __future__ import annotations

from datetime import UTC, datetime

from governance.domain.actor import Actor
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.runtime import Runtime


def seed_installs(
    runtime: Runtime, site_id: str, count: int, apps: int = 50, batch: int = 2000
) -> None:
    """`count` user installs on one site, spread over `apps` apps, saved `batch` per transaction."""
    app = runtime.application
    app.register_site("acme", site_id, "Bench site", Actor("olga"))
    now = datetime.now(UTC)
    pending: list[Grant] = []
    for n in range(count):
        app_id = f"app-{n % apps}"
        grant = Grant.open(site_id, app_id, f"user-{n}", now)
        request = InstallRequest("acme", site_id, app_id, app_id.title(), ["read"], 1)
        grant.install(request, Actor(f"user-{n}"), installed_by=InstalledBy.USER, removal_epoch=0)
        pending.append(grant)
        if len(pending) == batch:
            app.save(*pending)
            pending.clear()
    if pending:
        app.save(*pending)
