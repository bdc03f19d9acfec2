"""Offline replay: read every scalar under a LOGDIR once and evaluate the rules as if live.

Points reach the evaluator run by run in file order, exactly as the tailer delivers
them live; transitions are then put in writer-time order across runs, and a last
clock tick at the newest time seen lets ``stale`` rules speak about runs that went
quiet before the logs end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hjepa_watch.events.tailer import Notice, Tailer
from hjepa_watch.rules.evaluate import Evaluator, Transition
from hjepa_watch.rules.loader import LoadedRule


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
    for batch in tailer.poll():
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
