"""Where state that no event can rebuild lives: beside the events, never in a view generation.

Webhook endpoints and their deliveries, the consumers' processed-event marks, the relay's and
the in-process dispatchers' positions are configuration or progress, not read models: a replay
into a new generation must not lose them. They live in the event store's SQLite file, or in
its PostgreSQL schema.
"""

from __future__ import annotations

from pathlib import Path

from governance.config import Settings
from governance.eventstore import event_store_env
from governance.outage import Breaker
from projections.store import PostgresViewStore, SQLiteViewStore, ViewStore


def open_state_store(
    settings: Settings, pool_size: int = 4, breaker: Breaker | None = None
) -> ViewStore:
    if settings.database_url is None:
        return SQLiteViewStore(Path(event_store_env(settings, create_table=False)["SQLITE_DBNAME"]))
    return PostgresViewStore(
        settings.database_url, settings.database_schema, pool_size, breaker=breaker
    )
