"""Two batches in flight: a position is recorded only after its batch and every batch before it
were acknowledged, and a failure sends everything unrecorded again from the recorded position.

The producer here is a stand-in whose acknowledgements the test decides; the relay on the real
broker is tested in tests/integration (test_relay.py, test_kafka_faults.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from governance.relay.messages import Message
from governance.relay.pages import Batch
from governance.relay.publisher import PublishFailed, Relay

BATCH = 4  # pages of 1, 2, then 4 events through a backlog


class Acknowledgement:
    """A producer future: done and succeeded, failed, or never done."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    @property
    def is_done(self) -> bool:
        return self.outcome != "pending"

    def failed(self) -> bool:
        return self.outcome == "failed"

    @property
    def exception(self) -> Any:
        return KafkaTimeoutError("no leader")

    def get(self, timeout: float) -> None:
        raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")


class Producer:
    def __init__(self, outcomes: dict[int, str]) -> None:
        self.outcomes = outcomes  # by the value's position; others succeed
        self.sent: list[int] = []
        self.flushes = 0

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Acknowledgement:
        position = int(value)
        self.sent.append(position)
        return Acknowledgement(self.outcomes.get(position, "acknowledged"))

    def flush(self, timeout: float) -> None:
        self.flushes += 1

    def close(self, timeout: float) -> None:
        pass


class Log:
    """Pages of a log of `head` events, one message each."""

    def __init__(self, head: int, *, parallel: bool) -> None:
        self.head = head
        self.parallel = parallel
        self.reads: list[tuple[int, int]] = []

    def start(self) -> None:
        pass

    def read(self, after: int, limit: int) -> Batch | None:
        self.reads.append((after, limit))
        positions = range(after + 1, min(after + limit, self.head) + 1)
        if not positions:
            return None
        messages = [Message("events", b"s1", str(p).encode()) for p in positions]
        return Batch(messages, positions[-1], len(positions), len(positions) == limit)

    def close(self) -> None:
        pass


class Positions:
    def __init__(self) -> None:
        self.recorded: list[int] = []

    def get(self) -> int:
        return self.recorded[-1] if self.recorded else 0

    def set(self, position: int) -> None:
        self.recorded.append(position)


def relay(log: Log, producer: Producer, positions: Positions) -> Relay:
    return Relay(log, positions, lambda: producer, batch_size=BATCH, timeout=0.01)  # type: ignore[arg-type]


@pytest.mark.parametrize("parallel", [True, False])
def test_a_backlog_is_recorded_one_batch_behind_in_growing_pages(parallel: bool) -> None:
    log, producer, positions = Log(12, parallel=parallel), Producer({}), Positions()
    publisher = relay(log, producer, positions)
    try:
        assert publisher.run_batch() == 1
        assert positions.recorded == []  # in flight: not yet acknowledged
        assert publisher.run_batch() == 2
        assert positions.recorded == [1]  # the first, once the second was handed over
        assert publisher.run_batch() == 4
        assert publisher.run_batch() == 4
        assert positions.recorded == [1, 3, 7]
        assert producer.flushes == 0  # through a backlog, no flush
        assert publisher.run_batch() == 1  # a short page: caught up, so flush and record all
        assert positions.recorded == [1, 3, 7, 11, 12]
        assert producer.flushes == 1
        assert publisher.run_batch() == 0
    finally:
        publisher.close()
    assert producer.sent == list(range(1, 13))
    assert log.reads == [(0, 1), (1, 2), (3, 4), (7, 4), (11, 4), (12, 1)]


def test_a_failed_batch_and_the_one_after_it_go_again_from_the_recorded_position() -> None:
    log, producer, positions = Log(12, parallel=True), Producer({5: "failed"}), Positions()
    publisher = relay(log, producer, positions)
    try:
        publisher.run_batch()  # 1, in flight
        publisher.run_batch()  # 2-3 in flight; 1 recorded
        publisher.run_batch()  # 4-7 in flight; 3 recorded
        with pytest.raises(PublishFailed, match="no leader"):
            publisher.run_batch()  # 8-11 sent; 4-7 not acknowledged
        assert positions.recorded == [1, 3]
        producer.outcomes.clear()  # the broker is back
        while publisher.run_batch():
            pass
    finally:
        publisher.close()
    # 4 to 11 went twice, in log order both times, from a small page again; nothing was
    # recorded past an unacknowledged event.
    assert producer.sent == [*range(1, 12), *range(4, 13)]
    assert positions.recorded == [1, 3, 4, 6, 10, 12]


def test_a_batch_never_acknowledged_in_time_is_never_recorded() -> None:
    log, producer, positions = Log(5, parallel=False), Producer({1: "pending"}), Positions()
    publisher = relay(log, producer, positions)
    try:
        publisher.run_batch()  # 1, in flight
        with pytest.raises(PublishFailed, match="Timeout"):
            publisher.run_batch()  # 2-3 sent; 1 never acknowledged
        assert positions.recorded == []
    finally:
        publisher.close()


def test_a_graceful_stop_records_the_batch_in_flight() -> None:
    log, producer, positions = Log(6, parallel=True), Producer({}), Positions()
    publisher = relay(log, producer, positions)
    stop = threading.Event()
    publisher.run_batch()  # 1 in flight: a full page, a backlog behind it
    stop.set()
    publisher.run(stop, idle_wait=0.01)  # stops before the next batch
    publisher.close()
    assert positions.recorded == [1]
    assert producer.sent == [1]
