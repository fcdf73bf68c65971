"""`governance replay` rebuilds every read model into a new generation and switches to it."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
import zlib

import psycopg
from fastapi.testclient import TestClient

from governance.auth import Role
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.site import UserInstalls
from governance.runtime import Runtime, view_generations
from projections.generations import GenerationalViewStore, PostgresGenerations, SQLiteGenerations
from tests.conftest import Tokens
from tests.integration.audit_support import random_history, run_cli, write_some_events
from tests.integration.test_installs_api import dump_views


def caught_up(runtime: Runtime) -> None:
    assert runtime.projector.wait_for(runtime.application.head_position(), 10)


def test_a_replay_equals_the_views_built_event_by_event_and_is_served_after_the_switch(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    random_history(runtime, random.Random(7), commands=150)  # noqa: S311 - a fixed scenario
    caught_up(runtime)
    before = dump_views(runtime)
    auditor = tokens.header("audrey", Role.AUDITOR)
    trail = client.get("/v1/audit/events", params={"limit": 1000}, headers=auditor).json()
    assert runtime.views.generation == 1
    # A process that has not looked at the pointer since keeps serving what it has.
    slow = GenerationalViewStore(view_generations(runtime.settings), interval=3600)
    assert slow.current() is not None and slow.generation == 1

    code, output = run_cli(runtime.settings, "replay")
    assert code == 0, output
    assert "generation 2 is live" in output and "events/s" in output
    assert slow.generation == 1
    with slow.read() as tx:  # the previous generation is kept, whole, until the next replay
        assert len(tx.all("SELECT position FROM timeline")) == len(before["timeline"])
    assert slow.refresh() is not None and slow.generation == 2
    slow.close()
    # This process looks at the pointer at most once per interval (1 s).
    time.sleep(runtime.views.interval)
    assert client.get("/v1/audit/events", params={"limit": 1000}, headers=auditor).json() == trail
    assert runtime.views.generation == 2
    assert dump_views(runtime) == before
    # The projector writes into the new generation from where the replay left it.
    write_some_events(runtime.application, "s9")
    caught_up(runtime)
    assert len(dump_views(runtime)["timeline"]) == len(before["timeline"]) + 8
    # The previous generation stays until the next replay, which drops it.
    generations = runtime.views.generations
    assert generations.existing() == [1, 2]
    assert run_cli(runtime.settings, "replay")[0] == 0
    assert generations.existing() == [2, 3] and generations.pointer() == (3, 2)


def test_events_written_during_a_replay_are_in_the_new_generation(runtime: Runtime) -> None:
    app = runtime.application
    write_some_events(app, "s1")
    written: list[int] = []

    def meanwhile(position: int, head: int) -> None:
        if not written:  # once, while the bulk phase runs: a user installs something
            outcome = app.install_app("s1", "late", "Late", [], Actor("zoe"), InstalledBy.USER)
            written.append(outcome.position)

    rebuilder = runtime.rebuilder(progress=meanwhile)
    generation = rebuilder.replay()
    runtime.views.refresh()
    assert runtime.views.generation == generation == 2
    with runtime.views.read() as tx:
        rows = tx.all("SELECT position, actor FROM timeline ORDER BY position")
        positions = {
            row["name"]: row["position"] for row in tx.all("SELECT * FROM projection_tracking")
        }
    assert rows[-1] == {"position": written[0], "actor": "zoe"}
    assert set(positions.values()) == {written[0]}
    assert rebuilder.check().clean


def test_check_prints_how_the_live_views_differ_from_a_rebuild(runtime: Runtime) -> None:
    random_history(runtime, random.Random(11), commands=60)  # noqa: S311 - a fixed scenario
    caught_up(runtime)
    code, output = run_cli(runtime.settings, "replay", "--check")
    assert code == 0 and "no difference" in output, output
    with runtime.views.transaction() as tx:
        tx.execute("UPDATE site_apps SET user_installs = user_installs + 5 WHERE app_id = 'wiki'")
        tx.execute("DELETE FROM timeline WHERE position = 3")
    code, output = run_cli(runtime.settings, "replay", "--check")
    assert code == 1
    assert "site_apps: 2 rows only in the live views, 2 only in the rebuild" in output
    assert "timeline: 0 rows only in the live views, 1 only in the rebuild" in output
    assert "only in rebuild: {'position': 3," in output
    # A check builds scratch tables and leaves nothing behind.
    assert runtime.views.generations.existing() == [1]


def test_worker_processes_build_the_same_generation(runtime: Runtime) -> None:
    random_history(runtime, random.Random(3), commands=120)  # noqa: S311 - a fixed scenario
    sites = ["north", "south", "east", "west", "harbor", "valley"]
    for site in sites:
        write_some_events(runtime.application, site)
    # The sites fall into different workers' shares (a stable hash of the site id).
    assert len({zlib.crc32(site.encode()) % 3 for site in [*sites, "s1", "s2"]}) == 3
    # A reason with a control character is stored escaped: decoded by the library's mapper.
    runtime.application.set_user_installs(
        "north", UserInstalls.BLOCKED, Actor("olga"), reason="bell\x07 and ünïcode"
    )
    caught_up(runtime)
    before = dump_views(runtime)
    rebuilder = runtime.rebuilder()
    rebuilder.workers, rebuilder.parallel_from = 3, 0  # as on a large log, on a small one
    reached: list[int] = []
    rebuilder.progress = lambda position, head: reached.append(position)
    assert rebuilder.replay() == 2
    assert rebuilder.workers_cpu > 0  # the workers' own report (forked, not our children)
    runtime.views.refresh()
    assert dump_views(runtime) == before
    assert reached[-1] == runtime.application.head_position()
    assert runtime.views.generations.existing() == [1, 2]  # no worker's part left behind
    assert rebuilder.check().clean
    # Keys and indexes built after the load are those the projections declare.
    assert indexes(runtime, 2) == indexes(runtime, 1)


def indexes(runtime: Runtime, generation: int) -> list[str]:
    """Every index of a generation, as its definition without the schema's name."""
    generations = runtime.views.generations
    if isinstance(generations, PostgresGenerations):
        schema = generations.schema_of(generation)
        with psycopg.connect(generations.url) as conn:
            found = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)
            ).fetchall()
        return sorted(str(d).replace(schema + ".", "") for (d,) in found)
    assert isinstance(generations, SQLiteGenerations)
    with contextlib.closing(sqlite3.connect(generations.path(generation))) as conn:
        found = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
    return sorted(f"{name}: {ddl}" for name, ddl in found)
