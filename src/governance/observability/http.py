"""One ASGI middleware per request: its id, its metrics and its access-log line.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which would add a task and a stream copy to
every request, the consent screen's fast path included.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from governance.observability.logs import ACCESS
from governance.observability.metrics import Metrics

REQUEST_ID = "X-Request-Id"
_HEADER = REQUEST_ID.lower().encode("latin-1")
# What we echo and store on events: ids of common tracing schemes fit; anything else is replaced
# (a header must never smuggle a line break or a megabyte into the log or the event store).
_VALID_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Paths that matched no route share one label, so random URLs cannot grow the metrics.
UNMATCHED = "unmatched"


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-Id when it is a sane id, or a new one."""
    for name, value in scope["headers"]:
        if name == _HEADER and _VALID_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


class ObservedRequests:
    """Gives each request an id (echoed in the response), and counts, times and logs it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        # Read by the routes as `request.state.request_id` and stored on the events they cause.
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # what the server answers if the application raises before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._done(scope, state, status, time.perf_counter() - started)

    def _done(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        route = _route(scope)
        self.metrics.request_done(method, route, status, seconds)
        ACCESS.info(
            "request",
            extra={
                "method": method,
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": state["request_id"],
                "account_id": state.get("account_id"),
                "site_id": scope.get("path_params", {}).get("site_id"),
            },
        )


def _route(scope: Scope) -> str:
    """The matched route's template, e.g. /v1/sites/{site_id}/consent (never the raw path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
