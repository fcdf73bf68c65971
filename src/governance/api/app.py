"""The API's composition root: `create_app(settings)` builds one FastAPI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from governance import web
from governance.api.consent import ConsentFastPath
from governance.api.errors import install_error_handlers
from governance.api.idempotency import Idempotency
from governance.api.idempotency import document as document_idempotency_key
from governance.api.limits import BodyLimit, CommandRateLimit, TokenBuckets
from governance.api.routes import (
    app_lists,
    app_requests,
    audit,
    connected_apps,
    health,
    installs,
    metrics,
    sites,
    webhooks,
)
from governance.config import Settings
from governance.observability.http import ObservedRequests
from governance.runtime import Runtime


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the API; a runtime passed in stays the caller's, one built here is closed here."""
    owned = runtime is None
    live = runtime if runtime is not None else Runtime(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owned and live.settings.run_projector:
            live.start_projector()
        if owned:
            live.start_reactions()  # only without Kafka; with it, consumer processes react
        try:
            yield
        finally:
            if owned:
                live.close()

    app = FastAPI(
        title="governance",
        version="1",
        summary="Who may connect third-party OAuth 2.0 apps to an organization's sites.",
        lifespan=lifespan,
    )
    app.state.runtime = live
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(sites.router)
    app.include_router(installs.router)
    app.include_router(connected_apps.router)
    app.include_router(app_lists.router)
    app.include_router(app_requests.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    app.include_router(audit.router)
    app.include_router(web.router)
    # Innermost first: the key is checked after the rate limit, the rate after the size cap.
    app.add_middleware(ConsentFastPath, runtime=live)  # repeated consent questions, from memory
    app.add_middleware(
        Idempotency,
        store=live.idempotency,
        tokens=live.tokens,
        max_body=live.settings.max_body_bytes,
    )
    app.add_middleware(
        CommandRateLimit,
        tokens=live.tokens,
        buckets=TokenBuckets(live.settings.command_rate_per_second, live.settings.command_burst),
    )
    app.add_middleware(BodyLimit, max_bytes=live.settings.max_body_bytes)
    document_idempotency_key(app)
    # The request id, the request metrics and the access log (see governance.observability).
    app.add_middleware(ObservedRequests, metrics=live.metrics)
    return app
