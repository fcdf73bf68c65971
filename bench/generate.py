"""Writes a realistic event log with the real domain, recorder and hash chain, fast.

Sites are registered across orgs; then users and admins install apps (with scopes), users are
refused while a site blocks user installs, users revoke their own grants, admins remove apps for
everyone, approve apps for users and switch the policy. Commands go through the aggregates
exactly as the application runs them; only the saving is batched (many aggregates per `save`)
so a million events take minutes, not hours.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from governance.application import GovernanceApplication
from governance.domain.actor import Actor
from governance.domain.consent import decide_install
from governance.domain.grant import Grant, InstalledBy, InstallRequest
from governance.domain.site import ExistingUserInstalls, Site, UserInstalls

APPS = [f"app-{i:03d}" for i in range(60)]
SCOPES = ["read", "write", "admin", "offline", "email", "profile"]
REASONS = ["security review", "vendor audit", None, "incident 42", "quarterly check"]


@dataclass
class _SiteState:
    site: Site
    installed: list[tuple[str, str]] = field(default_factory=list)  # (app, account), may be stale


class Generator:
    def __init__(self, app: GovernanceApplication, seed: int = 7, sites: int = 1000) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.sites_wanted = sites
        self.sites: list[_SiteState] = []
        self.grants: dict[tuple[str, str, str], Grant] = {}
        self.dirty: dict[Any, Site | Grant] = {}
        self.written = 0
        self.pending = 0

    def run(self, total: int, chunk: int = 2000) -> int:
        for i in range(min(self.sites_wanted, total)):
            org = f"org-{i % 20:02d}"
            site = Site.register(org, f"site-{i:05d}", f"Site {i}", Actor(f"{org}-admin"))
            self.sites.append(_SiteState(site))
            self._touch(site)
        while self.written + self.pending < total:
            self._step()
            if self.pending >= chunk:
                self._flush()
        self._flush()
        return self.written

    def _touch(self, aggregate: Site | Grant) -> None:
        # Every command writes one event; an aggregate may be touched twice in one chunk.
        self.dirty[aggregate.id] = aggregate
        self.pending += 1

    def _flush(self) -> None:
        if self.dirty:
            recordings = self.app.save(*self.dirty.values())
            self.written += len(recordings)
            self.dirty.clear()
            self.pending = 0

    def _step(self) -> None:
        state = self.rng.choice(self.sites)
        roll = self.rng.random()
        admin = Actor(f"{state.site.org_id}-admin", request_id=f"r{self.rng.getrandbits(40):x}")
        blocked = state.site.user_installs is UserInstalls.BLOCKED
        if roll < (0.05 if blocked else 0.005):
            self._switch_policy(state, admin)
        elif roll < 0.012:  # an admin approves an app for users (the app lists)
            app_id = self.rng.choice(APPS)
            scopes = sorted(self.rng.sample(SCOPES, 2))
            if state.site.approve_app(app_id, app_id.title(), scopes, admin, reason="vetted"):
                self._touch(state.site)
        elif roll < 0.014:
            if state.site.clear_app_listing(self.rng.choice(APPS), admin, reason="review"):
                self._touch(state.site)
        elif roll < 0.04 and state.installed:
            app_id, _ = self.rng.choice(state.installed)
            state.site.remove_app(app_id, admin, reason=self.rng.choice(REASONS))
            state.installed = [(a, u) for a, u in state.installed if a != app_id]
            self._touch(state.site)
        elif roll < 0.14 and state.installed:
            self._uninstall(state)
        else:
            self._install(state, admin)

    def _switch_policy(self, state: _SiteState, admin: Actor) -> None:
        site = state.site
        target = (
            UserInstalls.ALLOWED
            if site.user_installs is UserInstalls.BLOCKED
            else UserInstalls.BLOCKED
        )
        site.set_user_installs(
            target,
            admin,
            reason=self.rng.choice(REASONS),
            existing_user_installs=ExistingUserInstalls.KEEP,
        )
        self._touch(site)

    def _uninstall(self, state: _SiteState) -> None:
        index = self.rng.randrange(len(state.installed))
        app_id, account = state.installed.pop(index)
        grant = self.grants.get((state.site.site_id, app_id, account))
        epoch = state.site.removal_epoch(app_id)
        if grant is not None and grant.is_active(epoch):
            grant.uninstall(
                state.site.org_id, state.site.site_id, app_id, Actor(account), removal_epoch=epoch
            )
            self._touch(grant)

    def _install(self, state: _SiteState, admin: Actor) -> None:
        site = state.site
        as_admin = self.rng.random() < 0.1
        account = admin.account_id if as_admin else f"user-{self.rng.randrange(40):02d}"
        role = InstalledBy.ADMIN if as_admin else InstalledBy.USER
        app_id = self.rng.choice(APPS)
        scopes = sorted(self.rng.sample(SCOPES, self.rng.randint(1, 3)))
        key = (site.site_id, app_id, account)
        grant = self.grants.get(key)
        if grant is None:
            grant = self.grants[key] = Grant.open(*key, datetime.now(UTC))
        epoch = site.removal_epoch(app_id)
        verdict = decide_install(site, grant, role, app_id, scopes, None)
        request = InstallRequest(
            site.org_id,
            site.site_id,
            app_id,
            app_id.replace("-", " ").title(),
            scopes,
            site.policy_version,
        )
        by = Actor(account, request_id=f"r{self.rng.getrandbits(40):x}")
        if verdict.allowed:
            if grant.install(request, by, installed_by=role, removal_epoch=epoch):
                state.installed.append((app_id, account))
                self._touch(grant)
        elif not grant.covers(scopes, epoch):
            grant.refuse(request, by, refusal=str(verdict.reason))
            self._touch(grant)


def generate(app: GovernanceApplication, total: int, seed: int = 7) -> tuple[int, float]:
    """Write about `total` events; return how many and the seconds it took."""
    started = time.perf_counter()
    written = Generator(app, seed=seed, sites=max(10, min(2000, total // 500))).run(total)
    return written, time.perf_counter() - started
