"""Limits every request meets before routing: a body size cap and a per-account command rate.

Both are pure ASGI middlewares: a GET (the consent screen's question) passes through untouched
and pays nothing but a method check.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from governance.api.asgi import (
    COMMAND_METHODS,
    ASGIApp,
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


class BodyLimit:
    """413 for a body over `max_bytes`, whether it declares a Content-Length or is chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        if scope["method"] not in COMMAND_METHODS:
            await self.app(scope, receive, send)
            return
        # Commands' bodies are small: read them whole, so a chunked one is measured too.
        body = await read_body(receive, self.max_bytes)
        if body is None:
            await self._too_large(send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _too_large(self, send: Send) -> None:
        await send_error(
            send,
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
            {"Connection": "close"},
        )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per account, in memory: `rate` tokens a second, at most `burst` saved."""

    def __init__(self, rate: float, burst: int, max_accounts: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self._max_accounts = max_accounts
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, account: str, now: float | None = None) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(account)
            if bucket is None:
                self._forget_idle(moment)
                bucket = self._buckets[account] = _Bucket(float(self.burst), moment)
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (moment - bucket.updated) * self.rate
            )
            bucket.updated = moment
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        # A bucket that would be full again carries no information: drop those when crowded.
        if len(self._buckets) < self._max_accounts:
            return
        refill = self.burst / self.rate
        self._buckets = {a: b for a, b in self._buckets.items() if now - b.updated < refill}


class CommandRateLimit:
    """429 with Retry-After when an account sends commands faster than its bucket allows."""

    def __init__(self, app: ASGIApp, tokens: TokenCodec, buckets: TokenBuckets) -> None:
        self.app = app
        self.tokens = tokens
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in COMMAND_METHODS:
            account = await account_of(scope, self.tokens)
            wait = self.buckets.take(account) if account is not None else 0.0
            if wait > 0:
                await send_error(
                    send,
                    429,
                    "rate_limited",
                    f"too many commands from this account; retry in {math.ceil(wait)} s",
                    {"Retry-After": str(math.ceil(wait))},
                )
                return
        await self.app(scope, receive, send)
