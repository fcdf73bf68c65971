"""Builds the parts one process needs from the settings: the one place that wires them."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from consumers import wiring as consumers
from governance.application import GovernanceApplication
from governance.audit.verify import chain_store
from governance.auth import IdentityProvider, JwksFile, JwksUrl, KeySource, TokenCodec
from governance.config import Settings
from governance.eventstore import EVENTS_TABLE, event_store_env, sqlite_events_path
from governance.expiry import expire_stale_requests, sweep_periodically
from governance.idempotency import IdempotencyStore
from governance.observability.consumers import dispatcher_metrics
from governance.observability.process import process_metrics
from governance.outage import Breaker, database_breaker, guard_event_store
from governance.relay.embedded import EmbeddedDispatcher
from governance.relay.positions import open_positions
from governance.state import open_state_store
from projections.app_lists import AppListsProjection
from projections.app_requests import AppRequestsProjection
from projections.base import Projection
from projections.connected_apps import ConnectedAppsProjection
from projections.consent_inputs import ConsentInputsCache
from projections.generations import (
    GenerationalViewStore,
    Generations,
    PostgresGenerations,
    SQLiteGenerations,
)
from projections.listen import listen_for_events
from projections.policy import SitePolicyProjection
from projections.projector import Projector
from projections.rebuild import Progress, Rebuilder
from projections.timeline import TimelineProjection


def all_projections() -> Sequence[Projection]:
    return (
        SitePolicyProjection(),
        ConnectedAppsProjection(),
        TimelineProjection(),
        AppListsProjection(),
        AppRequestsProjection(),
    )


class Runtime:
    """The application service, the read models and their projector, for one process."""

    def __init__(self, settings: Settings, *, create_tables: bool | None = None) -> None:
        self.settings = settings
        # The embedded default is one process, so it may create its own tables; with PostgreSQL
        # only `governance migrate` does, because processes starting together race on DDL.
        create = (not settings.uses_postgres) if create_tables is None else create_tables
        self.application = GovernanceApplication(env=event_store_env(settings, create_table=create))
        self.breaker = database_breaker(settings)
        if self.breaker is not None:
            guard_event_store(self.application.recorder, self.breaker)
        self.views = GenerationalViewStore(view_generations(settings, self.breaker))
        if create:
            self.views.generations.ensure_live()
        self.projector = Projector(
            self.application.recorder,
            self.application.mapper,
            self.views,
            all_projections(),
            batch_size=settings.projector_batch_size,
        )
        # Beside the events, not in the read models: a replay's new generation of views must
        # not forget webhook endpoints, processed marks, positions or idempotent answers.
        self.state = open_state_store(settings, breaker=self.breaker)
        self.idempotency = IdempotencyStore(
            self.state, timedelta(hours=settings.idempotency_ttl_hours)
        )
        if create:
            self.projector.create_tables()
            consumers.create_tables(self.state)
            EmbeddedDispatcher.create_table(self.state)
            self.idempotency.create_table()
        self.metrics = process_metrics(self.application, self.projector)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wakes = [self.projector.wake]

    @cached_property
    def tokens(self) -> TokenCodec:
        """Built on first use: only processes that verify or issue tokens need the secret, and
        there a weak one stops the process (see `Settings.resolved_jwt_secret`)."""
        return token_codec(self.settings)

    @cached_property
    def consent_inputs(self) -> ConsentInputsCache:
        """What consent decisions read, in memory, following the read models' position."""
        cache = ConsentInputsCache(self.views, self.projector)
        self._spawn(cache.follow, self._stop)
        return cache

    def rebuilder(self, progress: Progress | None = None) -> Rebuilder:
        """What `governance replay` runs: new generations of every read model, built from zero."""
        rebuilder = Rebuilder(
            self.views.generations,
            self.application.recorder,
            self.application.mapper,
            all_projections(),
            batch_size=self.settings.projector_batch_size,
            workers=self.settings.replay_workers or os.cpu_count() or 1,
            source=LogFromSettings(self.settings),
        )
        if progress is not None:
            rebuilder.progress = progress
        return rebuilder

    def start_projector(self) -> None:
        """Run the projector in a background thread, woken by new events."""
        self.application.after_save.append(self.projector.wake.set)
        self._start_listener()
        self._start_request_expiry()
        self._spawn(self.projector.run, self._stop, self.settings.projector_idle_wait)

    def run_projector(self) -> None:
        """Run the projector in this thread until `close()` is called from another."""
        self._start_listener()
        self._start_request_expiry()
        self.projector.run(self._stop, self.settings.projector_idle_wait)

    def expire_requests(self, now: datetime | None = None) -> list[str]:
        """Expire the request cases open for longer than the configured time (ids expired)."""
        return expire_stale_requests(
            self.application, self.views, self.settings.app_request_ttl_days, now
        )

    def _start_request_expiry(self) -> None:
        # One sweeper per deployment, beside the one projector whose views it reads.
        interval = self.settings.app_request_sweep_interval
        self._spawn(sweep_periodically, self.expire_requests, self._stop, interval)

    def _start_listener(self) -> None:
        # SQLite cannot notify: there the in-process save hook and the idle timeout wake it.
        url = self.settings.database_url
        if url is not None:
            self._spawn(listen_for_events, url, EVENTS_TABLE, self.projector.wake, self._stop)

    def start_reactions(self) -> None:
        """The embedded default (no Kafka): run every consumer's reaction in this process."""
        if self.settings.kafka_bootstrap_servers is not None or not self.settings.run_reactions:
            return
        built = [
            consumers.build(name, self.settings, self.state, self.tokens)
            for name in consumers.NAMES
        ]
        dispatchers = [
            EmbeddedDispatcher(
                self.application.recorder,
                self.application.mapper,
                self.state,
                consumer.processor,
                source=self.settings.cloudevents_source,
                batch_size=self.settings.relay_batch_size,
            )
            for consumer in built
        ]
        dispatcher_metrics(self.metrics, self.application.head_position, dispatchers)
        for consumer, dispatcher in zip(built, dispatchers, strict=True):
            self.application.after_save.append(dispatcher.wake.set)
            self._wakes.append(dispatcher.wake)
            self._spawn(dispatcher.run, self._stop, self.settings.relay_idle_wait)
            for loop in consumer.loops:
                self._spawn(loop, self._stop)

    def close_soon(self) -> None:
        """Ask the running loops to stop after their current batch (safe from signal handlers)."""
        self._stop.set()
        for wake in self._wakes:
            wake.set()

    def close(self) -> None:
        self.close_soon()
        for thread in self._threads:
            thread.join(timeout=10)
        self.views.close()
        self.state.close()
        self.application.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)


@dataclass(frozen=True)
class LogFromSettings:
    """Opens the event log in a replay's worker process (the settings travel there)."""

    settings: Settings

    @contextmanager
    def open(self) -> Iterator[tuple[ApplicationRecorder, Mapper[Any]]]:
        env = event_store_env(self.settings, create_table=False)
        application = GovernanceApplication(env=env)
        try:
            yield application.recorder, application.mapper
        finally:
            application.close()


def token_codec(settings: Settings) -> TokenCodec:
    """Our own HS256 tokens, and the identity provider's when a JWKS is configured."""
    secret, leeway = settings.resolved_jwt_secret(), settings.jwt_leeway_seconds
    keys: KeySource
    if settings.jwks_url is not None:
        keys = JwksUrl(settings.jwks_url)
    elif settings.jwks_file is not None:
        keys = JwksFile(settings.jwks_file)
    else:
        return TokenCodec(secret, leeway)
    assert settings.jwt_issuer and settings.jwt_audience  # the settings require both
    return TokenCodec(
        secret, leeway, IdentityProvider(keys, settings.jwt_issuer, settings.jwt_audience)
    )


def migrate(settings: Settings) -> int:
    """Create every table once: the event store's and the read models'.

    Returns how many events stored before the hash chain existed it sealed (0 once sealed).
    """
    if settings.uses_postgres:
        _create_schema(settings)
    Runtime(settings, create_tables=True).close()
    positions = open_positions(settings)
    try:
        positions.create_table()
    finally:
        positions.close()
    return chain_store(settings).adopt()


def _create_schema(settings: Settings) -> None:
    import psycopg
    from psycopg import sql

    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(settings.database_schema)
            )
        )


def view_generations(settings: Settings, breaker: Breaker | None = None) -> Generations:
    """Where the read models' generations live: beside the event store, in its database."""
    if settings.database_url is None:
        return SQLiteGenerations(settings.data_dir, sqlite_events_path(settings))
    return PostgresGenerations(
        settings.database_url,
        settings.database_schema,
        settings.database_pool_size,
        breaker=breaker,
    )
