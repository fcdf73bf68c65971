"""The relay's policy snapshots come from sites folded in memory, as of each snapshot's event."""

from __future__ import annotations

from typing import Any

from governance.application import GovernanceApplication
from governance.domain.actor import Actor
from governance.domain.site import Site, UserInstalls
from governance.published import describe
from governance.relay.policy import SiteFolds, changes_policy, policy_snapshot


def logged(app: GovernanceApplication) -> list[tuple[int, Any]]:
    notifications = app.recorder.select_notifications(start=1, limit=100)
    return [(n.id, app.mapper.to_domain_event(n)) for n in notifications]


def snapshots(folds: SiteFolds, events: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for position, event in events:
        folds.follow(event)
        if changes_policy(event):
            out.append(policy_snapshot(folds.at(event), describe(position, event)))
    return out


def test_folded_snapshots_equal_the_repository_s_even_when_a_batch_is_read_twice() -> None:
    app = GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    olga = Actor("olga")
    site = Site.register("acme", "s1", "Site 1", olga)
    site.approve_app("app-1", "App 1", ["read"], olga)
    site.set_user_installs(UserInstalls.BLOCKED, olga, reason="audit")
    site.block_app("app-2", "App 2", olga)
    site.set_user_installs(UserInstalls.ALLOWED, olga)
    app.save(site)
    events = logged(app)
    expected = [
        policy_snapshot(
            app.repository.get(e.originator_id, version=e.originator_version), describe(p, e)
        )
        for p, e in events
        if changes_policy(e)
    ]
    folds = SiteFolds(app.repository, capacity=1)
    assert snapshots(folds, events) == expected
    # A batch sent again after a failure: the folds are ahead of it, the snapshots are not.
    assert snapshots(folds, events[2:]) == expected[2:]
    assert snapshots(SiteFolds(app.repository), events[3:]) == expected[3:]
