"""Sends pending webhook deliveries: signed, retried with exponential backoff, then dead-lettered.

Receivers verify `X-Governance-Signature: sha256=<hex HMAC-SHA256 of the body with the
endpoint's secret>` and drop repeats by `X-Governance-Delivery`, which stays the same on every
attempt of one event to one endpoint (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass

from consumers import http
from consumers.processing import STORE_ERRORS
from consumers.webhooks import store
from projections.store import ViewStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Governance-Signature"
DELIVERY_HEADER = "X-Governance-Delivery"
EVENT_HEADER = "X-Governance-Event"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
_MICROS = 1_000_000


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff: float
    backoff_max: float

    def delay(self, attempts_made: int) -> float:
        """The wait after the `attempts_made`-th failed attempt: backoff, 2x, 4x ... up to max."""
        return float(min(self.backoff * 2 ** (attempts_made - 1), self.backoff_max))


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    http_status: int | None
    error: str | None


class DeliveryWorker:
    def __init__(
        self, views: ViewStore, policy: RetryPolicy, timeout: float, batch_size: int = 20
    ) -> None:
        self.views = views
        self.policy = policy
        self.timeout = timeout
        self.batch_size = batch_size
        self.wake = threading.Event()

    def run_once(self) -> int:
        """Attempt every delivery due now; return how many were attempted."""
        now = _now()
        lease = int((self.timeout + 5) * _MICROS)
        due = store.claim_due(self.views, now, self.batch_size, lease)
        for delivery in due:
            self._record(delivery, self.attempt(delivery))
        return len(due)

    def attempt(self, delivery: store.Due) -> Outcome:
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": "governance-webhooks/1",
            SIGNATURE_HEADER: sign(delivery.secret, delivery.body),
            DELIVERY_HEADER: delivery.delivery_id,
            EVENT_HEADER: delivery.event_type,
        }
        try:
            answer = http.send(
                "POST", delivery.url, headers=headers, body=delivery.body, timeout=self.timeout
            )
        except (http.Unreachable, ValueError) as error:
            return Outcome(False, None, str(error)[:500])
        if 200 <= answer.status < 300:
            return Outcome(True, answer.status, None)
        return Outcome(False, answer.status, f"answered HTTP {answer.status}")

    def _record(self, delivery: store.Due, outcome: Outcome) -> None:
        now = _now()
        attempts = delivery.attempts + 1
        if outcome.delivered:
            status, next_at = store.DELIVERED, now
        elif attempts >= self.policy.max_attempts:
            status, next_at = store.DEAD, now
            log.warning("webhook delivery %s is a dead letter: %s", delivery.delivery_id, outcome)
        else:
            status = store.PENDING
            next_at = now + int(self.policy.delay(attempts) * _MICROS)
        with self.views.transaction() as tx:
            store.record_attempt(
                tx,
                delivery,
                status=status,
                http_status=outcome.http_status,
                error=outcome.error,
                next_attempt_at=next_at,
                now=now,
            )

    def run(self, stop: threading.Event, idle_wait: float) -> None:
        """Deliver until `stop` is set; sleep when nothing is due until woken or `idle_wait`."""
        while not stop.is_set():
            try:
                attempted = self.run_once()
            except STORE_ERRORS as error:
                log.warning("webhook delivery paused: %s", error)
                stop.wait(1.0)
                continue
            if attempted == 0:
                self.wake.wait(idle_wait)
                self.wake.clear()


def _now() -> int:
    return time.time_ns() // 1000
