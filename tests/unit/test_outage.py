"""The breaker and the wait-and-resume loop, with a probe that fails on demand."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from governance.outage import Breaker, DatabaseUnavailable, wait_for_database


class Server:
    """Stands in for the database server's answer to the breaker's probe."""

    def __init__(self) -> None:
        self.up = True
        self.probes = 0

    def probe(self) -> None:
        self.probes += 1
        if not self.up:
            raise psycopg.OperationalError("connection refused")


def test_a_connection_error_opens_the_breaker_only_when_the_server_is_away() -> None:
    server = Server()
    breaker = Breaker(server.probe, probe_interval=0.05, retry_after=2)
    # One broken connection while the server answers: the caller's own retry handles it.
    assert breaker.failed(OperationalError("server closed the connection")) is False
    assert not breaker.is_open
    assert breaker.failed(IntegrityError("duplicate")) is False
    server.up = False
    assert breaker.failed(OperationalError("server closed the connection")) is True
    assert breaker.is_open
    with pytest.raises(DatabaseUnavailable) as refused:
        breaker.check()
    assert refused.value.retry_after == 2


def test_while_open_calls_fail_at_once_and_probes_are_spaced() -> None:
    server = Server()
    server.up = False
    recovered = threading.Event()
    breaker = Breaker(server.probe, probe_interval=0.2)
    breaker.on_recovery(recovered.set)
    assert breaker.failed(OperationalError("x"))
    probes = server.probes
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(DatabaseUnavailable):
            breaker.check()
    assert time.monotonic() - started < 0.2
    assert server.probes == probes  # no probe before the interval has passed
    server.up = True
    time.sleep(0.25)
    breaker.check()  # this caller probes, finds the server back, and goes ahead
    assert not breaker.is_open and recovered.is_set()


def test_guard_turns_an_outage_into_database_unavailable() -> None:
    server = Server()
    breaker = Breaker(server.probe)
    server.up = False
    with pytest.raises(DatabaseUnavailable), breaker.guard():
        raise psycopg.OperationalError("connection refused")
    server.up = True
    breaker = Breaker(server.probe)
    with pytest.raises(psycopg.OperationalError), breaker.guard():
        raise psycopg.OperationalError("one stale connection")


def test_wait_for_database_pauses_and_resumes() -> None:
    attempts: list[float] = []

    def step() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise DatabaseUnavailable(1.0)
        return "done"

    assert wait_for_database(step, threading.Event(), what="relay") == "done"
    assert len(attempts) == 4
    assert attempts[-1] - attempts[0] >= 0.1 + 0.2 + 0.4 - 0.05  # backing off


def test_wait_for_database_gives_up_when_asked_to_stop() -> None:
    stop = threading.Event()

    def step() -> None:
        stop.set()
        raise OperationalError("down")

    assert wait_for_database(step, stop, what="consumer") is None
