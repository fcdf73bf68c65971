"""Rebuilds every read model from position zero into a new generation, then switches to it.

A replay reads the log in pages, decodes each event once and hands it to every projection's fold
(`Projection.fold`): folds keep current state in memory and emit rows, which are loaded in bulk
(projections/bulk.py). On a large log the folds are shared out between worker processes, each
reading the log itself, so the machine's cores work side by side. Projections without a fold are
then built by the ordinary batched projector, which also catches every projection up with the
events written while the rebuild ran.

Exactly once: the rows are loaded into a generation nobody reads yet, and its tracking positions
are written after every row is in; a crash leaves a half-built generation that the next replay
drops. From there the ordinary projector applies each event once per projection, as always.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import ApplicationRecorder, Mapper

from projections.base import Fold, Projection
from projections.bulk import BulkTarget, SQLiteBulkTarget, TargetSpec, table_names
from projections.compare import Check, compare, snapshot
from projections.generations import Generations, PostgresGenerations, SQLiteGenerations
from projections.projector import Projector
from projections.store import ViewStore

# Called with (position reached, head position) as the rebuild goes.
Progress = Callable[[int, int], None]
Log = tuple[ApplicationRecorder, Mapper[Any]]


class LogSource(Protocol):
    """Opens the event log in a worker process; it is pickled and sent there."""

    def open(self) -> AbstractContextManager[Log]: ...


def _quiet(_: int, __: int) -> None:
    pass


def has_fold(projection: Projection) -> bool:
    return type(projection).fold is not Projection.fold


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Folds hold millions of objects that live to the end: scanning them again and again for
    reference cycles made a 1M-event fold several times slower. Nothing they make is cyclic."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def fold_log(
    log: Log,
    folds: Mapping[str, Fold],
    stops: Mapping[str, int],
    target: BulkTarget,
    page: int,
    progress: Callable[[int], None],
) -> int:
    """Feed every event up to the highest stop to the folds; return the position reached."""
    recorder, mapper = log
    stop = max(stops.values(), default=0)
    active = [(stops[name], fold.apply) for name, fold in folds.items()]
    position = 0
    decode = mapper.to_domain_event
    with _no_cyclic_gc():
        while active and position < stop:
            notifications = recorder.select_notifications(
                start=position, limit=page, stop=stop, inclusive_of_start=False
            )
            if not notifications:
                break
            if all(limit >= notifications[-1].id for limit, _ in active):
                applies = [apply for _, apply in active]
                for notification in notifications:
                    event = decode(notification)
                    for apply in applies:
                        apply(event, notification.id)
            else:  # a check stops projections at different positions
                for notification in notifications:
                    event = decode(notification)
                    for limit, apply in active:
                        if notification.id <= limit:
                            apply(event, notification.id)
            position = notifications[-1].id
            target.maybe_flush()
            progress(position)
        for fold in folds.values():
            fold.finish()
        target.flush()
    return stop if position >= stop else position


@dataclass
class Rebuilder:
    """Builds generations from the log: `replay` for real, `check` to compare with the live one."""

    generations: Generations
    recorder: ApplicationRecorder
    mapper: Mapper[Any]
    projections: Sequence[Projection]
    batch_size: int = 1000
    page: int = 5000
    progress: Progress = field(default=_quiet)
    # Worker processes for the folds (1: fold here); used from `parallel_from` events on.
    workers: int = 1
    source: LogSource | None = None
    parallel_from: int = 100_000

    def replay(self) -> int:
        """Build the next generation, catch it up, switch to it; return its number."""
        with self.generations.exclusive():
            self.generations.drop_unused()
            generation = self.generations.next_number()
            self.generations.create(generation)
            store = self.build(generation)
            try:
                projector = self._projector(store, self.projections)
                self._catch_up(projector)
                self.generations.switch(generation)
                # Whatever was written between the last batch and the switch.
                projector.catch_up()
            finally:
                store.close()
        return generation

    def check(self) -> Check:
        """Rebuild into a scratch generation, up to where the live one is, and compare them."""
        with self.generations.exclusive():
            return _check(self)

    def build(self, generation: int, limits: Mapping[str, int] | None = None) -> ViewStore:
        """Fill `generation` from position zero up to the head (or to each projection's limit)."""
        head = self.recorder.max_notification_id() or 0
        stops = {p.name: (limits[p.name] if limits else head) for p in self.projections}
        spec = _spec(self.generations, generation)
        folding = [p for p in self.projections if has_fold(p)]
        workers = min(self.workers, len(folding))
        if workers > 1 and self.source is not None and head >= self.parallel_from:
            self._fold_in_workers(spec, folding, stops, workers, self.source)
        else:
            self._fold_here(spec, folding, stops)
        store = self.generations.open(generation)
        for projection in self.projections:
            if not has_fold(projection):
                # Row by row, but reading only the events it handles.
                projector = Projector(
                    self.recorder,
                    self.mapper,
                    store,
                    [projection],
                    self.batch_size,
                    topics=projection.topics(),
                )
                projector.catch_up(stop=stops[projection.name])
        return store

    def _fold_here(
        self, spec: TargetSpec, folding: Sequence[Projection], stops: Mapping[str, int]
    ) -> None:
        target = spec.open(self.projections)
        try:
            target.create_tables()
            folds = {p.name: fold for p in folding if (fold := p.fold(target)) is not None}
            stop = max(stops.values(), default=0)
            self.progress(0, stop)
            reached = fold_log(
                (self.recorder, self.mapper),
                folds,
                {name: stops[name] for name in folds},
                target,
                self.page,
                lambda position: self.progress(position, stop),
            )
            target.finish(
                {
                    p.name: min(reached, stops[p.name]) if p.name in folds else 0
                    for p in self.projections
                }
            )
        finally:
            target.close()

    def _fold_in_workers(
        self,
        spec: TargetSpec,
        folding: Sequence[Projection],
        stops: Mapping[str, int],
        workers: int,
        source: LogSource,
    ) -> None:
        # Every table exists before the workers start; each worker then loads its share and
        # builds its own indexes, side by side. On SQLite only worker 0 writes the generation's
        # file itself (one writer per file): the others write part files, copied in at the end.
        creating = spec.open(self.projections)
        try:
            creating.create_tables()
            creating.commit()
        finally:
            creating.close()
        groups = _share_out(folding, workers)
        try:
            reached = _run_workers(source, spec, groups, stops, self.page, self.progress)
            merged = [p for group in groups[1:] for p in group] if spec.path is not None else []
            rest = [*merged, *(p for p in self.projections if not has_fold(p))]
            target = spec.open(rest)
            try:
                if isinstance(target, SQLiteBulkTarget):
                    for number, group in enumerate(groups[1:], start=1):
                        target.absorb(spec.part(number), [t for p in group for t in table_names(p)])
                target.build_indexes()
                target.track({p.name: reached.get(p.name, 0) for p in self.projections})
                target.commit()
            finally:
                target.close()
        finally:
            if spec.path is not None:
                for number in range(1, len(groups)):
                    _remove(spec.part(number))

    def _projector(self, store: ViewStore, projections: Sequence[Projection]) -> Projector:
        return Projector(self.recorder, self.mapper, store, projections, self.batch_size)

    def _catch_up(self, projector: Projector) -> None:
        while True:
            head = self.recorder.max_notification_id() or 0
            if not projector.run_batch():
                return
            self.progress(projector.position(), head)


def _spec(generations: Generations, generation: int) -> TargetSpec:
    if isinstance(generations, SQLiteGenerations):
        return TargetSpec(path=generations.path(generation))
    assert isinstance(generations, PostgresGenerations)
    return TargetSpec(url=generations.url, schema=generations.schema_of(generation))


def _remove(path: os.PathLike[str]) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            os.remove(f"{os.fspath(path)}{suffix}")


def _share_out(folding: Sequence[Projection], workers: int) -> list[list[Projection]]:
    """Heaviest folds first, each to the least loaded worker."""
    groups: list[list[Projection]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for projection in sorted(folding, key=lambda p: -p.rebuild_weight):
        lightest = loads.index(min(loads))
        groups[lightest].append(projection)
        loads[lightest] += projection.rebuild_weight
    # The group with the most indexes first: on SQLite, worker 0 builds its indexes itself.
    return sorted((g for g in groups if g), key=lambda g: -sum(map(_index_count, g)))


def _index_count(projection: Projection) -> int:
    return len(projection.tables) - len(table_names(projection))


@dataclass(frozen=True)
class _Task:
    source: LogSource
    spec: TargetSpec
    number: int
    projections: Sequence[Projection]
    stops: Mapping[str, int]
    page: int


def _worker(task: _Task, positions: Any, errors: Any) -> None:
    """One worker process: read and decode the whole log, fold its share, load the rows."""
    try:
        part = task.number if task.spec.path is not None and task.number > 0 else None
        target = task.spec.open(task.projections, part=part)
        try:
            if part is not None:
                target.create_tables()
            folds = {p.name: fold for p in task.projections if (fold := p.fold(target)) is not None}
            with task.source.open() as log:

                def progress(position: int) -> None:
                    positions[task.number] = position

                reached = fold_log(log, folds, task.stops, target, task.page, progress)
            if part is None:  # its tables are in the generation itself: index them now
                target.build_indexes()
            target.commit()
            positions[task.number] = reached
        finally:
            target.close()
    except BaseException:
        errors.put(f"worker {task.number}: {traceback.format_exc()}")
        raise


def _run_workers(
    source: LogSource,
    spec: TargetSpec,
    groups: Sequence[Sequence[Projection]],
    stops: Mapping[str, int],
    page: int,
    progress: Progress,
) -> dict[str, int]:
    # Spawned, not forked: the parent holds connection pools and threads.
    context = multiprocessing.get_context("spawn")
    positions = context.Array("q", len(groups))
    errors = context.Queue()
    processes = []
    for number, group in enumerate(groups):
        task = _Task(source, spec, number, group, {p.name: stops[p.name] for p in group}, page)
        process = context.Process(target=_worker, args=(task, positions, errors), daemon=True)
        process.start()
        processes.append(process)
    stop = max(stops.values(), default=0)
    try:
        while any(p.is_alive() for p in processes):
            progress(min(positions[:]), stop)
            time.sleep(0.2)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    failed = [p for p in processes if p.exitcode != 0]
    if failed:
        message = errors.get(timeout=1) if not errors.empty() else "a worker died"
        raise RuntimeError(f"the rebuild failed in a worker process:\n{message}")
    progress(min(positions[:]), stop)
    return {p.name: min(positions[n], stops[p.name]) for n, g in enumerate(groups) for p in g}


def _check(rebuilder: Rebuilder) -> Check:
    generations = rebuilder.generations
    live = generations.live()
    if live is None:
        raise RuntimeError("there is no live generation to check: run `governance migrate`")
    scratch = generations.next_number()
    generations.create(scratch)
    try:
        current = snapshot(generations, live)
        try:
            positions = current.positions()
            names = [p.name for p in rebuilder.projections]
            notes = [
                f"{name}: not built in the live generation yet"
                for name in names
                if name not in positions
            ]
            limits = {name: positions.get(name, 0) for name in names}
            rebuilder.build(scratch, limits).close()
            rebuilt = snapshot(generations, scratch)
            try:
                differences, more = compare(current, rebuilt)
            finally:
                rebuilt.close()
        finally:
            current.close()
    finally:
        generations.drop(scratch)
    return Check(live, limits, differences, [*notes, *more])
