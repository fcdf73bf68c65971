"""How the `eventsourcing` library is configured from our settings (its environment keys)."""

from __future__ import annotations

from pathlib import Path

from governance.config import Settings

# The application's name prefixes the PostgreSQL table: governance_events.
EVENTS_TABLE = "governance_events"
MAX_POSITION = 2**63 - 1  # log positions are PostgreSQL BIGINTs
# The library's recorders plus the hash chain (governance.audit.seal): every event is sealed.
POSTGRES_RECORDER_TOPIC = "governance.audit.seal:SealingPostgresRecorder"
SQLITE_RECORDER_TOPIC = "governance.audit.seal:SealingSQLiteRecorder"
# The same, committing concurrent commands' saves in one transaction (governance.groupcommit).
POSTGRES_GROUP_RECORDER_TOPIC = "governance.groupcommit:GroupCommittingPostgresRecorder"
SQLITE_GROUP_RECORDER_TOPIC = "governance.groupcommit:GroupCommittingSQLiteRecorder"


def sqlite_events_path(settings: Settings) -> Path:
    """The embedded event store's file (the library's SQLITE_DBNAME)."""
    return settings.data_dir / "events.sqlite"


def event_store_env(settings: Settings, *, create_table: bool) -> dict[str, str]:
    """The library's environment for our one application, handed over explicitly."""
    flag = "y" if create_table else "n"
    if not settings.uses_postgres:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(sqlite_events_path(settings)),
            "SQLITE_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": (
                SQLITE_GROUP_RECORDER_TOPIC if settings.group_commit else SQLITE_RECORDER_TOPIC
            ),
            "CREATE_TABLE": flag,
        }
    pg = settings.postgres
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": pg.dbname,
        "POSTGRES_HOST": pg.host,
        "POSTGRES_PORT": str(pg.port),
        "POSTGRES_USER": pg.user,
        "POSTGRES_PASSWORD": pg.password,
        "POSTGRES_SCHEMA": settings.database_schema,
        "POSTGRES_POOL_SIZE": str(settings.database_pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "APPLICATION_RECORDER_TOPIC": (
            POSTGRES_GROUP_RECORDER_TOPIC if settings.group_commit else POSTGRES_RECORDER_TOPIC
        ),
        "CREATE_TABLE": flag,
    }
