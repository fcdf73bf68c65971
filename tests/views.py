"""The read models of any view store as plain data, and as a replay of the log would build them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from governance.runtime import all_projections
from projections.projector import Projector
from projections.store import SQLiteViewStore, ViewStore
from tests.integration.test_installs_api import VIEW_TABLES


def dump_store(store: ViewStore) -> dict[str, list[str]]:
    dumped = {}
    with store.read() as tx:
        for table in VIEW_TABLES:
            rows = tx.all("SELECT * FROM " + table)  # noqa: S608 - constant table names
            dumped[table] = sorted(repr(sorted(row.items())) for row in rows)
    return dumped


def replayed_views(
    recorder: ApplicationRecorder, mapper: Mapper[Any], path: Path
) -> dict[str, list[str]]:
    """The views a projector builds from position zero into a fresh store, left untouched."""
    store = SQLiteViewStore(path)
    try:
        projector = Projector(recorder, mapper, store, all_projections())
        projector.create_tables()
        projector.catch_up()
        return dump_store(store)
    finally:
        store.close()
