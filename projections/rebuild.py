"""Rebuilds every read model from position zero into a new generation, then switches to it.

A replay reads the log in pages, decodes each event once and hands it to every projection's fold
(`Projection.fold`): folds keep current state in memory and emit rows, which are loaded in bulk
(projections/bulk.py). A projection without a fold is built by its own handlers in the same pass,
writing row by row into the load's transaction. On a large log the folds are shared out between
worker processes, each reading the log itself, so the machine's cores work side by side. The
ordinary batched projector then catches every projection up with the events written while the
rebuild ran.

Exactly once: the rows are loaded into a generation nobody reads yet, and its tracking positions
are written after every row is in; a crash leaves a half-built generation that the next replay
drops. From there the ordinary projector applies each event once per projection, as always.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from eventsourcing.persistence import ApplicationRecorder, Mapper

from governance.audit.seal import RawReader, RawRow
from projections.base import Fold, Projection, has_fold
from projections.bulk import BulkTarget, SQLiteBulkTarget, TargetSpec, table_names
from projections.compare import Check, compare, snapshot
from projections.decode import EventDecoder
from projections.generations import Generations, PostgresGenerations, SQLiteGenerations
from projections.projector import Projector
from projections.store import Tx, ViewStore

# Called with (position reached, head position) as the rebuild goes.
Progress = Callable[[int, int], None]
Log = tuple[ApplicationRecorder, Mapper[Any]]


class LogSource(Protocol):
    """Opens the event log in a worker process; it is pickled and sent there."""

    def open(self) -> AbstractContextManager[Log]: ...


def _quiet(_: int, __: int) -> None:
    pass


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


def fold_of(projection: Projection, target: BulkTarget) -> Fold:
    """The projection's fold, or its own handlers writing row by row into the generation."""
    fold = projection.fold(target) if has_fold(projection) else None
    return fold if fold is not None else _ByHandlers(projection, target.tx())


class _ByHandlers(Fold):
    """A read model without a fold, built by its handlers in the load's transaction (its tables
    have their keys and indexes from the start). Its events come with the same reading of the
    log as everyone's: no second pass reading the whole log to find them."""

    def __init__(self, projection: Projection, tx: Tx) -> None:
        self._projection, self._tx = projection, tx

    def apply(self, event: object, position: int) -> None:
        self._projection.apply(self._tx, event, position)


def _raw_reader(recorder: ApplicationRecorder) -> Callable[[int, int, int], Sequence[RawRow]]:
    select_raw = getattr(recorder, "select_raw", None)
    if select_raw is not None:
        return cast(RawReader, recorder).select_raw

    def rows(after: int, limit: int, stop: int) -> Sequence[RawRow]:
        page = recorder.select_notifications(
            start=after, limit=limit, stop=stop, inclusive_of_start=False
        )
        return [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in page]

    return rows


@dataclass(frozen=True)
class Share:
    """Which sites' events a worker folds into the site-partitioned projections: `index` of
    `count` (by a stable hash of the site id), and all events into the others it was given."""

    index: int = 0
    count: int = 1
    partitioned: frozenset[str] = frozenset()
    _sites: dict[bytes, bool | None] = field(default_factory=dict, compare=False, repr=False)

    # The site id is read from the stored JSON without decoding the event: a worker then
    # decodes only its share. Anything unusual (escapes, no match, compressed or encrypted
    # state) falls back to the decoded event, so every worker puts a site in the same share.
    def claims(self, state: bytes) -> bool | None:
        """Whether the event is in this share; None when only the decoded event can tell."""
        start = state.find(_SITE_KEY)
        if start < 0:
            return None
        start += len(_SITE_KEY)
        end = state.find(b'"', start)
        if state.find(_SITE_KEY, end) >= 0:  # two of them: which one is the event's?
            return None
        site_id = state[start:end]
        # Every event of a site asks the same question: answer it once per site.
        mine = self._sites.get(site_id)
        if mine is None:
            mine = None if b"\\" in site_id else zlib.crc32(site_id) % self.count == self.index
            self._sites[site_id] = mine
        return mine

    def claims_event(self, event: object) -> bool:
        site_id = getattr(event, "site_id", None)
        if not isinstance(site_id, str):
            return self.index == 0
        return zlib.crc32(site_id.encode()) % self.count == self.index


_SITE_KEY = b'"site_id":"'  # as the library's JSON encoder writes it (no spaces)


def fold_log(
    log: Log,
    folds: Mapping[str, Fold],
    stops: Mapping[str, int],
    target: BulkTarget,
    page: int,
    progress: Callable[[int], None],
    share: Share | None = None,
) -> int:
    """Feed every event up to the highest stop to the folds; return the position reached."""
    recorder, mapper = log
    stop = max(stops.values(), default=0)
    position = 0
    decode = EventDecoder(mapper)
    share = share or Share()
    mine = [(stops[n], f.apply) for n, f in folds.items() if n in share.partitioned]
    every = [(stops[n], f.apply) for n, f in folds.items() if n not in share.partitioned]
    mine_by_type = _ByType([f for n, f in folds.items() if n in share.partitioned])
    every_by_type = _ByType([f for n, f in folds.items() if n not in share.partitioned])
    read = _raw_reader(recorder)
    with _no_cyclic_gc():
        while (mine or every) and position < stop:
            rows = read(position, page, stop)
            if not rows:
                break
            if all(limit >= rows[-1][0] for limit, _ in (*mine, *every)):
                _fold_page(rows, decode, share, mine_by_type, every_by_type)
            else:  # a check stops projections at different positions
                for row in rows:
                    at = row[0]
                    event = None
                    applies = [apply for limit, apply in every if at <= limit]
                    if mine:
                        claimed = True if share.count == 1 else share.claims(row[4])
                        if claimed is None:
                            event = decode(row)
                            claimed = share.claims_event(event)
                        if claimed:
                            applies += [apply for limit, apply in mine if at <= limit]
                    if applies:
                        if event is None:
                            event = decode(row)
                        for apply in applies:
                            apply(event, at)
            position = rows[-1][0]
            target.maybe_flush()
            progress(position)
        for fold in folds.values():
            fold.finish()
        target.flush()
    return stop if position >= stop else position


class _ByType(dict[type, tuple[Callable[[Any, int], None], ...]]):
    """Per event class, the handlers of the folds that take it, looked up once per class: the
    hot loop then calls each handler directly, and skips the folds that ignore the event."""

    def __init__(self, folds: Sequence[Fold]) -> None:
        super().__init__()
        self.folds = folds

    def __missing__(self, event_class: type) -> tuple[Callable[[Any, int], None], ...]:
        found = tuple(h for f in self.folds if (h := f.handler_for(event_class)) is not None)
        self[event_class] = found
        return found


def _fold_page(
    rows: Sequence[RawRow],
    decode: Callable[[RawRow], Any],
    share: Share,
    mine: _ByType,
    every: _ByType,
) -> None:
    """The hot loop: every fold takes every event of the page (of its share, if partitioned)."""
    whole = share.count == 1
    claims = share.claims
    any_mine, any_every = bool(mine.folds), bool(every.folds)
    for row in rows:
        event = None
        if any_mine:
            claimed = True if whole else claims(row[4])
            if claimed is None:
                event = decode(row)
                claimed = share.claims_event(event)
            if claimed:
                if event is None:
                    event = decode(row)
                for apply in mine[type(event)]:
                    apply(event, row[0])
        if any_every:
            if event is None:
                event = decode(row)
            for apply in every[type(event)]:
                apply(event, row[0])


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
    # Seconds each phase of the last replay took (fold and load, indexes, catch-up, switch).
    phases: dict[str, float] = field(default_factory=dict)
    # CPU seconds the last replay's worker processes used, as each reported it when it ended.
    workers_cpu: float = 0.0

    def replay(self) -> int:
        """Build the next generation, catch it up, switch to it; return its number."""
        self.phases.clear()
        self.workers_cpu = 0.0
        with self.generations.exclusive():
            self.generations.drop_unused()
            generation = self.generations.next_number()
            self.generations.create(generation)
            store = self.build(generation)
            try:
                with self._phase("catch-up"):
                    projector = self._projector(store, self.projections)
                    self._catch_up(projector)
                with self._phase("switch"):
                    self.generations.switch(generation)
                    # Whatever was written between the last batch and the switch.
                    projector.catch_up()
            finally:
                store.close()
        return generation

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def check(self) -> Check:
        """Rebuild into a scratch generation, up to where the live one is, and compare them."""
        with self.generations.exclusive():
            return _check(self)

    def build(self, generation: int, limits: Mapping[str, int] | None = None) -> ViewStore:
        """Fill `generation` from position zero up to the head (or to each projection's limit)."""
        head = self.recorder.max_notification_id() or 0
        stops = {p.name: (limits[p.name] if limits else head) for p in self.projections}
        spec = _spec(self.generations, generation)
        folding = self.projections
        # Site-partitioned folds spread over any number of workers; others one per worker.
        spread = any(p.partitioned for p in folding)
        workers = self.workers if spread else min(self.workers, len(folding))
        if workers > 1 and self.source is not None and head >= self.parallel_from:
            self._fold_in_workers(spec, folding, stops, workers, self.source)
        else:
            with self._phase("fold and load"):
                self._fold_here(spec, folding, stops)
        return self.generations.open(generation)

    def _fold_here(
        self, spec: TargetSpec, folding: Sequence[Projection], stops: Mapping[str, int]
    ) -> None:
        target = spec.open(self.projections)
        try:
            target.create_tables()
            folds = {p.name: fold_of(p, target) for p in folding}
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
        # Every table exists before the workers start. Site-partitioned folds are built by every
        # worker, each for its share of the sites; the other folds go whole to one worker each.
        # On SQLite worker 0 writes the generation's file and the others part files (one writer
        # per file), copied in at the end; on PostgreSQL they all COPY into the schema.
        creating = spec.open(self.projections)
        try:
            creating.create_tables()
            creating.commit()
        finally:
            creating.close()
        partitioned = [p for p in folding if p.partitioned]
        groups = [
            [*partitioned, *whole]
            for whole in _share_out([p for p in folding if not p.partitioned], workers)
        ]
        try:
            with self._phase("fold and load (workers)"):
                reached, self.workers_cpu = _run_workers(
                    source, spec, groups, stops, self.page, self.progress
                )
            target = spec.open(self.projections)
            try:
                if isinstance(target, SQLiteBulkTarget):
                    for number, group in enumerate(groups[1:], start=1):
                        target.absorb(spec.part(number), [t for p in group for t in table_names(p)])
                with self._phase("indexes and ANALYZE"):
                    target.build_indexes(parallel=workers)
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
    """Heaviest folds first, each to the least loaded worker (one list per worker)."""
    groups: list[list[Projection]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for projection in sorted(folding, key=lambda p: -p.rebuild_weight):
        lightest = loads.index(min(loads))
        groups[lightest].append(projection)
        loads[lightest] += projection.rebuild_weight
    return groups


@dataclass(frozen=True)
class _Task:
    source: LogSource
    spec: TargetSpec
    share: Share
    projections: Sequence[Projection]
    stops: Mapping[str, int]
    page: int


def _worker(task: _Task, positions: Any, cpu: Any, errors: Any) -> None:
    """One worker process: read the whole log, fold its share, load the rows, and end."""
    number = task.share.index
    # Its cyclic collector stays off to the end: turned back on, it would first scan the fold's
    # millions of objects (about 1 s of CPU in each worker on a 1M-event log, measured).
    gc.disable()
    try:
        part = number if task.spec.path is not None and number > 0 else None
        target = task.spec.open(task.projections, part=part)
        try:
            if part is not None:
                target.create_tables()
            folds = {p.name: fold_of(p, target) for p in task.projections}
            with task.source.open() as log:

                def progress(position: int) -> None:
                    positions[number] = position

                reached = fold_log(log, folds, task.stops, target, task.page, progress, task.share)
            target.commit()
            positions[number] = reached
        finally:
            target.close()
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu[number] = used.ru_utime + used.ru_stime
    except BaseException:
        errors.put(f"worker {number}: {traceback.format_exc()}")
        raise
    # Everything is committed: end without freeing the fold's objects one by one (the parent
    # waits for this process to end before it builds the indexes).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_workers(
    source: LogSource,
    spec: TargetSpec,
    groups: Sequence[Sequence[Projection]],
    stops: Mapping[str, int],
    page: int,
    progress: Progress,
) -> tuple[dict[str, int], float]:
    """Fold in one process per group; return the positions reached and the workers' CPU seconds.

    Not forked from this process, which holds connection pools and threads: forked from a fork
    server, a clean process that imported the task's modules once (the log source's, the
    projections'). Spawned workers imported them each, ~0.6 s of CPU apiece, while the other
    worker needed the CPU. The server lives as long as this process: later replays start their
    workers at once.
    """
    context = multiprocessing.get_context("forkserver")
    needed = {__name__, type(source).__module__, *(type(p).__module__ for g in groups for p in g)}
    context.set_forkserver_preload(sorted(needed))
    positions = context.Array("q", len(groups))
    cpu = context.Array("d", len(groups))
    errors = context.Queue()
    processes = []
    for number, group in enumerate(groups):
        partitioned = frozenset(p.name for p in group if p.partitioned)
        share = Share(number, len(groups), partitioned)
        task = _Task(source, spec, share, group, {p.name: stops[p.name] for p in group}, page)
        process = context.Process(target=_worker, args=(task, positions, cpu, errors), daemon=True)
        process.start()
        processes.append(process)
    stop = max(stops.values(), default=0)
    try:
        while running := [p.sentinel for p in processes if p.is_alive()]:
            progress(min(positions[:]), stop)
            multiprocessing.connection.wait(running, timeout=0.2)  # wakes as one ends
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
    reached: dict[str, int] = {}
    for number, group in enumerate(groups):
        for p in group:
            at = min(positions[number], stops[p.name])
            reached[p.name] = min(reached.get(p.name, at), at)
    return reached, sum(cpu[:])


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
