"""A reaction is applied once per event, whatever the transport redelivers."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.cloudevents import CloudEvent
from consumers.processing import Effect, Outcome, Processor, ReactionFailed
from consumers.webhooks.delivery import RetryPolicy, sign
from governance.auth import Role, TokenCodec
from projections.store import SQLiteViewStore, Tx


class Ledger:
    """Counts outside effects and records each applied event in the effect's own table."""

    name = "ledger"
    tables = ("CREATE TABLE IF NOT EXISTS ledger (event_id TEXT NOT NULL)",)

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def wants(self, event: CloudEvent) -> bool:
        return bool(event["type"] != "ignored")

    def react(self, event: CloudEvent) -> Effect:
        self.calls += 1
        if self.fail:
            raise ReactionFailed("away")

        def record(tx: Tx) -> None:
            tx.execute("INSERT INTO ledger (event_id) VALUES (%(e)s)", {"e": event["id"]})

        return record


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteViewStore]:
    views = SQLiteViewStore(tmp_path / "views.sqlite")
    yield views
    views.close()


def event(event_id: str, kind: str = "io.governance.x.v1") -> CloudEvent:
    return {"id": event_id, "type": kind, "position": 1, "data": {}}


def ledger_rows(store: SQLiteViewStore) -> list[str]:
    with store.read() as tx:
        return [row["event_id"] for row in tx.all("SELECT event_id FROM ledger")]


def test_a_redelivered_event_is_dropped(store: SQLiteViewStore) -> None:
    ledger = Ledger()
    processor = Processor(store, ledger)
    processor.create_tables()
    assert processor.process(event("e1")) is True
    assert processor.process(event("e1")) is False
    assert processor.process(event("e2")) is True
    assert processor.process(event("e3", "ignored")) is False
    assert ledger_rows(store) == ["e1", "e2"]
    assert ledger.calls == 2


def test_a_failed_effect_records_nothing_and_is_retried(store: SQLiteViewStore) -> None:
    ledger = Ledger()
    processor = Processor(store, ledger)
    processor.create_tables()
    ledger.fail = True
    with pytest.raises(ReactionFailed):
        processor.process(event("e1"))
    assert not processor.processed("e1")
    ledger.fail = False
    assert processor.process(event("e1")) is True
    assert ledger_rows(store) == ["e1"]


def test_each_event_is_reported_with_what_became_of_it(store: SQLiteViewStore) -> None:
    ledger = Ledger()
    processor = Processor(store, ledger)
    processor.create_tables()
    seen: list[tuple[str, Outcome]] = []
    processor.observers.append(lambda name, outcome: seen.append((name, outcome)))
    processor.process(event("e1"))
    processor.process(event("e1"))
    processor.process(event("e2", "ignored"))
    ledger.fail = True
    with pytest.raises(ReactionFailed):
        processor.process(event("e3"))
    assert seen == [
        ("ledger", Outcome.APPLIED),
        ("ledger", Outcome.DUPLICATE),
        ("ledger", Outcome.IGNORED),
        ("ledger", Outcome.FAILED),
    ]


def test_two_consumers_keep_separate_records(store: SQLiteViewStore) -> None:
    first, second = Ledger(), Ledger()
    second.name = "other"
    Processor(store, first).create_tables()
    assert Processor(store, first).process(event("e1"))
    assert Processor(store, second).process(event("e1"))
    assert ledger_rows(store) == ["e1", "e1"]


def test_webhook_signature_and_backoff() -> None:
    expected = hmac.new(b"key", b"body", hashlib.sha256).hexdigest()
    assert sign("key", b"body") == "sha256=" + expected
    policy = RetryPolicy(max_attempts=6, backoff=2.0, backoff_max=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_service_token_names_whom_it_acts_for() -> None:
    codec = TokenCodec("k" * 32)
    token = codec.issue(
        sub="svc:enforce-block", org="acme", roles=[Role.ORG_ADMIN], on_behalf_of="olga"
    )
    principal = codec.verify(token)
    assert (principal.account_id, principal.on_behalf_of) == ("svc:enforce-block", "olga")
    assert codec.verify(codec.issue(sub="ann", org="acme", roles=[Role.USER])).on_behalf_of is None
