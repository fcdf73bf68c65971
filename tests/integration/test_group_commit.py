"""Group commit on both backends: commands arriving together share one transaction.

To make "arriving together" certain, each test first holds the log's write lock from a
connection of its own (as a long transaction of another process would), lets the commands queue
up behind it, and then lets go: the first command's transaction waits for the lock, the others
wait for that transaction, and then commit together. Everything is asserted on what users see:
HTTP answers and positions, /metrics, the log, the hash chain, the read models.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from fastapi.testclient import TestClient
from psycopg import sql

from governance.application import GovernanceApplication
from governance.audit.verify import chain_store, verify
from governance.auth import Role
from governance.config import Settings
from governance.eventstore import EVENTS_TABLE, event_store_env, sqlite_events_path
from governance.groupcommit import GroupCommitter
from governance.runtime import Runtime
from tests.conftest import Tokens
from tests.views import dump_store, replayed_views

Outcome = Any  # what a thread's call returned, or the exception it raised


@contextmanager
def log_held(settings: Settings) -> Iterator[None]:
    """Hold the event log's write lock from another connection until the block ends."""
    if settings.database_url is not None:
        with psycopg.connect(settings.database_url) as conn:
            conn.execute(
                sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                    sql.Identifier(settings.database_schema), sql.Identifier(EVENTS_TABLE)
                )
            )
            yield
            conn.rollback()
        return
    embedded = sqlite3.connect(sqlite_events_path(settings), isolation_level=None)
    try:
        embedded.execute("BEGIN IMMEDIATE")
        yield
        embedded.rollback()
    finally:
        embedded.close()


def together(
    settings: Settings, committer: GroupCommitter, calls: Sequence[Callable[[], Any]]
) -> list[Outcome]:
    """Run `calls` in threads while the log is held; let go once all but one are queued.

    The first call leads: it waits for the lock in a transaction of its own, and the others
    queue behind it, in the order they arrive, for the next transaction.
    """
    outcomes: list[Outcome] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            outcomes[index] = calls[index]()
        except Exception as exc:  # noqa: BLE001 - the test looks at each one
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    deadline = time.monotonic() + 4  # the store's lock timeout is 5 s

    def wait_until(condition: Callable[[], bool]) -> None:
        while not condition():
            assert time.monotonic() < deadline, f"{committer.waiting} saves queued"
            time.sleep(0.005)

    with log_held(settings):
        threads[0].start()
        wait_until(lambda: committer.committing)
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: committer.waiting == len(calls) - 1)
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def committer_of(app: GovernanceApplication) -> GroupCommitter:
    committer = getattr(app.recorder, "committer", None)
    assert isinstance(committer, GroupCommitter)
    return committer


def histogram(metrics: str, name: str) -> dict[str, float]:
    """Bucket bounds (and "sum", "count") of one histogram in a Prometheus exposition."""
    found = {}
    for bound, value in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M):
        found[bound] = float(value)
    for part in ("sum", "count"):
        match = re.search(rf"^{name}_{part} (\S+)$", metrics, re.M)
        assert match is not None, f"{name}_{part} is not on /metrics"
        found[part] = float(match.group(1))
    return found


def transactions_of(settings: Settings, positions: Sequence[int]) -> int:
    """How many PostgreSQL transactions wrote the events at `positions` (their xmin)."""
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(DISTINCT xmin::text) FROM {}.{} WHERE notification_id = ANY(%s)"
            ).format(sql.Identifier(settings.database_schema), sql.Identifier(EVENTS_TABLE)),
            (list(positions),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_installs_arriving_together_share_a_transaction_and_keep_their_positions(
    runtime: Runtime, client: TestClient, tokens: Tokens, tmp_path: Path
) -> None:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    assert client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin).is_success
    users = [f"user-{n}" for n in range(12)]

    def install(user: str) -> Callable[[], httpx2.Response]:
        body = {"app_id": "wiki", "app_name": "Wiki", "scopes": ["read"]}
        who = tokens.header(user, Role.USER, sites=("s1",))
        return lambda: client.post("/v1/sites/s1/installations", json=body, headers=who)

    answers = together(
        runtime.settings, committer_of(runtime.application), [install(u) for u in users]
    )

    assert [a.status_code for a in answers] == [201] * len(users)
    positions = [int(a.headers["X-Event-Position"]) for a in answers]
    assert len(set(positions)) == len(users)
    # Each caller got the position of its own event.
    logged = {
        n.id: runtime.application.mapper.to_domain_event(n)
        for n in runtime.application.recorder.select_notifications(min(positions), 100)
    }
    assert [logged[p].account_id for p in positions] == users  # type: ignore[attr-defined]
    # The first one committed alone, the eleven queued behind it together.
    batches = histogram(client.get("/metrics").text, "governance_commit_batch_size")
    assert batches["16.0"] - batches["8.0"] == 1, batches
    if runtime.settings.uses_postgres:
        assert transactions_of(runtime.settings, positions) == 2

    # Tailing readers saw every event exactly once: the views equal a replay from zero.
    apps = client.get(
        "/v1/sites/s1/connected-apps",
        params={"min_position": str(max(positions))},
        headers=tokens.header("audrey", Role.AUDITOR),
    ).json()["apps"]
    assert [(a["app_id"], a["user_count"]) for a in apps] == [("wiki", len(users))]
    replayed = replayed_views(
        runtime.application.recorder, runtime.application.mapper, tmp_path / "replay.sqlite"
    )
    assert dump_store(runtime.views) == replayed
    assert verify(chain_store(runtime.settings)).problem is None


def test_a_stale_policy_change_fails_alone_in_a_shared_transaction(
    runtime: Runtime, client: TestClient, tokens: Tokens
) -> None:
    admin = tokens.header("olga", Role.ORG_ADMIN)
    assert client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin).is_success

    def block(n: int) -> Callable[[], httpx2.Response]:
        body = {"state": "blocked", "reason": f"review {n}"}
        who = {**admin, "If-Match": '"1"'}
        return lambda: client.put("/v1/sites/s1/policy/user-installs", json=body, headers=who)

    def install(n: int) -> Callable[[], httpx2.Response]:
        body = {"app_id": f"app-{n}", "app_name": "App", "scopes": ["read"]}
        who = tokens.header(f"user-{n}", Role.USER, sites=("s1",))
        return lambda: client.post("/v1/sites/s1/installations", json=body, headers=who)

    calls = [block(n) for n in range(4)] + [install(n) for n in range(6)]
    answers = together(runtime.settings, committer_of(runtime.application), calls)

    policy_answers = sorted(a.status_code for a in answers[:4])
    assert policy_answers == [200, 412, 412, 412], [a.text for a in answers[:4]]
    for stale in (a for a in answers[:4] if a.status_code == 412):
        assert stale.json()["error"]["code"] == "stale_policy_version"
    assert [a.status_code for a in answers[4:]] == [201] * 6
    positions = {int(a.headers["X-Event-Position"]) for a in answers if a.status_code < 300}
    assert len(positions) == 7
    policy = client.get(
        "/v1/sites/s1/policy", params={"min_position": str(max(positions))}, headers=admin
    )
    assert (policy.json()["user_installs"], policy.json()["version"]) == ("blocked", 2)
    assert verify(chain_store(runtime.settings)).problem is None


def new_event(originator_id: uuid.UUID | str | None = None, version: int = 1) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id or uuid.uuid4(),
        originator_version=version,
        topic="tests.integration.test_group_commit:Probe",
        state=b'{"probe": true}',
    )


@pytest.fixture
def application(settings: Settings) -> Iterator[GovernanceApplication]:
    """The event store alone (no projector: the probes below are not domain events)."""
    app = GovernanceApplication(env=event_store_env(settings, create_table=False))
    yield app
    app.close()


def stored_keys(app: GovernanceApplication) -> list[tuple[uuid.UUID, int]]:
    return [
        (uuid.UUID(str(n.originator_id)), n.originator_version)
        for n in app.recorder.select_notifications(1, 1000)
    ]


def test_a_version_conflict_fails_only_its_own_save(
    settings: Settings, application: GovernanceApplication
) -> None:
    recorder = application.recorder
    earlier = new_event()
    recorder.insert_events([earlier])
    contested = uuid.uuid4()
    saves = [
        [new_event(), new_event(version=1)],
        [new_event(contested)],
        [new_event(earlier.originator_id, 1)],  # stored already
        [new_event()],
        [new_event(contested)],  # taken by an earlier save of the same batch
        [new_event(), new_event()],
    ]
    outcomes = together(
        settings,
        committer_of(application),
        [partial(recorder.insert_events, events) for events in saves],
    )

    failed = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    # The stored key, and whichever of the two contested saves came second, failed alone.
    assert 2 in failed and len(failed) == 2 and failed[1] in (1, 4), outcomes
    assert all(isinstance(outcomes[i], IntegrityError) for i in failed)
    committed = [i for i in range(len(saves)) if i not in failed]
    for i in committed:
        assert len(outcomes[i]) == len(saves[i])
    keys = {(e.originator_id, e.originator_version) for i in committed for e in saves[i]}
    assert set(stored_keys(application)) == keys | {(earlier.originator_id, 1)}
    # Each save got its own positions, in the order of its events.
    by_position = {n.id: n for n in recorder.select_notifications(1, 1000)}
    for i in committed:
        found = [
            (by_position[p].originator_id, by_position[p].originator_version) for p in outcomes[i]
        ]
        assert [uuid.UUID(str(oid)) for oid, _ in found] == [e.originator_id for e in saves[i]]
    assert verify(chain_store(settings)).problem is None


def poison_seals_of(settings: Settings, chain: str, poisoned: uuid.UUID) -> None:
    """A fault inside the database: sealing the poisoned aggregate's event raises an error."""
    if settings.database_url is not None:
        schema = sql.Identifier(settings.database_schema)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION {}.poison() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$"
                ).format(schema)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER poison BEFORE INSERT ON {}.{} FOR EACH ROW"
                    " WHEN (NEW.originator_id = {}) EXECUTE FUNCTION {}.poison()"
                ).format(schema, sql.Identifier(chain), sql.Literal(str(poisoned)), schema)
            )
        return
    with sqlite3.connect(sqlite_events_path(settings)) as conn:
        conn.execute(
            f"CREATE TRIGGER poison BEFORE INSERT ON {chain}"
            f" WHEN NEW.originator_id = '{poisoned}'"
            " BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
        )


def test_a_batch_the_database_fails_is_not_half_written(
    settings: Settings, application: GovernanceApplication
) -> None:
    recorder = application.recorder
    before = recorder.max_notification_id() or 0
    poisoned = uuid.uuid4()
    poison_seals_of(settings, recorder.chain_table_name, poisoned)  # type: ignore[attr-defined]
    saves = [[new_event(), new_event()] for _ in range(3)]
    saves.insert(2, [new_event(poisoned)])
    saves += [[new_event()] for _ in range(3)]

    outcomes = together(
        settings,
        committer_of(application),
        [partial(recorder.insert_events, events) for events in saves],
    )

    # The shared transaction failed while sealing (after its events were inserted) and rolled
    # back whole; each save was then committed alone, so only the poisoned one failed.
    assert isinstance(outcomes[2], PersistenceError)
    assert "the disk is full" in str(outcomes[2])
    committed = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(isinstance(o, list | tuple) for o in committed), outcomes
    keys = {
        (e.originator_id, e.originator_version) for i, s in enumerate(saves) if i != 2 for e in s
    }
    assert sorted(stored_keys(application)) == sorted(keys)  # each once, the poisoned not at all
    assert verify(chain_store(settings)).problem is None
    if settings.uses_postgres:
        # The first attempt took (and gave back) positions: the log's ids show the rolled-back
        # transaction; the saves of the first batch (all but the leader's) came after it.
        queued = [p for o in committed[1:] for p in o]
        assert min(queued) > before + sum(len(s) for s in saves)


def test_a_reader_tailing_the_log_during_group_commits_misses_nothing(
    settings: Settings, application: GovernanceApplication
) -> None:
    """Positions become visible in order: a reader that only asks for what follows the last
    position it saw, while eight writers commit in batches, ends up with every event."""
    recorder = application.recorder
    writing = threading.Event()
    writing.set()
    seen: list[int] = []

    def tail() -> None:
        while True:
            still_writing = writing.is_set()
            after = seen[-1] if seen else 0
            seen.extend(n.id for n in recorder.select_notifications(after + 1, 500))
            if not still_writing and not recorder.select_notifications(seen[-1] + 1, 1):
                return

    def write(_: int) -> None:
        for _ in range(40):
            recorder.insert_events([new_event(), new_event()])

    reader = threading.Thread(target=tail)
    reader.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    reader.join(timeout=30)

    stored = [n.id for n in recorder.select_notifications(1, 10_000)]
    assert len(stored) == 8 * 40 * 2
    assert seen == stored
    assert verify(chain_store(settings)).problem is None
