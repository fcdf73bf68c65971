"""The batched projector: exactly once across crashes and competing instances, on both stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.site import Site, UserInstalls
from governance.runtime import Runtime, all_projections
from projections.base import Projection
from projections.projector import Projector
from projections.store import Tx
from tests.integration.test_installs_api import VIEW_TABLES, dump_views


class Crash(Exception):
    pass


class CrashOnBlock(Projection):
    """A read model whose handler fails on the first block, like a bug or a lost connection."""

    name = "crash_on_block"
    tables = ()
    armed = True

    def apply(self, tx: Tx, event: object, position: int) -> None:
        if self.armed and isinstance(event, Site.UserInstallsBlocked):
            raise Crash(position)


def write_history(runtime: Runtime, sites: int = 3) -> None:
    app = runtime.application
    for n in range(sites):
        site = f"s{n}"
        app.register_site("acme", site, f"Site {n}", Actor("olga"))
        for user in ("ann", "ben"):
            app.install_app(site, "x", "X", ["read"], Actor(user), InstalledBy.USER)
        app.set_user_installs(site, UserInstalls.BLOCKED, Actor("olga"), reason="r")
        app.install_app(site, "y", "Y", [], Actor("ann"), InstalledBy.USER)


@pytest.fixture
def idle_runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime whose own projector does not run, so the tests drive projection themselves."""
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


def test_a_crash_mid_batch_rolls_back_and_a_restart_applies_each_event_once(
    idle_runtime: Runtime,
) -> None:
    runtime = idle_runtime
    # Compare against a projector that never crashed.
    write_history(runtime)
    runtime.projector.catch_up()
    expected = dump_views(runtime)

    rebuild_from_zero = Projector(
        runtime.application.recorder,
        runtime.application.mapper,
        runtime.views,
        [*all_projections(), CrashOnBlock()],
        batch_size=1000,
    )
    rebuild_from_zero.create_tables()
    with runtime.views.transaction() as tx:
        for table in VIEW_TABLES:
            tx.execute("DELETE FROM " + table)  # noqa: S608 - constant table names
        tx.execute("UPDATE projection_tracking SET position = 0")
    with pytest.raises(Crash):
        rebuild_from_zero.run_batch()
    # Nothing of the failed batch is visible: rows and positions rolled back together.
    assert set(rebuild_from_zero.positions().values()) == {0}
    assert all(rows == [] for rows in dump_views(runtime).values())

    CrashOnBlock.armed = False
    try:
        rebuild_from_zero.catch_up()
    finally:
        CrashOnBlock.armed = True
    assert dump_views(runtime) == expected


def test_competing_projectors_apply_each_event_once(idle_runtime: Runtime) -> None:
    runtime = idle_runtime
    write_history(runtime, sites=6)
    runtime.projector.catch_up()
    expected = dump_views(runtime)
    with runtime.views.transaction() as tx:
        for table in VIEW_TABLES:
            tx.execute("DELETE FROM " + table)  # noqa: S608 - constant table names
        tx.execute("UPDATE projection_tracking SET position = 0")
    rivals = [
        Projector(
            runtime.application.recorder,
            runtime.application.mapper,
            runtime.views,
            all_projections(),
            batch_size=3,
        )
        for _ in range(2)
    ]
    errors: list[BaseException] = []

    def race(projector: Projector) -> None:
        try:
            projector.catch_up()
        except BaseException as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=race, args=(p,)) for p in rivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert dump_views(runtime) == expected
