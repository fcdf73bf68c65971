"""When events happen: now, unless a caller replays a scene at chosen moments (the demo does).

Every event class of ours takes its timestamp from `event_time`, the library's hook for it
(`create_timestamp`). A context variable, not a global, so one thread's chosen moment never
leaks into another thread's commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_moment: ContextVar[datetime | None] = ContextVar("governance_event_time", default=None)


def event_time() -> datetime:
    """The timestamp of an event being triggered: the chosen moment, or now (UTC)."""
    return _moment.get() or datetime.now(UTC)


@contextmanager
def events_at(moment: datetime) -> Iterator[None]:
    """Stamp the events triggered inside this block with `moment` (an aware datetime)."""
    if moment.tzinfo is None:
        raise ValueError("give the moment a time zone")
    token = _moment.set(moment)
    try:
        yield
    finally:
        _moment.reset(token)
