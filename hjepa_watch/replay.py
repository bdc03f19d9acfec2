"""Offline replay: read every scalar under a LOGDIR once and evaluate the rules as if live.

Points reach the evaluator run by run in file order, exactly as the tailer delivers
them live; transitions are then put in writer-time order across runs, and a last
clock tick at the newest time seen lets ``stale`` rules speak about runs that went
quiet before the logs end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hjepa_watch.events.tailer import Notice, ScalarBatch, Tailer
from hjepa_watch.rules.evaluate import Evaluator
from hjepa_watch.rules.loader import LoadedRule
from hjepa_watch.rules.transition import Transition

#: Points per evaluation call in replay. Evaluation has a fixed cost per call and
#: instance; reading hands out 4 MiB chunks, so consecutive chunks of a run are
#: joined (bounded: 32 bytes a point).
COALESCE = 1 << 20


def _coalesce(batches: Iterable[ScalarBatch], limit: int) -> Iterator[ScalarBatch]:
    """Join consecutive batches of the same run, up to ``limit`` points each."""
    pending: list[ScalarBatch] = []
    size = 0
    for b in batches:
        if pending and (b.run != pending[0].run or size + len(b) > limit):
            yield _join(pending)
            pending, size = [], 0
        pending.append(b)
        size += len(b)
    if pending:
        yield _join(pending)


def _join(parts: list[ScalarBatch]) -> ScalarBatch:
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    return ScalarBatch(
        last.run,
        last.path,
        last.tags,
        cat("tag_id"),
        cat("step"),
        cat("wall_time"),
        cat("value"),
        cat("segment"),
        last.end_offset,
    )


@dataclass
class ReplaySummary:
    """The summary line of DESIGN.md §4."""

    runs: int
    files: int
    scalars: int
    corrupt_records: int
    alerts_fired: int
    seconds: float

    def to_json(self) -> dict:
        """The JSON object printed as replay's last line."""
        return {"type": "summary", **self.__dict__, "seconds": round(self.seconds, 3)}


def replay(
    logdirs: Sequence[str],
    rules: list[LoadedRule] | None = None,
    on_notice: Callable[[Notice], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[Transition], ReplaySummary]:
    """Read everything under ``logdirs`` once and evaluate ``rules`` over it.

    Returns:
        (the transitions in writer-time order, the summary).

    Raises:
        hjepa_watch.events.discovery.LogdirError: a LOGDIR is missing or unreadable.
    """
    start = clock()
    # Nothing more will be written: a corrupt region is skipped at once.
    tailer = Tailer(logdirs, corrupt_grace=0.0, on_notice=on_notice)
    tailer.scan()
    evaluator = Evaluator(rules or [])
    transitions: list[Transition] = []
    newest = None
    batches = _coalesce(tailer.poll(), COALESCE) if rules else tailer.poll()
    for batch in batches:
        if rules:
            transitions += evaluator.process(batch)
        if len(batch):
            top = float(batch.wall_time.max())
            newest = top if newest is None else max(newest, top)
    if rules and newest is not None:
        transitions += evaluator.tick(newest)
    transitions.sort(key=lambda t: t.wall_time)  # stable: per-run order is kept on ties
    s = tailer.stats
    fired = sum(t.state.value == "firing" for t in transitions)
    return transitions, ReplaySummary(s.runs, s.files, s.scalars, s.corrupt_records, fired, clock() - start)
