"""What every projection is: a named read model with its tables and one handler per event type."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MethodType
from typing import Any, ClassVar, Protocol, TypeVar

from projections.store import Tx

E = TypeVar("E")
Handler = Callable[[Any, Tx, Any, int], None]
FoldHandler = Callable[[Any, Any, int], None]


def handles(event_class: type[E]) -> Callable[[Callable[[Any, Tx, E, int], None]], Handler]:
    """Mark a method as the handler of one event class (registered by Projection subclasses)."""

    def mark(method: Callable[[Any, Tx, E, int], None]) -> Handler:
        method.__handles__ = event_class  # type: ignore[attr-defined]
        return method

    return mark


class Projection:
    """A read model. Handlers write rows only; the projector owns transactions and positions."""

    name: ClassVar[str]
    tables: ClassVar[Sequence[str]]
    # Roughly how much work its fold does per event, to share folds out between processes.
    rebuild_weight: ClassVar[float] = 1.0
    # True when its rows depend only on the events of their own site (events carry site_id):
    # a replay may then fold it in several processes at once, each taking some of the sites.
    partitioned: ClassVar[bool] = False
    # Columns a replay may load a table's rows in the order of (PostgreSQL): the index builds
    # after the load then sort rows that are mostly in order already, which is much cheaper.
    # The sort is stable: rows with the same values keep the order the fold wrote them in.
    load_order: ClassVar[Mapping[str, Sequence[str]]] = {}
    _handlers: ClassVar[dict[type, Handler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = {
            member.__handles__: member
            for member in vars(cls).values()
            if callable(member) and hasattr(member, "__handles__")
        }

    def apply(self, tx: Tx, event: object, position: int) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, tx, event, position)

    def fold(self, sink: Sink) -> Fold | None:
        """A faster way to build this read model from position zero, or None (row by row).

        A replay feeds a fold every event in order and it writes its tables' rows to `sink`; it
        must leave exactly the rows the handlers above would (`governance replay --check` and
        the tests compare the two).
        """
        return None


def has_fold(projection: Projection) -> bool:
    return type(projection).fold is not Projection.fold


class Sink(Protocol):
    """Where a fold puts rows: a list per table, loaded in bulk (executemany or COPY)."""

    def rows(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]: ...


def folds(event_class: type[E]) -> Callable[[Callable[[Any, E, int], None]], FoldHandler]:
    """Mark a method as a fold's handler of one event class."""

    def mark(method: Callable[[Any, E, int], None]) -> FoldHandler:
        method.__folds__ = event_class  # type: ignore[attr-defined]
        return method

    return mark


class Fold:
    """Builds a read model in memory from position zero, for a replay (no reads, no SQL).

    Append-only tables go to the sink as events arrive; tables of current state are kept in
    dictionaries and written once, by `finish`, so memory grows with entities, not with events.
    """

    _handlers: ClassVar[dict[type, FoldHandler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = {
            member.__folds__: member
            for member in vars(cls).values()
            if callable(member) and hasattr(member, "__folds__")
        }

    def apply(self, event: object, position: int) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, event, position)

    def handler_for(self, event_class: type) -> Callable[[Any, int], None] | None:
        """What `apply` does with an event of exactly `event_class` (None: nothing), so a replay
        can call it directly; asked once per class."""
        if type(self).apply is not Fold.apply:
            return self.apply
        handler = self._handlers.get(event_class)
        return None if handler is None else MethodType(handler, self)

    def finish(self) -> None:
        """Write the tables of current state (after the last event)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_last_micros: tuple[datetime | None, int] = (None, 0)


def micros(moment: datetime) -> int:
    """Timestamps are stored as integer microseconds since the epoch: same order in both stores."""
    global _last_micros
    # Every projection asks for the same event's time in turn: remember the last answer (one
    # tuple, swapped whole, so threads never see half of it).
    last = _last_micros
    if last[0] is moment:
        return last[1]
    delta = moment - _EPOCH
    value = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    _last_micros = (moment, value)
    return value


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)
