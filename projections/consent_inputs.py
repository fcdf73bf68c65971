"""What a consent decision reads from the read models, kept in memory by the API process.

Per (site, app, account): the site's policy, the app's entry on the site's list, the account's
grant and its open request. An entry is read from the views on its first use and served from
memory while the views stay where they were when it was read: every entry carries the mark
(view generation, log position) current before its rows were read, and only entries of the
current mark are served. A follower thread looks at the views' position after every batch of an
in-process projector and at least every `interval` seconds (a projector in another process);
when the position moves, all entries go stale at once and are read again on their next use.

So a decision lags the read models by at most `interval` plus the follower's read, and never by
more than `max_staleness`: past it (the database away, the follower stuck) nothing is served from
memory. A request with `?min_position=N` waits until the follower has seen N (see the API).
Memory is bounded by `max_entries` (the oldest go first), however many installs are stored;
each miss is a handful of primary-key lookups, whose cost does not grow with the store.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import psycopg
from eventsourcing.persistence import PersistenceError

from governance.outage import OUTAGE_ERRORS
from projections import app_lists as lists_view
from projections import app_requests as requests_view
from projections import connected_apps as apps_view
from projections import policy as policy_view
from projections.generations import GenerationalViewStore, NoLiveGeneration
from projections.projector import Projector

log = logging.getLogger(__name__)
# What the follower survives: the database away for a while, or a generation being switched.
_PASSING: tuple[type[Exception], ...] = (
    *OUTAGE_ERRORS,
    PersistenceError,
    psycopg.Error,
    sqlite3.Error,
    NoLiveGeneration,
)

Key = tuple[str, str, str]  # (site_id, app_id, account_id)
Mark = tuple[int | None, int]  # (view generation, log position)
_NOT_SEEN: Mark = (None, -1)


@dataclass(frozen=True, slots=True)
class ConsentInputs:
    """The rows a consent decision needs, as the views held them at one position."""

    policy: policy_view.SitePolicy | None  # None: no such site
    listed: lists_view.ListedApp | None
    granted_scopes: frozenset[str] | None  # None: the account has no grant of the app
    pending_scopes: list[str] | None  # None: the account has no open request for it


class ConsentInputsCache:
    def __init__(
        self,
        views: GenerationalViewStore,
        projector: Projector,
        *,
        max_entries: int = 20_000,
        interval: float = 0.1,
        max_staleness: float = 2.0,
    ) -> None:
        self._views = views
        self._projector = projector
        self.max_entries = max_entries
        self.interval = interval
        self.max_staleness = max_staleness
        self._entries: OrderedDict[Key, tuple[Mark, ConsentInputs]] = OrderedDict()
        self._mark = _NOT_SEEN
        self._confirmed = float("-inf")  # when the follower last read the views' position
        self._lock = threading.Lock()

    @property
    def position(self) -> int:
        """The log position the views had reached when last looked at (-1: not yet)."""
        return self._mark[1]

    def cached(self, site_id: str, app_id: str, account_id: str) -> ConsentInputs | None:
        """The inputs from memory, if current; None means `load` them (no I/O here)."""
        if time.monotonic() - self._confirmed > self.max_staleness:
            return None
        entry = self._entries.get((site_id, app_id, account_id))
        if entry is None or entry[0] != self._mark:
            return None
        return entry[1]

    def load(self, site_id: str, app_id: str, account_id: str) -> ConsentInputs:
        """Read the inputs from the views (blocking: call it off the event loop) and keep them."""
        mark = self._mark  # before the rows: they are at least as new as the mark says
        with self._views.read() as tx:
            policy = policy_view.get_policy(tx, site_id)
            grant = apps_view.account_grant(tx, site_id, app_id, account_id)
            inputs = ConsentInputs(
                policy,
                lists_view.listed_app(tx, site_id, app_id),
                frozenset(grant.scopes) if grant is not None else None,
                requests_view.pending_scopes(tx, site_id, app_id, account_id),
            )
        with self._lock:
            if mark == self._mark and mark != _NOT_SEEN:
                self._entries[(site_id, app_id, account_id)] = (mark, inputs)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return inputs

    def observe(self) -> int:
        """Read where the views are now (blocking); a move makes every entry stale."""
        position = self._projector.position()
        mark = (self._views.generation, position)
        confirmed = time.monotonic()
        with self._lock:
            if mark != self._mark:
                self._entries = OrderedDict()
                self._mark = mark
            self._confirmed = confirmed
        return position

    def follow(self, stop: threading.Event) -> None:
        """Keep the mark current until `stop` is set (the body of a daemon thread)."""
        seen = self._projector.batches
        while not stop.is_set():
            try:
                self.observe()
            except _PASSING as error:
                # Nothing is served from memory once `max_staleness` passes without a look.
                log.warning("consent cache cannot see the read models' position: %s", error)
            seen = self._projector.wait_progress(seen, self.interval)

    def __len__(self) -> int:
        return len(self._entries)
