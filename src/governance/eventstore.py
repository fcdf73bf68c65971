"""How the `eventsourcing` library is configured from our settings (its environment keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Mapper

from governance.config import Settings

# The application's name prefixes the PostgreSQL table: governance_events.
EVENTS_TABLE = "governance_events"
# The library's recorders plus the hash chain (governance.audit.seal): every event is sealed.
POSTGRES_RECORDER_TOPIC = "governance.audit.seal:SealingPostgresRecorder"
SQLITE_RECORDER_TOPIC = "governance.audit.seal:SealingSQLiteRecorder"


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
            "APPLICATION_RECORDER_TOPIC": SQLITE_RECORDER_TOPIC,
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
        "APPLICATION_RECORDER_TOPIC": POSTGRES_RECORDER_TOPIC,
        "CREATE_TABLE": flag,
    }


class FlatJSONTranscoder(JSONTranscoder):
    """The library's JSON transcoder, decoding flat event states without a Python call per object.

    The library decodes with an `object_hook` that turns {"_type_": name, "_data_": data} back
    into a UUID, a datetime...; it runs for every JSON object. Our events are flat: custom values
    sit at the top level with string data. Those are decoded here after one plain (C) parse;
    anything else (a nested object, a list holding objects, an unknown type) is handed to the
    library's own decoder, so the result is always the library's. A replay decodes every event
    with it (measured: about half the decoding time); `tests/unit/test_flat_decoding.py` compares.
    """

    def __init__(self, like: JSONTranscoder) -> None:
        super().__init__()
        self.types, self.names = like.types, like.names  # the same registered transcodings
        self._plain = json.JSONDecoder()

    def decode(self, data: bytes) -> Any:
        state = self._plain.decode(data.decode("utf8"))
        if type(state) is not dict:
            return super().decode(data)
        for key, value in state.items():
            kind = type(value)
            if kind is dict:
                custom = self.names.get(value.get("_type_")) if len(value) == 2 else None
                payload = value.get("_data_")
                if custom is None or type(payload) is not str:
                    return super().decode(data)
                state[key] = custom.decode(payload)
            elif kind is list and any(type(item) in (dict, list) for item in value):
                return super().decode(data)
        return state


def fast_mapper(mapper: Mapper[Any]) -> Mapper[Any]:
    """The same mapper, decoding with FlatJSONTranscoder when the states are plain JSON."""
    transcoder = mapper.transcoder
    if type(transcoder) is not JSONTranscoder or mapper.cipher or mapper.compressor:
        return mapper
    return type(mapper)(transcoder=FlatJSONTranscoder(transcoder))
