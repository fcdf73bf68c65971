"""Builds each consumer from the settings, for its own process or for the embedded default."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from consumers import enforce_block, processing
from consumers.enforce_block import EnforceBlock
from consumers.processing import Processor
from consumers.webhooks import store as webhook_store
from consumers.webhooks.delivery import DeliveryWorker, RetryPolicy
from consumers.webhooks.reaction import NAME as WEBHOOKS
from consumers.webhooks.reaction import Webhooks
from governance.auth import Role, TokenCodec
from governance.config import Settings
from projections.store import ViewStore

NAMES = (enforce_block.NAME, WEBHOOKS)


@dataclass
class Consumer:
    """A reaction behind its processor, and the background loops it needs (delivery retries)."""

    processor: Processor
    loops: list[Callable[[threading.Event], None]] = field(default_factory=list)


def build(name: str, settings: Settings, views: ViewStore, tokens: TokenCodec) -> Consumer:
    if name == enforce_block.NAME:
        return Consumer(Processor(views, _enforce_block(settings, tokens)))
    if name == WEBHOOKS:
        worker = DeliveryWorker(
            views,
            RetryPolicy(
                settings.webhook_max_attempts,
                settings.webhook_backoff,
                settings.webhook_backoff_max,
            ),
            settings.webhook_timeout,
        )
        processor = Processor(views, Webhooks(), after_commit=worker.wake.set)
        return Consumer(processor, [lambda stop: worker.run(stop, settings.relay_idle_wait)])
    raise ValueError(f"no consumer named {name!r}; there are: {', '.join(NAMES)}")


def _enforce_block(settings: Settings, tokens: TokenCodec) -> EnforceBlock:
    def mint(org_id: str, on_behalf_of: str) -> str:
        return tokens.issue(
            sub=enforce_block.SERVICE_ACCOUNT,
            org=org_id,
            roles=[Role.ORG_ADMIN],
            ttl_seconds=settings.service_token_ttl_seconds,
            on_behalf_of=on_behalf_of,
        )

    return EnforceBlock(settings.api_base_url(), mint, timeout=settings.webhook_timeout)


def create_tables(views: ViewStore) -> None:
    """Every consumer's tables (run by `governance migrate` and by the embedded default)."""
    with views.transaction() as tx:
        for statement in (*processing.TABLES, *EnforceBlock.tables, *webhook_store.TABLES):
            tx.execute(statement)
