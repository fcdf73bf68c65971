"""Answers to commands sent with an `Idempotency-Key`, kept so a retry gets the first answer.

One row per (account, key), in the database the service uses (the SQLite views file or the
PostgreSQL schema), so answers survive a restart and are shared by every API process. A row is
claimed before the command runs (its answer empty while in flight) and completed after; a
claim older than the lease is taken over, since the process that made it is gone.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from projections.store import Tx, ViewStore

TABLE = """CREATE TABLE IF NOT EXISTS idempotency_keys (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    claim TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body TEXT,
    created_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    PRIMARY KEY (account, key)
)"""
INDEX = "CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (created_at)"


@dataclass(frozen=True)
class Claimed:
    """This request runs the command; `claim` identifies it when the answer is stored."""

    claim: str


@dataclass(frozen=True)
class Replay:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InFlight:
    """The same key is being answered right now by another request."""


class Mismatch:
    """The key was used for a different request (method, path or body)."""


Outcome = Claimed | Replay | InFlight | Mismatch
_SECOND = 1_000_000  # timestamps are integer microseconds, as in the read models


def _now() -> int:
    return time.time_ns() // 1000


class IdempotencyStore:
    def __init__(
        self, store: ViewStore, ttl: timedelta, lease: timedelta = timedelta(seconds=60)
    ) -> None:
        self._store = store
        self._ttl = int(ttl.total_seconds() * _SECOND)
        self._lease = int(lease.total_seconds() * _SECOND)
        self._next_purge = 0.0

    def create_table(self) -> None:
        with self._store.transaction() as tx:
            tx.execute(TABLE)
            tx.execute(INDEX)

    def claim(self, account: str, key: str, fingerprint: str) -> Outcome:
        self._purge_now_and_then()
        now, claim = _now(), uuid.uuid4().hex
        row: dict[str, object] = {"a": account, "k": key, "f": fingerprint, "c": claim, "now": now}
        with self._store.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO idempotency_keys (account, key, fingerprint, claim, created_at,"
                " locked_until) VALUES (%(a)s, %(k)s, %(f)s, %(c)s, %(now)s, %(until)s)"
                " ON CONFLICT (account, key) DO NOTHING",
                row | {"until": now + self._lease},
            )
            if inserted == 1:
                return Claimed(claim)
            found = tx.one(
                "SELECT fingerprint, claim, status, headers, body, created_at, locked_until"
                " FROM idempotency_keys WHERE account = %(a)s AND key = %(k)s",
                row,
            )
            if found is None:  # purged between the two statements: claim it afresh
                return self._take_over(tx, row, now, None)
            if found["created_at"] < now - self._ttl:
                return self._take_over(tx, row, now, found["claim"])
            if found["fingerprint"] != fingerprint:
                return Mismatch()
            if found["status"] is not None:
                return Replay(
                    found["status"],
                    [(k, v) for k, v in json.loads(found["headers"])],
                    base64.b64decode(found["body"]),
                )
            if found["locked_until"] < now:
                return self._take_over(tx, row, now, found["claim"])
            return InFlight()

    def _take_over(
        self, tx: Tx, row: dict[str, object], now: int, old_claim: str | None
    ) -> Outcome:
        """Claim a key whose row expired or whose claimant is gone; lose to a faster taker."""
        until = {"until": now + self._lease, "old": old_claim}
        if old_claim is None:
            taken = tx.execute(
                "INSERT INTO idempotency_keys (account, key, fingerprint, claim, created_at,"
                " locked_until) VALUES (%(a)s, %(k)s, %(f)s, %(c)s, %(now)s, %(until)s)"
                " ON CONFLICT (account, key) DO NOTHING",
                row | until,
            )
        else:
            taken = tx.execute(
                "UPDATE idempotency_keys SET fingerprint = %(f)s, claim = %(c)s, status = NULL,"
                " headers = NULL, body = NULL, created_at = %(now)s, locked_until = %(until)s"
                " WHERE account = %(a)s AND key = %(k)s AND claim = %(old)s",
                row | until,
            )
        return Claimed(str(row["c"])) if taken == 1 else InFlight()

    def complete(
        self,
        account: str,
        key: str,
        claim: str,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        with self._store.transaction() as tx:
            tx.execute(
                "UPDATE idempotency_keys SET status = %(s)s, headers = %(h)s, body = %(b)s"
                " WHERE account = %(a)s AND key = %(k)s AND claim = %(c)s",
                {
                    "a": account,
                    "k": key,
                    "c": claim,
                    "s": status,
                    "h": json.dumps(headers),
                    "b": base64.b64encode(body).decode("ascii"),
                },
            )

    def release(self, account: str, key: str, claim: str) -> None:
        """Forget a claim whose command did not finish: a retry may run it again."""
        with self._store.transaction() as tx:
            tx.execute(
                "DELETE FROM idempotency_keys"
                " WHERE account = %(a)s AND key = %(k)s AND claim = %(c)s",
                {"a": account, "k": key, "c": claim},
            )

    def _purge_now_and_then(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + 600
        with self._store.transaction() as tx:
            tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < %(t)s", {"t": _now() - self._ttl}
            )
