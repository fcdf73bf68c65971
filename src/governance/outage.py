"""Fail fast while the database is away, and resume by itself when it is back.

Without this, a request made while PostgreSQL is down waits for a pooled connection (the pool's
timeout) and the event store library retries that ten times: about 50 s before an error. A
`Breaker` per database server changes that. The first connection error triggers a direct probe
(a fresh connection with a 1 s timeout); when the server does not answer, the breaker opens and
every use of the database raises `DatabaseUnavailable` at once, which the API answers with 503
and Retry-After. While open, one caller at a time probes again (every `probe_interval`); the
first probe that succeeds closes the breaker and traffic flows again, with no restart.

Long-running workers (projector, relay, Kafka consumers) use the same breaker through the stores
and wait with `wait_for_database`, so they pause and resume instead of spinning or dying.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError
from eventsourcing.postgres import PostgresDatastore

from governance.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Connection-level failures: the server is away or the connection broke (not a bad statement).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class DatabaseUnavailable(PersistenceError):
    """The database does not answer now. Not an OperationalError, so no library retries it."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("the database is not reachable right now")
        self.retry_after = retry_after


class Breaker:
    """Whether one database server is reachable, shared by everything in a process that uses it."""

    def __init__(
        self,
        probe: Callable[[], None],
        *,
        probe_interval: float = 0.5,
        retry_after: float = 1.0,
        name: str = "database",
    ) -> None:
        self._probe = probe
        self._interval = probe_interval
        self.retry_after = retry_after
        self._name = name
        self._lock = threading.Lock()
        self._open = False
        self._next_probe = 0.0
        self._on_recovery: list[Callable[[], None]] = []

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the server answers again (e.g. to drop dead pooled connections)."""
        self._on_recovery.append(callback)

    @property
    def is_open(self) -> bool:
        return self._open

    def check(self) -> None:
        """Raise DatabaseUnavailable while the server is known to be down (probing now and then)."""
        if not self._open:
            return
        if not self._lock.acquire(blocking=False):
            raise DatabaseUnavailable(self.retry_after)  # another caller is probing
        try:
            if time.monotonic() < self._next_probe:
                raise DatabaseUnavailable(self.retry_after)
            if not self._answers():
                raise DatabaseUnavailable(self.retry_after)
        finally:
            self._lock.release()

    def failed(self, error: BaseException) -> bool:
        """After a connection error: True (and open) when the server is really away.

        False means the server answers: the error was one broken connection, which the caller's
        own retry (e.g. the event store library's) handles with a fresh one.
        """
        if not isinstance(error, CONNECTION_ERRORS):
            return False
        if self._open:
            return True
        with self._lock:
            return self._open or not self._answers()

    def _answers(self) -> bool:
        # Called with the lock held: one probe at a time.
        try:
            self._probe()
        except (psycopg.Error, OSError) as error:
            if not self._open:
                log.warning("%s unreachable, answering 503 until it is back: %s", self._name, error)
            self._open = True
            self._next_probe = time.monotonic() + self._interval
            return False
        if self._open:
            log.warning("%s reachable again", self._name)
            # Pooled connections from before the outage are dead: drop them before use, or the
            # next requests would each meet one (and the library retry on them in turn).
            for callback in self._on_recovery:
                callback()
        self._open = False
        return True

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run a block of database work: fail at once while down, open on a real outage."""
        self.check()
        try:
            yield
        except CONNECTION_ERRORS as error:
            if self.failed(error):
                raise DatabaseUnavailable(self.retry_after) from error
            raise


def database_breaker(settings: Settings) -> Breaker | None:
    """The breaker for the configured PostgreSQL server (None on the embedded default).

    One per process and server: every store of the process that uses the server shares it.
    """
    if settings.database_url is None:
        return None
    pg = settings.postgres
    return Breaker(
        postgres_probe(settings.database_url),
        retry_after=settings.database_retry_after_seconds,
        name=f"PostgreSQL at {pg.host}:{pg.port}/{pg.dbname}",
    )


def postgres_probe(conninfo: str, timeout: int = 1) -> Callable[[], None]:
    """A fresh connection and `SELECT 1`: not the pool, whose waits are what we avoid."""

    def probe() -> None:
        with psycopg.connect(conninfo, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")

    return probe


def guard_event_store(recorder: object, breaker: Breaker, reconnect_timeout: float = 0.5) -> None:
    """Route the event store library's PostgreSQL connections through the breaker.

    The library's recorders retry OperationalError ten times, each waiting for the pool; a
    `DatabaseUnavailable` raised here is not retried, so a request fails in milliseconds. The
    library does not expose its pool's reconnect timeout: it is shortened here, so the first
    request after an outage connects at once rather than waiting for a far-off retry.
    """
    datastore = getattr(recorder, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        return
    datastore.pool.reconnect_timeout = reconnect_timeout
    breaker.on_recovery(datastore.pool.drain)
    plain: Callable[[], AbstractContextManager[Any]] = datastore.get_connection

    @contextmanager
    def get_connection() -> Iterator[Any]:
        with breaker.guard(), plain() as conn:
            yield conn

    datastore.get_connection = get_connection  # type: ignore[method-assign]


OUTAGE_ERRORS: tuple[type[Exception], ...] = (DatabaseUnavailable, *CONNECTION_ERRORS)


def wait_for_database(
    work: Callable[[], T], stop: threading.Event, *, what: str, longest_wait: float = 5.0
) -> T | None:
    """Run `work`, waiting and retrying while the database is away; None once `stop` is set.

    For loops that must outlast an outage (relay, consumers): they pause and resume by
    themselves, and never apply a half-done step because each step is one transaction.
    """
    wait = 0.1
    while not stop.is_set():
        try:
            return work()
        except OUTAGE_ERRORS as error:
            log.warning("%s paused, the database is away: %s", what, error)
            stop.wait(wait)
            wait = min(wait * 2, longest_wait)
    return None
