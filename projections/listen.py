"""Wakes a projector when PostgreSQL announces new events (LISTEN/NOTIFY), instead of polling."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


def listen_for_events(url: str, channel: str, wake: threading.Event, stop: threading.Event) -> None:
    """Set `wake` on every notification on `channel` until `stop` is set; reconnect on failure."""
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                wake.set()  # events may have arrived while we were not listening
                while not stop.is_set():
                    for _ in conn.notifies(timeout=0.5, stop_after=1):
                        wake.set()
        except psycopg.Error as error:
            log.warning("event listener reconnecting: %s", error)
            stop.wait(1.0)
