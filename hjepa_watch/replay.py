"""Offline replay: read every scalar under a LOGDIR once and summarise.

Rule evaluation joins in a later stage of the pipeline; for now replay is ingest
end to end, the same code path the daemon tails with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hjepa_watch.events.tailer import Notice, Tailer


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
    on_notice: Callable[[Notice], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ReplaySummary:
    """Read everything under ``logdirs`` once.

    Raises:
        hjepa_watch.events.discovery.LogdirError: a LOGDIR is missing or unreadable.
    """
    start = clock()
    # Nothing more will be written: a corrupt region is skipped at once.
    tailer = Tailer(logdirs, corrupt_grace=0.0, on_notice=on_notice)
    tailer.scan()
    for _ in tailer.poll():
        pass
    s = tailer.stats
    return ReplaySummary(s.runs, s.files, s.scalars, s.corrupt_records, 0, clock() - start)
