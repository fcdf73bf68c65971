"""Open request cases that no admin decided in time expire.

The sweep finds candidates in the read model and sends each an expire command; the case
aggregate decides, so a case decided or reopened since the view was read is left alone, and
two sweeps racing expire a case once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from eventsourcing.persistence import PersistenceError
from psycopg import Error as PostgresError

from governance.application import GovernanceApplication
from governance.domain.actor import Actor
from projections import app_requests as requests_view
from projections.store import ViewStore

log = logging.getLogger(__name__)

# Who expired a case, in the events and the history: no person decided.
EXPIRY = Actor("governance:request-expiry")


def expire_stale_requests(
    application: GovernanceApplication,
    views: ViewStore,
    ttl_days: float,
    now: datetime | None = None,
) -> list[str]:
    """Expire every case open since before `now - ttl_days`; return the ids of those expired."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=ttl_days)
    with views.read() as tx:
        stale = requests_view.open_cases_opened_before(tx, cutoff)
    reason = f"no admin decided within {ttl_days:g} days"
    expired = []
    for site_id, case_id in stale:
        result = application.expire_request(site_id, case_id, cutoff, EXPIRY, reason=reason)
        if result.changed:
            expired.append(case_id)
    return expired


def sweep_periodically(
    sweep: Callable[[], list[str]], stop: threading.Event, interval: float
) -> None:
    """Run `sweep` now and every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            expired = sweep()
            if expired:
                log.info("expired request cases: %s", ", ".join(expired))
        except (PersistenceError, PostgresError, sqlite3.Error, OSError) as error:
            # A store is away: the next sweep finds the same cases again.
            log.warning("request expiry paused: %s", error)
        stop.wait(interval)
