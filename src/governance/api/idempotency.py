"""`Idempotency-Key` on POST, PUT and DELETE: a retry gets the first answer and writes nothing.

A pure ASGI middleware; requests without the header (and every GET) pass straight through.
The key is scoped to the calling account. The same key with another method, path or body is a
422; the same key while its first request is still running is a 409 ("in progress"). Answers
are kept unless they say "try again" (5xx, 409 conflicts, 429), which a retry should redo.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from anyio import to_thread
from fastapi import FastAPI

from governance.api.asgi import (
    COMMAND_METHODS,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    account_of,
    header,
    read_body,
    replay,
    send_error,
)
from governance.auth import TokenCodec
from governance.idempotency import Claimed, IdempotencyStore, InFlight, Mismatch, Replay
from governance.outage import OUTAGE_ERRORS

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

HEADER = "Idempotency-Key"
_MAX_KEY = 255
_NOT_KEPT = frozenset({409, 425, 429})
# Per request, not part of the answer: the outer middleware and the server set them anew.
_NOT_REPLAYED = frozenset({"x-request-id", "date", "server"})


def valid_key(key: str) -> bool:
    return 1 <= len(key) <= _MAX_KEY and all(" " <= ch <= "~" for ch in key)


class Idempotency:
    def __init__(
        self, app: ASGIApp, store: IdempotencyStore, tokens: TokenCodec, max_body: int
    ) -> None:
        self.app = app
        self.store = store
        self.tokens = tokens
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in COMMAND_METHODS:
            await self.app(scope, receive, send)
            return
        key = header(scope, HEADER.lower().encode())
        if key is None:
            await self.app(scope, receive, send)
            return
        if not valid_key(key):
            await send_error(
                send,
                422,
                "invalid_request",
                f"{HEADER}: give 1 to {_MAX_KEY} printable ASCII characters",
            )
            return
        account = await account_of(scope, self.tokens)
        if account is None:  # the route answers 401; nothing to remember
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self.max_body) or b""
        try:
            await self._once(scope, replay(body, receive), send, account, key, body)
        except OUTAGE_ERRORS:
            log.warning("idempotency store unreachable")
            await send_error(
                send,
                503,
                "unavailable",
                "the database is not reachable right now; retry shortly",
                {"Retry-After": "1"},
            )

    async def _once(
        self, scope: Scope, receive: Receive, send: Send, account: str, key: str, body: bytes
    ) -> None:
        outcome = await _in_thread(self.store.claim, account, key, _fingerprint(scope, body))
        if isinstance(outcome, Replay):
            await _send_replay(send, outcome)
        elif isinstance(outcome, Mismatch):
            await send_error(
                send,
                422,
                "idempotency_key_reused",
                f"{HEADER} {key!r} was already used for a different request; use a new key",
            )
        elif isinstance(outcome, InFlight):
            await send_error(
                send,
                409,
                "idempotency_key_in_progress",
                f"a request with {HEADER} {key!r} is still in progress; retry shortly",
                {"Retry-After": "1"},
            )
        else:
            await self._run(scope, receive, send, account, key, outcome)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, account: str, key: str, claim: Claimed
    ) -> None:
        answer: dict[str, object] = {}
        chunks: list[bytes] = []

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [
                    (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                    for k, v in message.get("headers", ())
                ]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            await self._remember(account, key, claim, answer, b"".join(chunks))

    async def _remember(
        self, account: str, key: str, claim: Claimed, answer: dict[str, object], body: bytes
    ) -> None:
        status, headers = answer.get("status"), answer.get("headers")
        try:
            if isinstance(status, int) and status < 500 and status not in _NOT_KEPT:
                assert isinstance(headers, list)
                await _in_thread(
                    self.store.complete, account, key, claim.claim, status, headers, body
                )
            else:
                await _in_thread(self.store.release, account, key, claim.claim)
        except OUTAGE_ERRORS:
            # The caller has its answer already. The claim stays in flight until its lease
            # ends; a retry after that runs the command again, which the domain makes a no-op.
            log.warning("could not record the answer to an Idempotency-Key request")


def document(app: FastAPI) -> None:
    """Declare the header on every POST, PUT and DELETE of the OpenAPI document."""
    plain = app.openapi
    parameter = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": "Send the same key again to get the first answer without writing twice"
        " (kept at least 24 h, per account).",
        "schema": {"type": "string", "minLength": 1, "maxLength": _MAX_KEY, "pattern": "^[ -~]+$"},
    }

    def openapi() -> dict[str, Any]:
        schema = plain()
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                if method.upper() not in COMMAND_METHODS:
                    continue
                parameters = operation.setdefault("parameters", [])
                if all(p.get("name") != HEADER for p in parameters):
                    parameters.append(parameter)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"], scope["path"], bytes(scope.get("query_string", b"")).decode()):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\x00")
    digest.update(body)
    return digest.hexdigest()


async def _send_replay(send: Send, replay: Replay) -> None:
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in replay.headers
        if k.lower() not in _NOT_REPLAYED
    ]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": replay.status, "headers": headers})
    await send({"type": "http.response.body", "body": replay.body})


async def _in_thread(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """The stores are synchronous: keep them off the event loop."""
    return await to_thread.run_sync(lambda: function(*args, **kwargs))
