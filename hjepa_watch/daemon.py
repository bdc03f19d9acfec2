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

import fnmatch
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hjepa_watch.alerts import AlertKey
from hjepa_watch.events.tailer import Notice, ScalarBatch, Tailer
from hjepa_watch.events.watch import ChangeWatcher, Rescanner
from hjepa_watch.rules.evaluate import Evaluator
from hjepa_watch.rules.loader import LoadedRule, RuleLoadError
from hjepa_watch.rules.transition import Transition
from hjepa_watch.sdnotify import Notifier
from hjepa_watch.state import StateDB

if TYPE_CHECKING:
    from hjepa_watch.notify.outbox import Sender

#: Points of each watched series kept for the chart of a notification.
CHART_POINTS = 300


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
        channels: names of the notification channels transitions are queued for.
        send_resolved: notify resolved alerts too (unless a route says otherwise).
        routes: :class:`hjepa_watch.config.Route` s; unmatched alerts go to every channel.
        repeat_interval: seconds between reminders of an alert that stays firing.
        sender: delivers the outbox (run in a thread while the daemon runs).
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
        send_resolved: bool = False,
        routes: list | None = None,
        repeat_interval: float = 4 * 3600.0,
        sender: Sender | None = None,
        use_inotify: bool = True,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.state = state
        self.load_rules = load_rules
        self.poll_interval = poll_interval
        self.channels = channels or []
        self.send_resolved = send_resolved
        self.routes = routes or []
        self.repeat_interval = repeat_interval
        self.sender = sender
        self._recent_points: dict[tuple[str, str], deque] = {}
        self._silences: list[dict] = []
        self._silences_read = -1e18
        self.use_inotify = use_inotify
        self.wall, self.clock = wall, clock
        self.counters = Counters(started=clock())
        self.recent: list[dict] = []  # the latest transitions, for the dashboard
        self.tailer = Tailer(logdirs, corrupt_grace=corrupt_grace, on_notice=self._notice)
        self.tailer.restore(state.runs(), state.files())
        self.rules = rules
        self.evaluator = Evaluator(rules, persist=True)
        self.evaluator.restore(state.alerts(), state.series())
        self.notifier = Notifier()

    # -- outputs -------------------------------------------------------------

    def _notice(self, notice: Notice) -> None:
        self.output.notice(notice)

    def _emit(self, items: list[dict]) -> None:
        if items:
            self.recent = (self.recent + items)[-50:]
            self.output.transitions(items)

    # -- notification routing --------------------------------------------------

    def route(self, t: dict) -> tuple[list[str], str | None]:
        """Channels to notify of a new transition, and the chart's data for them."""
        if not self.channels or t["state"] == "pending":
            return [], None
        channels, resolved = list(self.channels), self.send_resolved
        for r in self.routes:
            if r.match.matches(t):
                channels = list(r.channels)
                resolved = r.send_resolved if r.send_resolved is not None else self.send_resolved
                break
        if not channels or (t["state"] == "resolved" and not resolved):
            return [], None
        if self._silenced(t) or self._inhibited(t):
            return [], None
        key = AlertKey(t["rule"], t["run"], tuple(sorted(t["labels"].items())))
        alert = self.evaluator.alerts().get(key)
        if alert is not None and t["state"] == "firing":
            alert.last_sent_at = self.wall()
            self.evaluator.touch(key)
        return channels, self._chart_payload(t, alert)

    def _chart_payload(self, t: dict, alert) -> str | None:
        points = self._recent_points.get((t["run"], t["metric"]))
        if not points:
            return None
        steps = [p[0] for p in points]
        values = [p[1] if math.isfinite(p[1]) else None for p in points]
        since = t["step"]
        if alert is not None and alert.active_at is not None:
            since = next((p[0] for p in points if p[2] >= alert.active_at), since)
        return json.dumps({"steps": steps, "values": values, "since": since})

    def _repeat(self) -> None:
        """Remind of alerts that stay firing, every ``repeat_interval``."""
        if not self.channels:
            return
        now = self.wall()
        for key, alert in self.evaluator.alerts().items():
            if alert.state.value != "firing" or alert.last_sent_at is None:
                continue
            if now - alert.last_sent_at < self.repeat_interval:
                continue
            found = self.state.last_firing(key.rule, key.run, key.label_dict)
            alert.last_sent_at = now
            self.evaluator.touch(key)
            if found is None:
                continue
            hid, t = found
            channels, payload = self.route(t)
            if channels:
                self.state.enqueue(hid, channels, payload)
                if self.sender is not None:
                    self.sender.wake.set()
        alerts, series = self.evaluator.take_dirty()
        if alerts or series:
            self.state.commit(alerts=alerts, series=series)

    def _silenced(self, t: dict) -> bool:
        now = self.wall()
        if now - self._silences_read > 5:
            self._silences, self._silences_read = self.state.silences(now), now
        return any(
            fnmatch.fnmatchcase(t["run"], s["run"]) and fnmatch.fnmatchcase(t["rule"], s["rule"])
            for s in self._silences
            if s["expires_at"] > now
        )

    def _inhibited(self, t: dict) -> bool:
        """A run that is already non-finite does not also need its trends and spikes reported."""
        rule = self.evaluator.rule(t["rule"])
        if rule is None or rule.condition not in ("trend_up", "trend_down", "spike", "rise_from_min"):
            return False
        for key, alert in self.evaluator.alerts().items():
            if key.run == t["run"] and alert.state.value == "firing":
                source = self.evaluator.rule(key.rule)
                if source is not None and source.condition == "nonfinite":
                    return True
        return False

    def _remember_points(self, batch: ScalarBatch) -> None:
        """Keep the recent points of watched series, for the charts in notifications."""
        if not self.channels or not len(batch):
            return
        watched = self.evaluator.routed(batch.run, batch.tags)
        for tid in np.unique(batch.tag_id).tolist():
            if not watched[tid]:
                continue
            sel = batch.tag_id == tid
            key = (batch.run, batch.tags[tid])
            buf = self._recent_points.setdefault(key, deque(maxlen=CHART_POINTS))
            steps, values, walls = (
                batch.step[sel][-CHART_POINTS:],
                batch.value[sel][-CHART_POINTS:],
                batch.wall_time[sel][-CHART_POINTS:],
            )
            buf.extend(zip(steps.tolist(), values.tolist(), walls.tolist(), strict=True))

    # -- work ----------------------------------------------------------------

    def _commit_batch(self, batch: ScalarBatch, transitions: list[Transition]) -> None:
        alerts, series = self.evaluator.take_dirty()
        fresh = self.state.commit(
            files=[self.tailer.file_record(batch.path, batch.end_offset)],
            runs=[self.tailer.run_record(batch.run)],
            alerts=alerts,
            series=series,
            transitions=[t.to_json() for t in transitions],
            route=self.route,
        )
        self._emit(fresh)
        if fresh and self.sender is not None:
            self.sender.wake.set()

    def _process(self, batches, stop: threading.Event) -> None:
        for batch in batches:
            self._remember_points(batch)
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
                    alerts=alerts, series=series, transitions=[t.to_json() for t in transitions], route=self.route
                )
            )

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
        self.evaluator = Evaluator(rules, persist=True)
        self.evaluator.restore(self.state.alerts(), self.state.series())
        self._notice(Notice("rules", "", f"rules reloaded: {len(rules)} rules"))
        return True

    def run(self, stop: threading.Event, reload: threading.Event | None = None) -> None:
        """Run until ``stop`` is set; ``reload`` set means: load the rules again."""
        reload = reload or threading.Event()
        sender_stop = threading.Event()
        sender_thread = None
        if self.sender is not None:
            sender_thread = threading.Thread(target=self.sender.run, args=(sender_stop,), name="sender", daemon=True)
            sender_thread.start()
        watcher = ChangeWatcher(self.tailer.logdirs, self._notice)
        if self.use_inotify:
            watcher.start()
        scan = Rescanner(self.tailer, watcher)
        try:
            scan()
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
                    scan()
                    self._process(self.tailer.poll(), stop)
                    self._tick()
                    self._repeat()
                    next_full = now + self.poll_interval
                elif changes.paths or changes.rescan:
                    if changes.rescan or any(not self.tailer.knows(p) for p in changes.paths):
                        scan()
                    self._process(self.tailer.poll(changes.paths), stop)
        finally:
            self.notifier.send("STOPPING=1")
            watcher.stop()
            if sender_thread is not None:
                sender_stop.set()
                self.sender.wake.set()
                sender_thread.join(timeout=1.5)  # flush what is due; the rest waits in the outbox
            self.output.close()
