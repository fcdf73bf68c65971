"""A fresh PostgreSQL schema per benchmark run, dropped with its read models' generations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from governance.config import Settings
from governance.runtime import migrate


def drop_schema(url: str, base: str) -> None:
    """Drop `base` and the generations of its read models (`<base>_views_<N>`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        generations = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (base + "_views_",)
        ).fetchall()
        for schema in [base, *(name for (name,) in generations)]:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def migrated_schema(settings: Settings) -> Iterator[Settings]:
    """The settings' schema migrated for the run, and dropped after it."""
    assert settings.database_url is not None, "this benchmark needs DATABASE_URL (PostgreSQL)"
    migrate(settings)
    try:
        yield settings
    finally:
        drop_schema(settings.database_url, settings.database_schema)
