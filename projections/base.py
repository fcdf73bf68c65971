"""What every projection is: a named read model with its tables and one handler per event type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from projections.store import Tx

E = TypeVar("E")
Handler = Callable[[Any, Tx, Any, int], None]


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Timestamps are stored as integer microseconds since the epoch: same order in both stores."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)
