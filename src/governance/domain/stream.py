"""Aggregates whose stream needs no creation event.

The library rebuilds an aggregate from a "created" event first. A grant has no natural creation:
the first thing that happens to it may be an install or a refused attempt. Like Equinox and
Marten streams, these aggregates exist implicitly, empty at version 0, and their first recorded
event is an ordinary one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Self
from uuid import UUID

from eventsourcing.domain import Aggregate

from governance.domain.clock import event_time


class ImplicitAggregate(Aggregate):
    """Starts empty at version 0; subclasses assign that empty state in `_empty`."""

    class Event(Aggregate.Event):
        owner: ClassVar[type[ImplicitAggregate]]
        create_timestamp = staticmethod(event_time)

        def mutate(self, aggregate: Any) -> Any:
            if aggregate is None:
                aggregate = self.owner.empty(self.originator_id, self.timestamp)
            return super().mutate(aggregate)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Each nested event class learns which aggregate its first occurrence starts.
        for member in vars(cls).values():
            if isinstance(member, type) and issubclass(member, ImplicitAggregate.Event):
                member.owner = cls

    @classmethod
    def empty(cls, aggregate_id: UUID, timestamp: datetime) -> Self:
        shell = cls.__new__(cls)
        shell.__base_init__(aggregate_id, 0, timestamp)
        shell._empty()
        return shell

    def _empty(self) -> None:
        """Assign the state of an aggregate that nothing has happened to yet."""
