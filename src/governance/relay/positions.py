"""How far the relay has published, kept in the database the events live in.

The position is written only after the broker acknowledged every message up to it, so a relay
that dies resumes at the first event not known to be delivered (at-least-once).
"""

from __future__ import annotations

from governance.config import Settings
from governance.outage import Breaker
from governance.state import open_state_store
from projections.store import ViewStore

TABLE = """CREATE TABLE IF NOT EXISTS relay_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)"""


class PositionStore:
    """One row per published topic: switching to a new topic starts it from the beginning."""

    def __init__(self, store: ViewStore, name: str) -> None:
        self._store = store
        self.name = name

    def create_table(self) -> None:
        with self._store.transaction() as tx:
            tx.execute(TABLE)

    def get(self) -> int:
        with self._store.read() as tx:
            row = tx.one(
                "SELECT position FROM relay_positions WHERE name = %(n)s", {"n": self.name}
            )
        return int(row["position"]) if row else 0

    def set(self, position: int) -> None:
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO relay_positions (name, position) VALUES (%(n)s, %(p)s)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                {"n": self.name, "p": position},
            )

    def close(self) -> None:
        self._store.close()


def open_positions(settings: Settings, breaker: Breaker | None = None) -> PositionStore:
    """The relay's positions beside the events: the SQLite event file, or the PostgreSQL schema."""
    return PositionStore(
        open_state_store(settings, pool_size=2, breaker=breaker), settings.events_topic
    )
