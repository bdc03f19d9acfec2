"""The daemon: tailer -> evaluator -> state -> outputs, for weeks, exactly once.

Each batch the tailer hands over is evaluated and committed to the state database
with everything it changed — the file offset, the run's segments, alert states,
series windows, and its transitions (into history and the notification outbox) —
in one transaction, and only then shown. A crash at any moment therefore neither
loses nor repeats anything: on restart, reading resumes at the committed offsets
with the committed state.

The loop blocks on inotify wake-ups (watchdog), with a full stat-and-scan every
``poll_interval`` seconds as the floor, so an idle daemon costs ~0% CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hjepa_watch.events.discovery import LogdirError
from hjepa_watch.events.tailer import Notice, ScalarBatch, Tailer
from hjepa_watch.events.watch import ChangeWatcher
from hjepa_watch.rules.evaluate import Evaluator, Transition
from hjepa_watch.rules.loader import LoadedRule, RuleLoadError
from hjepa_watch.sdnotify import Notifier
from hjepa_watch.state import StateDB


class Output:
    """Where transitions and notices go; the daemon calls these from its loop."""

    def transitions(self, items: list[dict]) -> None:
        """New (committed) transitions, as DESIGN.md §4 objects."""

    def notice(self, notice: Notice) -> None:
        """A one-line condition worth reporting."""

    def batch(self, batch: ScalarBatch) -> None:
        """New scalars (for live views)."""

    def refresh(self, daemon: Daemon) -> None:
        """A chance to redraw (called at most a few times a second)."""

    def close(self) -> None:
        """The daemon is stopping."""


@dataclass
class Counters:
    """Ingest figures for the dashboard."""

    started: float = field(default_factory=time.monotonic)
    scalars: int = 0
    recent: list[tuple[float, int]] = field(default_factory=list)

    def add(self, now: float, n: int) -> None:
        """Count ``n`` scalars read at ``now``."""
        self.scalars += n
        self.recent.append((now, n))
        cutoff = now - 10
        while self.recent and self.recent[0][0] < cutoff:
            self.recent.pop(0)

    def rate(self, now: float) -> float:
        """Scalars per second over the last 10 seconds."""
        span = max(min(10.0, now - self.started), 1e-9)
        return sum(n for t, n in self.recent if t >= now - 10) / span


class Daemon:
    """The long-running process.

    Args:
        logdirs: directories to watch.
        rules: the loaded rules.
        load_rules: loads the rules again (SIGHUP).
        state: the state database.
        output: where results go.
        poll_interval: seconds between full polls.
        corrupt_grace: seconds a corrupt region is re-checked before being skipped.
        channels: notification channels transitions are queued for in the outbox.
        wall: wall clock (for ``stale`` and arrival times).
        clock: monotonic clock (for scheduling).
    """

    def __init__(
        self,
        logdirs: list[str],
        rules: list[LoadedRule],
        load_rules: Callable[[], list[LoadedRule]],
        state: StateDB,
        output: Output,
        *,
        poll_interval: float = 2.0,
        corrupt_grace: float = 30.0,
        channels: list[str] | None = None,
        use_inotify: bool = True,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.state = state
        self.load_rules = load_rules
        self.poll_interval = poll_interval
        self.channels = channels or []
        self.use_inotify = use_inotify
        self.wall, self.clock = wall, clock
        self.counters = Counters(started=clock())
        self.recent: list[dict] = []  # the latest transitions, for the dashboard
        self.tailer = Tailer(logdirs, corrupt_grace=corrupt_grace, on_notice=self._notice)
        self.tailer.restore(state.runs(), state.files())
        self.rules = rules
        self.evaluator = Evaluator(rules)
        self.evaluator.restore(state.alerts(), state.series())
        self.notifier = Notifier()
        self._missing: set[str] = set()

    # -- outputs -------------------------------------------------------------

    def _notice(self, notice: Notice) -> None:
        self.output.notice(notice)

    def _emit(self, items: list[dict]) -> None:
        if items:
            self.recent = (self.recent + items)[-50:]
            self.output.transitions(items)

    # -- work ----------------------------------------------------------------

    def _commit_batch(self, batch: ScalarBatch, transitions: list[Transition]) -> None:
        alerts, series = self.evaluator.take_dirty()
        fresh = self.state.commit(
            files=[self.tailer.file_record(batch.path, batch.end_offset)],
            runs=[self.tailer.run_record(batch.run)],
            alerts=alerts,
            series=series,
            transitions=[t.to_json() for t in transitions],
            channels=self.channels,
        )
        self._emit(fresh)

    def _process(self, batches, stop: threading.Event) -> None:
        for batch in batches:
            transitions = self.evaluator.process(batch, now=self.wall())
            self._commit_batch(batch, transitions)
            self.counters.add(self.clock(), len(batch))
            self.output.batch(batch)
            if stop.is_set():
                break  # the generator is closed: the next batch is left for the next start

    def _tick(self) -> None:
        transitions = self.evaluator.tick(self.wall())
        if transitions:
            alerts, series = self.evaluator.take_dirty()
            self._emit(
                self.state.commit(
                    alerts=alerts, series=series, transitions=[t.to_json() for t in transitions], channels=self.channels
                )
            )

    def _scan(self, watcher: ChangeWatcher) -> None:
        try:
            self.tailer.scan()
            if self._missing:
                self._notice(Notice("logdir", "", "log directory is back"))
                self._missing.clear()
                watcher.rewatch()
        except LogdirError as e:
            # Deleted or unmounted: say so once, keep everything, wait for it to return.
            if str(e) not in self._missing:
                self._missing.add(str(e))
                self._notice(Notice("logdir", "", f"{e}; waiting for it to come back"))

    def reload(self) -> bool:
        """Load the rule files again; on error keep the old rules (SIGHUP)."""
        try:
            rules = self.load_rules()
        except RuleLoadError as e:
            for err in e.errors:
                self._notice(Notice("rules", err.file, str(err)))
            self._notice(Notice("rules", "", "rules not reloaded: the old rules stay in force"))
            return False
        # Carry every alert's and window's state over to the new rule set.
        alerts, series = self.evaluator.take_dirty()
        if alerts or series:
            self.state.commit(alerts=alerts, series=series)
        self.rules = rules
        self.evaluator = Evaluator(rules)
        self.evaluator.restore(self.state.alerts(), self.state.series())
        self._notice(Notice("rules", "", f"rules reloaded: {len(rules)} rules"))
        return True

    def run(self, stop: threading.Event, reload: threading.Event | None = None) -> None:
        """Run until ``stop`` is set; ``reload`` set means: load the rules again."""
        reload = reload or threading.Event()
        watcher = ChangeWatcher(self.tailer.logdirs, self._notice)
        if self.use_inotify:
            watcher.start()
        try:
            self._scan(watcher)
            self._process(self.tailer.poll(), stop)  # catch up
            self._tick()
            self.notifier.send("READY=1")
            next_full = self.clock() + self.poll_interval
            next_ping = self.clock()
            while not stop.is_set():
                now = self.clock()
                if self.notifier.watchdog_interval and now >= next_ping:
                    self.notifier.send("WATCHDOG=1")
                    next_ping = now + self.notifier.watchdog_interval
                self.output.refresh(self)
                changes = watcher.wait(min(next_full - now, 0.25))
                if stop.is_set():
                    break
                if reload.is_set():
                    reload.clear()
                    self.reload()
                now = self.clock()
                if now >= next_full:
                    self._scan(watcher)
                    self._process(self.tailer.poll(), stop)
                    self._tick()
                    next_full = now + self.poll_interval
                elif changes.paths or changes.rescan:
                    if changes.rescan or any(not self.tailer.knows(p) for p in changes.paths):
                        self._scan(watcher)
                    self._process(self.tailer.poll(changes.paths), stop)
        finally:
            self.notifier.send("STOPPING=1")
            watcher.stop()
            self.output.close()
