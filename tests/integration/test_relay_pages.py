"""The relay's pages written by a child process: the same messages, and a child that dies is
replaced, on both backends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from eventsourcing.persistence import PersistenceError

from governance.application import GovernanceApplication
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.site import UserInstalls
from governance.eventstore import event_store_env
from governance.relay.main import local_pages, open_pages
from governance.relay.pages import Batch, ChildPages
from governance.runtime import Runtime

LIMIT = 7  # events per page


@pytest.fixture
def logged(settings: Settings) -> Settings:
    """A log of 5 sites, each with a policy change and 4 installs: 5 x 6 events."""
    runtime = Runtime(settings)
    app = runtime.application
    try:
        for n in range(5):
            app.register_site("acme", f"s{n}", f"Site {n}", Actor("olga"))
            for user in range(4):
                by = Actor(f"u{user}")
                app.install_app(f"s{n}", "wiki", "Wiki", ["read"], by, InstalledBy.USER)
            app.set_user_installs(f"s{n}", UserInstalls.BLOCKED, Actor("olga"), reason="review")
    finally:
        runtime.close()
    return settings


def pages_here(settings: Settings, after: int) -> list[Batch]:
    application = GovernanceApplication(env=event_store_env(settings, create_table=False))
    try:
        return all_pages(local_pages(application, settings).read, after)
    finally:
        application.close()


def all_pages(read: object, after: int) -> list[Batch]:
    assert callable(read)
    pages = []
    while (page := read(after, LIMIT)) is not None:
        pages.append(page)
        after = page.last
    return pages


def test_the_child_writes_the_messages_this_process_would(logged: Settings) -> None:
    child = ChildPages(logged, open_pages, start_timeout=60)
    try:
        from_child = all_pages(child.read, 0)
        assert child.pid is not None and child.pid != os.getpid()
    finally:
        child.close()
    here = pages_here(logged, 0)
    assert [p.count for p in here] == [7, 7, 7, 7, 2]
    assert from_child == here  # topics, keys and value bytes, page by page
    policy = [m for p in here for m in p.messages if m.topic == logged.policy_topic]
    assert len(policy) == 10  # registered and blocked, per site


def test_a_child_that_died_fails_one_read_and_is_replaced(logged: Settings) -> None:
    child = ChildPages(logged, open_pages, start_timeout=60)
    try:
        first = child.read(0, LIMIT)
        assert first is not None
        dead = child.pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        with pytest.raises(PersistenceError, match="page reader is gone"):
            child.read(first.last, LIMIT)
        # The relay asks again after its backoff: a new child answers from the same position.
        assert all_pages(child.read, first.last) == pages_here(logged, first.last)
        assert child.pid not in (None, dead)
    finally:
        child.close()
    assert child.pid is None


def test_a_child_that_cannot_read_fails_the_read_with_the_reason(
    logged: Settings, tmp_path: Path
) -> None:
    if logged.uses_postgres:
        broken = logged.model_copy(update={"database_schema": "no_such_schema"})
    else:
        broken = logged.model_copy(update={"data_dir": tmp_path / "empty"})
    child = ChildPages(broken, open_pages, start_timeout=60)
    try:
        with pytest.raises(PersistenceError, match=r"no_such_schema|no such table"):
            child.read(0, LIMIT)
    finally:
        child.close()
