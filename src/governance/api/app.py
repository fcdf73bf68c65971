"""The API's composition root: `create_app(settings)` builds one FastAPI application."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from governance.api.errors import install_error_handlers
from governance.api.routes import connected_apps, health, installs, sites
from governance.config import Settings
from governance.runtime import Runtime

_REQUEST_ID = "X-Request-Id"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the API; a runtime passed in stays the caller's, one built here is closed here."""
    owned = runtime is None
    live = runtime if runtime is not None else Runtime(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owned and live.settings.run_projector:
            live.start_projector()
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
    app.middleware("http")(_request_id)
    return app


async def _request_id(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Echo the caller's X-Request-Id (or a new one) so a request can be followed into the log."""
    given = request.headers.get(_REQUEST_ID, "")[:128]
    request.state.request_id = given or uuid.uuid4().hex
    response = await call_next(request)
    response.headers[_REQUEST_ID] = request.state.request_id
    return response
