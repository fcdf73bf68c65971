"""The leader/follower committer alone, with a commit step that records what it was given."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from eventsourcing.persistence import StoredEvent

from governance.groupcommit import GroupCommitter, Outcomes, PendingSave


def event(version: int) -> StoredEvent:
    return StoredEvent(originator_id="a", originator_version=version, topic="t", state=b"")


class Store:
    """Hands out positions in order; can be held (slow) and can fail on a chosen version."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.head = 0
        self.hold = threading.Event()
        self.hold.set()
        self.poison: int | None = None

    def commit(self, batch: Sequence[PendingSave]) -> Outcomes:
        self.hold.wait(5)
        if any(e.originator_version == self.poison for p in batch for e in p.events):
            raise ValueError("poisoned")
        self.batches.append(len(batch))
        outcomes: Outcomes = {}
        for pending in batch:
            outcomes[pending] = list(range(self.head + 1, self.head + 1 + len(pending.events)))
            self.head += len(pending.events)
        return outcomes


def run_together(committer: GroupCommitter, store: Store, versions: list[int]) -> list[object]:
    results: list[object] = [None] * len(versions)

    def submit(i: int) -> None:
        try:
            results[i] = committer.submit([event(versions[i])])
        except Exception as exc:  # noqa: BLE001 - the test looks at each outcome
            results[i] = exc

    store.hold.clear()
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(versions))]
    threads[0].start()
    while not committer.committing:
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    while committer.waiting < len(versions) - 1:
        time.sleep(0.001)
    store.hold.set()
    for thread in threads:
        thread.join(5)
    return results


def test_a_save_alone_is_committed_at_once_in_a_batch_of_its_own() -> None:
    store = Store()
    committer = GroupCommitter(store.commit)
    assert committer.submit([event(1), event(2)]) == [1, 2]
    assert committer.submit([event(3)]) == [3]
    assert store.batches == [1, 1]


def test_saves_waiting_behind_a_commit_share_the_next_one_up_to_the_bound() -> None:
    store = Store()
    committer = GroupCommitter(store.commit, max_batch=4)
    sizes: list[int] = []
    committer.observers.append(sizes.append)
    results = run_together(committer, store, list(range(1, 11)))
    assert store.batches == [1, 4, 4, 1] == sizes
    assert sorted(p for r in results for p in r) == list(range(1, 11))  # type: ignore[attr-defined]


def test_a_failing_batch_is_retried_save_by_save_so_only_the_culprit_fails() -> None:
    store = Store()
    store.poison = 3
    committer = GroupCommitter(store.commit)
    results = run_together(committer, store, [1, 2, 3, 4, 5])
    assert isinstance(results[2], ValueError)
    assert all(isinstance(r, list) for i, r in enumerate(results) if i != 2)
    assert store.batches == [1, 1, 1, 1]  # the leader, then the other three alone


def test_an_interrupted_leader_wakes_its_followers_with_the_interruption() -> None:
    store = Store()
    plain = store.commit

    def interrupted(batch: Sequence[PendingSave]) -> Outcomes:
        if len(batch) > 1:
            raise KeyboardInterrupt
        return plain(batch)

    committer = GroupCommitter(interrupted)
    results: list[BaseException] = []

    def submit(version: int) -> None:
        try:
            committer.submit([event(version)])
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            results.append(exc)

    store.hold.clear()
    leader = threading.Thread(target=submit, args=(1,))
    leader.start()
    while not committer.committing:
        time.sleep(0.001)
    followers = [threading.Thread(target=submit, args=(v,)) for v in (2, 3, 4)]
    for thread in followers:
        thread.start()
    while committer.waiting < 3:
        time.sleep(0.001)
    store.hold.set()
    for thread in [leader, *followers]:
        thread.join(5)
        assert not thread.is_alive()
    # The second leader's batch was interrupted: each of its three callers got the interruption.
    assert len(results) == 3 and all(isinstance(r, KeyboardInterrupt) for r in results)
    assert not committer.committing
