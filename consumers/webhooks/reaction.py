"""The webhooks reaction: an event becomes one pending delivery per subscribed endpoint."""

from __future__ import annotations

import json
import time

from consumers.cloudevents import CloudEvent
from consumers.processing import Effect
from consumers.webhooks import store
from projections.store import Tx

NAME = "webhooks"


class Webhooks:
    name = NAME
    tables = store.TABLES

    def wants(self, event: CloudEvent) -> bool:
        return True

    def react(self, event: CloudEvent) -> Effect:
        # The body every attempt sends and signs: the CloudEvent in structured JSON mode.
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()

        def enqueue(tx: Tx) -> None:
            store.enqueue(tx, event, body, time.time_ns() // 1000)

        return enqueue
