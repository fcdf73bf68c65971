"""`as_of` answers equal a brute-force replay of the log at many random moments.

The brute force reads every stored event, keeps those that happened at or before the moment, and
rebuilds each site's policy and connected apps in plain Python, without the read models.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from governance.domain.grant import Grant
from governance.domain.site import Site
from governance.runtime import Runtime
from projections.connected_apps import ConnectedApp, connected_apps_as_of
from projections.policy import SitePolicy, get_policy_as_of
from tests.integration.audit_support import SITES, random_history, run_cli


@dataclass
class _Grant:
    installed_by: str
    scopes: list[str]
    first_at: datetime
    valid_from: datetime
    app_name: str
    position: int


@dataclass
class _Site:
    policy: SitePolicy
    epochs: dict[str, int] = field(default_factory=dict)
    grants: dict[tuple[str, str], _Grant] = field(default_factory=dict)


def brute_force(events: list[tuple[int, Any]], moment: datetime) -> dict[str, _Site]:
    """Each site as the events up to `moment` leave it, computed from the events alone."""
    sites: dict[str, _Site] = {}
    for position, event in events:
        if event.timestamp > moment:
            continue
        if isinstance(event, Site.SiteRegistered):
            policy = SitePolicy(
                event.site_id,
                event.org_id,
                event.name,
                "allowed",
                1,
                event.timestamp,
                event.actor,
                None,
            )
            sites[event.site_id] = _Site(policy)
            continue
        site = sites[event.site_id]
        if isinstance(event, Site.UserInstallsBlocked | Site.UserInstallsAllowed):
            state = "blocked" if isinstance(event, Site.UserInstallsBlocked) else "allowed"
            site.policy = SitePolicy(
                site.policy.site_id,
                site.policy.org_id,
                site.policy.name,
                state,
                event.policy_version,
                event.timestamp,
                event.actor,
                event.reason,
            )
        elif isinstance(event, Site.AppRemoved):
            site.epochs[event.app_id] = event.removal_epoch
            site.grants = {k: g for k, g in site.grants.items() if k[0] != event.app_id}
        elif isinstance(event, Grant.AppUninstalled):
            site.grants.pop((event.app_id, event.account_id), None)
        elif isinstance(event, Grant.AppInstalled):
            if event.removal_epoch < site.epochs.get(event.app_id, 0):
                continue  # decided before a removal that revoked it
            key = (event.app_id, event.account_id)
            before = site.grants.get(key)
            site.grants[key] = _Grant(
                event.installed_by,
                event.scopes,
                before.first_at if before else event.timestamp,
                event.timestamp,
                event.app_name,
                position,
            )
    return sites


def apps_of(site: _Site) -> list[ConnectedApp]:
    by_app: dict[str, list[_Grant]] = {}
    for (app_id, _), grant in site.grants.items():
        by_app.setdefault(app_id, []).append(grant)
    apps = [
        ConnectedApp(
            app_id=app_id,
            app_name=max(grants, key=lambda g: g.position).app_name,
            installed_by="Admins" if any(g.installed_by == "admin" for g in grants) else "Users",
            user_count=len(grants),
            scopes=sorted({scope for g in grants for scope in g.scopes}),
            installed_at=min(g.first_at for g in grants),
            last_installed_at=max(g.valid_from for g in grants),
        )
        for app_id, grants in by_app.items()
    ]
    return sorted(apps, key=lambda app: (app.app_name, app.app_id))


def moments(events: list[tuple[int, Any]], rng: random.Random, count: int) -> list[datetime]:
    """Exactly at events, a microsecond either side, and anywhere between first and last."""
    times = [event.timestamp for _, event in events]
    tick = timedelta(microseconds=1)
    chosen = [times[0] - tick, times[-1] + timedelta(seconds=1)]
    for _ in range(count):
        at = rng.choice(times)
        chosen.append(rng.choice([at - tick, at, at + tick]))
        chosen.append(times[0] + (times[-1] - times[0]) * rng.random())
    return chosen


def test_as_of_answers_equal_a_brute_force_replay(runtime: Runtime) -> None:
    rng = random.Random(20260131)  # noqa: S311 - a reproducible scenario, not a secret
    random_history(runtime, rng, commands=160)
    app = runtime.application
    assert runtime.projector.wait_for(app.head_position(), 10)
    stored = app.recorder.select_notifications(start=1, limit=10_000)
    events: list[tuple[int, Any]] = [(n.id, app.mapper.to_domain_event(n)) for n in stored]
    kinds = {type(event).__name__ for _, event in events}
    assert {"AppRemoved", "AppUninstalled", "InstallBlocked", "UserInstallsBlocked"} <= kinds
    checked = 0
    with runtime.views.read() as tx:
        for moment in moments(events, rng, count=150):
            expected = brute_force(events, moment)
            for site_id in SITES:
                site = expected.get(site_id)
                assert get_policy_as_of(tx, site_id, moment) == (site.policy if site else None)
                apps = list(connected_apps_as_of(tx, site_id, moment))
                assert apps == (apps_of(site) if site else []), (site_id, moment)
                checked += bool(apps)
    assert checked > 100  # most moments had apps connected: the comparison had substance

    # The CLI asks the same questions.
    moment = events[len(events) // 2][1].timestamp
    code, output = run_cli(
        runtime.settings, "history", "--site", "s1", "--as-of", moment.isoformat(), "--json"
    )
    assert code == 0, output
    shown = json.loads(output)
    site = brute_force(events, moment)["s1"]
    assert (shown["policy"]["user_installs"], shown["policy"]["version"]) == (
        site.policy.user_installs,
        site.policy.version,
    )
    assert [(a["app_id"], a["user_count"], a["scopes"]) for a in shown["apps"]] == [
        (a.app_id, a.user_count, a.scopes) for a in apps_of(site)
    ]
    code, output = run_cli(runtime.settings, "history", "--site", "s1")
    assert code == 0 and output.startswith("site s1 ('S1', org acme), now")
    code, output = run_cli(
        runtime.settings, "history", "--site", "s1", "--as-of", "2000-01-01T00:00:00Z"
    )
    assert code == 1 and "at that time" in output
