"""Small helpers for the pure ASGI middlewares (which run before FastAPI's routing)."""

from __future__ import annotations

import json

from anyio import to_thread
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from governance.auth import InvalidToken, KeysUnavailable, TokenCodec
from governance.web.pages import SESSION_COOKIE

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

COMMAND_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (`name` in lower case), decoded as Latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer in the API's one error shape, from outside FastAPI's exception handlers."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def account_of(scope: Scope, tokens: TokenCodec) -> str | None:
    """The calling account ("org/sub") when the bearer token is valid; None otherwise.

    A request without a valid token goes on to the route, which answers 401. The result is kept
    in the scope so the token is verified once for all middlewares. Verifying may fetch the
    identity provider's keys, so it runs in a worker thread, off the event loop.
    """
    state = scope.setdefault("state", {})
    if "governance.account" in state:
        cached: str | None = state["governance.account"]
        return cached
    account = None
    token = _bearer(scope) or _session(scope)
    if token:
        try:
            principal = await to_thread.run_sync(tokens.verify, token.strip())
        except (InvalidToken, KeysUnavailable):
            principal = None
        if principal is not None:
            account = f"{principal.org_id}/{principal.account_id}"
    state["governance.account"] = account
    return account


def _bearer(scope: Scope) -> str | None:
    scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _session(scope: Scope) -> str | None:
    """The browser pages' session cookie holds the same bearer token."""
    cookies = header(scope, b"cookie")
    return cookie_parser(cookies).get(SESSION_COOKIE) if cookies else None


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past `limit` bytes (chunked or not)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app an already read body, then the client's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
