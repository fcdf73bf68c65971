"""Where the relay's pages come from: the log read after a position and written into messages,
either in the relay's own process or in a child process of their own.

Writing messages is most of the relay's own CPU (~12 µs per event, `bench/relay_throughput.py`),
and in the relay's process it holds the same interpreter lock as the Kafka producer, which needs
~25 µs per event of its own. In a child process the two run on two cores: the relay only sends.
The child keeps no state the relay depends on: it answers one position with the page after it,
and a page read again (after a failure) is written as it was the first time (`MessageWriter`).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from eventsourcing.persistence import PersistenceError

from governance.audit.seal import RawReader
from governance.config import Settings
from governance.eventstore import MAX_POSITION
from governance.relay.messages import Message, MessageWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    messages: list[Message]
    last: int  # the position of its last event
    count: int  # events (a policy change adds a snapshot message)
    full: bool  # as many events as asked for: more may follow at once


class Pages(Protocol):
    # Whether reading takes none of the relay's interpreter (another process does it): then the
    # next page is asked for before this one is sent.
    parallel: bool

    def start(self) -> None:
        """Be ready to read (at once, or raise as the event store does)."""

    def read(self, after: int, limit: int) -> Batch | None:
        """The page of the log after `after` (at most `limit` events) as messages; None when
        there is none yet."""

    def close(self) -> None: ...


class LocalPages:
    """Pages read and written in this process."""

    parallel = False

    def __init__(self, recorder: RawReader, writer: MessageWriter) -> None:
        self.recorder = recorder
        self.writer = writer

    def read(self, after: int, limit: int) -> Batch | None:
        rows = self.recorder.select_raw(after, limit, MAX_POSITION)
        if not rows:
            return None
        return Batch(list(self.writer(rows)), rows[-1][0], len(rows), len(rows) == limit)

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _Failed:
    """What the child answers when it could not read or write a page."""

    reason: str


# How the child makes its own pages from the settings it was given, and how it closes them: a
# module-level function (a spawned child finds it by name), `governance.relay.main.open_pages`.
PagesFactory = Callable[[Settings], tuple[LocalPages, Callable[[], None]]]


class ChildPages:
    """Pages read and written by a child process, one request at a time over a pipe.

    The child is spawned on first use (or by `start`) and again after it failed to start or
    died; meanwhile `read` fails like the event store does, and the relay's own backoff waits.
    The child ends when the relay closes the pipe, or dies (the pipe then reads as closed).
    """

    parallel = True

    def __init__(self, settings: Settings, factory: PagesFactory, start_timeout: float) -> None:
        self._settings = settings
        self._factory = factory
        self._start_timeout = start_timeout
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self.cpu_seconds = 0.0  # the child's CPU time, as of its last answer

    def start(self) -> None:
        """Spawn the child unless it runs; return once it is ready to read."""
        if self._pipe is not None:
            return
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(self._settings, self._factory, theirs),
            name="governance-relay-pages",
            daemon=True,  # ended with the relay
        )
        process.start()
        theirs.close()  # the child's end: ours reads as closed once the child is gone
        self._process, self._pipe = process, ours
        try:
            if not ours.poll(self._start_timeout):
                raise PersistenceError("the relay's page reader did not start in time")
            self._answer()
        except BaseException:
            self.close()
            raise
        log.info("pages read and written by process %s", process.pid)

    def read(self, after: int, limit: int) -> Batch | None:
        self.start()
        assert self._pipe is not None
        try:
            self._pipe.send((after, limit))
        except OSError as error:
            self.close()
            raise PersistenceError(f"the relay's page reader is gone: {error}") from error
        batch = self._answer()
        assert batch is None or isinstance(batch, Batch)
        return batch

    def _answer(self) -> Batch | str | None:
        assert self._pipe is not None
        try:
            answer, self.cpu_seconds = self._pipe.recv()
        except (EOFError, OSError) as error:
            self.close()
            raise PersistenceError(f"the relay's page reader is gone: {error!r}") from error
        if isinstance(answer, _Failed):
            raise PersistenceError(answer.reason)
        return answer  # type: ignore[no-any-return]

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def close(self) -> None:
        pipe, self._pipe = self._pipe, None
        process, self._process = self._process, None
        if pipe is not None:
            pipe.close()  # the child reads the end of its input and returns
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


def _serve(settings: Settings, factory: PagesFactory, pipe: Connection) -> None:
    """The child: answer "ready", then each position with the page after it, until hung up."""
    # Ctrl-C reaches the whole process group: the relay stops at a batch's end and hangs up,
    # which is when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pages, close = factory(settings)
    except Exception as error:  # noqa: BLE001 (e.g. the database is down: the relay retries)
        _send(pipe, _Failed(f"the relay's page reader could not start: {error}"))
        return
    try:
        if not _send(pipe, "ready"):
            return
        while True:
            try:
                after, limit = pipe.recv()
            except (EOFError, OSError):  # the relay closed the pipe, or is gone
                return
            try:
                answer: Batch | _Failed | None = pages.read(after, limit)
            except Exception as error:  # noqa: BLE001 (the relay decides: it waits, asks again)
                answer = _Failed(f"{type(error).__name__}: {error}")
            if not _send(pipe, answer):
                return
    finally:
        close()


def _send(pipe: Connection, answer: object) -> bool:
    """Send an answer with this process's CPU time; False when the relay is gone."""
    try:
        pipe.send((answer, time.process_time()))
    except OSError:
        return False
    return True
