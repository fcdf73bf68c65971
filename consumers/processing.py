"""Applies a reaction to each event once, whatever transport brought it and however often.

A reaction first makes its outside effect (idempotent, e.g. calls to the public API) and returns
the rows that record it; those rows and the event's id in `processed_events` commit in one
transaction. A redelivered event finds its id there and is dropped. No transaction stays open
while a reaction talks to the outside, so it never waits on its own API.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Protocol

from psycopg import Error as PostgresError
from psycopg_pool import PoolTimeout

from consumers.cloudevents import CloudEvent
from governance.outage import DatabaseUnavailable
from projections.store import Tx, ViewStore

Effect = Callable[[Tx], None]
# The consumer's own store is away: the event is retried, never skipped.
# DatabaseUnavailable: the store's breaker knows PostgreSQL is away (see governance.outage).
STORE_ERRORS: tuple[type[Exception], ...] = (
    PostgresError,
    PoolTimeout,
    sqlite3.Error,
    DatabaseUnavailable,
)

TABLES: Sequence[str] = (
    """CREATE TABLE IF NOT EXISTS processed_events (
        consumer TEXT NOT NULL,
        event_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        processed_at BIGINT NOT NULL,
        PRIMARY KEY (consumer, event_id)
    )""",
)


class Outcome(StrEnum):
    """What became of one event given to a consumer (the label of its /metrics counter)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # applied before: dropped by its id
    IGNORED = "ignored"  # not a type the reaction wants
    INVALID = "invalid"  # not a CloudEvent of the contract: skipped, never retried
    FAILED = "failed"  # not applied now: retried later, nothing after it overtakes it


# Told the consumer's name and an event's outcome (the process counts them for /metrics).
OutcomeObserver = Callable[[str, Outcome], None]


class ReactionFailed(Exception):
    """The effect could not be made now (the API or an endpoint is away): retry the event later."""


class Reaction(Protocol):
    @property
    def name(self) -> str:
        """The consumer's name: its group id suffix and its key in processed_events."""
        ...

    @property
    def tables(self) -> Sequence[str]:
        """DDL of the tables its effects write."""
        ...

    def wants(self, event: CloudEvent) -> bool: ...

    def react(self, event: CloudEvent) -> Effect:
        """Make the outside effect; return what records it (raise ReactionFailed to retry)."""
        ...


class Processor:
    def __init__(
        self,
        store: ViewStore,
        reaction: Reaction,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.reaction = reaction
        self._after_commit = after_commit
        self.observers: list[OutcomeObserver] = []

    @property
    def name(self) -> str:
        return self.reaction.name

    def create_tables(self) -> None:
        with self.store.transaction() as tx:
            for statement in (*TABLES, *self.reaction.tables):
                tx.execute(statement)

    def process(self, event: CloudEvent) -> bool:
        """Apply the event unless it was already; return whether this call applied it."""
        try:
            outcome = self._apply(event)
        except Exception:
            self.report(Outcome.FAILED)
            raise
        self.report(outcome)
        return outcome is Outcome.APPLIED

    def report(self, outcome: Outcome) -> None:
        for observer in self.observers:
            observer(self.name, outcome)

    def _apply(self, event: CloudEvent) -> Outcome:
        if not self.reaction.wants(event):
            return Outcome.IGNORED
        if self.processed(event["id"]):
            return Outcome.DUPLICATE
        effect = self.reaction.react(event)
        with self.store.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO processed_events (consumer, event_id, position, processed_at)"
                " VALUES (%(c)s, %(e)s, %(p)s, %(t)s) ON CONFLICT (consumer, event_id) DO NOTHING",
                {"c": self.name, "e": event["id"], "p": event["position"], "t": _now_micros()},
            )
            if inserted:
                effect(tx)
        if not inserted:
            return Outcome.DUPLICATE  # applied meanwhile by another member of the group
        if self._after_commit is not None:
            self._after_commit()
        return Outcome.APPLIED

    def processed(self, event_id: str) -> bool:
        with self.store.read() as tx:
            row = tx.one(
                "SELECT 1 AS found FROM processed_events"
                " WHERE consumer = %(c)s AND event_id = %(e)s",
                {"c": self.name, "e": event_id},
            )
        return row is not None


def _now_micros() -> int:
    return time.time_ns() // 1000
