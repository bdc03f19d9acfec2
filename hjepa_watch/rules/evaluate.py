"""Incremental evaluation: scalar batches in, alert transitions out.

The :class:`Evaluator` routes each new point to the alert instances whose rule
selects its (run, tag) — one instance per rule, run and captured labels — keeps per
series only the tail that the largest window needs (plus O(1) running state), and
hands each instance's new points to the condition and the state machine in one
vectorised call per batch. It never reads the clock: ``now`` is passed in, and only
``stale`` uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hjepa_watch.alerts import Alert, AlertKey, AlertState, advance
from hjepa_watch.events.tailer import ScalarBatch
from hjepa_watch.rules import conditions
from hjepa_watch.rules.loader import LoadedRule
from hjepa_watch.rules.schema import Rule, Span
from hjepa_watch.rules.selectors import compile_pattern
from hjepa_watch.rules.transition import Transition, default_summary, render
from hjepa_watch.state import DURATION_RING, SeriesRows


@dataclass
class _Instance:
    rule: Rule
    key: AlertKey
    tag: str
    labels: dict[str, str]
    alert: Alert = field(default_factory=Alert)
    running: conditions.Running = field(default_factory=conditions.Running)
    last_wall: float | None = None
    last_step: int = 0
    last_value: float = math.nan
    last_arrival: float | None = None
    points: int = 0  # points seen in the current segment
    gaps: list = field(default_factory=list)  # the last writer-time gaps between points (stale)


@dataclass
class _Series:
    key: tuple[str, str] = ("", "")
    segment: int = -1
    start_step: int = 0
    count: int = 0  # points of the current segment seen so far
    step: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    wall: np.ndarray = field(default_factory=lambda: np.empty(0))
    value: np.ndarray = field(default_factory=lambda: np.empty(0))
    keep: Span = field(default_factory=lambda: Span(points=1))
    instances: list[_Instance] = field(default_factory=list)


@dataclass
class _CompiledRule:
    rule: Rule
    patterns: list  # metric first, then also
    runs: object


def _max_span(spans: Iterable[Span]) -> Span:
    """A span that covers all: the most points and the longest duration (kept as both)."""
    pts = max((s.points for s in spans if s.points is not None), default=1)
    secs = max((s.seconds for s in spans if s.seconds is not None), default=None)
    return Span(points=pts, seconds=secs)


class Evaluator:
    """Evaluates rules over scalar batches, incrementally.

    Args:
        rules: the loaded rules.
        persist: keep track of what changed for :meth:`take_dirty` (the daemon's
            commits); off for replay and tests, where nothing would ever take it.
    """

    def __init__(self, rules: list[LoadedRule] | list[Rule], persist: bool = False) -> None:
        self.rules = [r.rule if isinstance(r, LoadedRule) else r for r in rules]
        self.persist = persist
        self._compiled = [
            _CompiledRule(r, [compile_pattern(p) for p in [r.metric, *r.also]], compile_pattern(r.runs))
            for r in self.rules
        ]
        self._series: dict[tuple[str, str], _Series | None] = {}
        self._instances: dict[AlertKey, _Instance] = {}
        self._routes: dict[str, list[_Series | None]] = {}  # run -> per tag id
        self._saved_instances: dict[AlertKey, dict] = {}
        self._saved_series: dict[tuple[str, str], object] = {}
        #: Changed since :meth:`take_dirty`: alert keys, and per series its new points.
        self._dirty_alerts: set[AlertKey] = set()
        self._dirty_series: dict[tuple[str, str], tuple[int, list]] = {}

    # -- routing -------------------------------------------------------------

    def _route(self, run: str, tags: list[str]) -> list[_Series | None]:
        table = self._routes.setdefault(run, [])
        while len(table) < len(tags):
            table.append(self._series_for(run, tags[len(table)]))
        return table

    def _series_for(self, run: str, tag: str) -> _Series | None:
        series = _Series()
        for c in self._compiled:
            if c.runs.match(run) is None:
                continue
            for p in c.patterns:
                labels = p.match(tag)
                if labels is None:
                    continue
                labels = {**labels, **c.rule.labels}
                key = AlertKey(c.rule.name, run, tuple(sorted(labels.items())))
                if key not in self._instances:  # the first tag bound to an identity keeps it
                    inst = _Instance(c.rule, key, tag, labels)
                    saved = self._saved_instances.pop(key, None)
                    if saved is not None:
                        _load_instance(inst, saved)
                    self._instances[key] = inst
                    series.instances.append(inst)
                break
        if not series.instances:
            return None
        series.keep = _max_span(conditions.history_needed(i.rule) for i in series.instances)
        saved = self._saved_series.pop((run, tag), None)
        if saved is not None:
            series.segment, series.start_step, series.count = saved.segment, saved.start_step, saved.count
            series.step, series.wall, series.value = _tail(saved.step, saved.wall, saved.value, series.keep)
        series.key = (run, tag)
        self._series[(run, tag)] = series
        return series

    def routed(self, run: str, tags: list[str]) -> list[bool]:
        """For each tag of a run's table, whether some rule watches it."""
        return [s is not None for s in self._route(run, tags)]

    def rule(self, name: str) -> Rule | None:
        """The rule of that name."""
        return next((r for r in self.rules if r.name == name), None)

    # -- evaluation ----------------------------------------------------------

    def process(self, batch: ScalarBatch, now: float | None = None) -> list[Transition]:
        """Evaluate the rules on a batch of new points; return the transitions, in point order.

        Args:
            batch: new scalars of one run (from the tailer), in file order.
            now: arrival time for ``stale`` (None in replay: the writer's times stand in).
        """
        if not len(batch):
            return []
        routes = self._route(batch.run, batch.tags)
        wanted = np.array([s is not None for s in routes])
        keys = batch.tag_id.astype(np.uint16) if len(routes) <= 1 << 16 else batch.tag_id
        order = np.argsort(keys, kind="stable")  # a radix sort: tags contiguous, file order kept
        tag_s = batch.tag_id[order]
        bounds = np.flatnonzero(np.diff(tag_s)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(order)]
        runs = [(a, b) for a, b in zip(starts.tolist(), ends.tolist(), strict=True) if wanted[tag_s[a]]]
        if not runs:
            return []
        # One gather per column; every tag's points are then a slice (no copies).
        step_s, wall_s = batch.step[order], batch.wall_time[order]
        value_s, seg_s = batch.value[order], batch.segment[order]
        out: list[tuple[float, int, Transition]] = []
        for a, b in runs:
            series = routes[int(tag_s[a])]
            cuts = np.flatnonzero(np.diff(seg_s[a:b])) + 1 + a
            for lo, hi in zip(np.r_[a, cuts].tolist(), np.r_[cuts, b].tolist(), strict=True):
                self._feed(series, int(seg_s[lo]), step_s[lo:hi], wall_s[lo:hi], value_s[lo:hi], order[lo:hi], now, out)
        out.sort(key=lambda x: (x[0], x[1]))
        return [t for _, _, t in out]

    def _feed(self, series, segment, step, wall, value, where, now, out) -> None:
        if segment != series.segment:
            series.segment, series.start_step, series.count = segment, int(step[0]), 0
            series.step, series.wall, series.value = step[:0], wall[:0], value[:0]
            for inst in series.instances:
                inst.alert.cancel_pending()
                inst.running = conditions.Running()
                inst.points = 0
        if self.persist:
            first_seq = series.count
            prev = self._dirty_series.get(series.key)
            if prev is not None and prev[0] + sum(len(p[0]) for p in prev[1]) == first_seq:
                prev[1].append((step, wall, value))
            else:
                self._dirty_series[series.key] = (first_seq, [(step, wall, value)])
            self._dirty_alerts.update(i.key for i in series.instances)
        h = len(series.step)
        all_step = np.concatenate([series.step, step])
        all_wall = np.concatenate([series.wall, wall])
        all_value = np.concatenate([series.value, value])
        for inst in series.instances:
            rule = inst.rule
            # Warmup: the first steps of each segment are neither evaluated nor windowed.
            # Steps never decrease within a segment, so the rest is a suffix.
            first = int(np.searchsorted(all_step, series.start_step + rule.warmup)) if rule.warmup else 0
            if rule.until is not None:
                # Only the first `until` steps of a segment are evaluated ("already 1.0 early").
                end = int(np.searchsorted(all_step, series.start_step + rule.until, side="right"))
                all_step_r, all_wall_r, all_value_r = all_step[:end], all_wall[:end], all_value[:end]
            else:
                all_step_r, all_wall_r, all_value_r = all_step, all_wall, all_value
            new_from = max(first, h)
            n_new = len(all_step_r) - new_from
            if n_new <= 0:
                continue
            if rule.condition == "stale":
                self._stale_points(inst, all_step, all_wall, all_value, new_from, where, segment, now, out)
                continue
            view = conditions.View(
                all_step_r[first:], all_wall_r[first:], all_value_r[first:], n_new, series.count - h + first
            )
            res = conditions.evaluate(rule, view, inst.running)
            inst.running = res.running
            w = all_wall_r[new_from:]
            moves = advance(inst.alert, res.breach, res.valid, res.cleared, w, rule.for_, rule.keep_firing_for)
            if moves:
                at = np.array([i for i, _ in moves])
                stats = res.exact(at) if res.exact is not None else res.stat[at]
                for (i, state), stat in zip(moves, stats.tolist(), strict=True):
                    j = new_from + i
                    t = self._transition(inst, state, all_step[j], all_wall[j], all_value[j], stat, segment)
                    out.append((float(all_wall[j]), int(where[j - h]), t))
            inst.last_wall, inst.last_step = float(all_wall[-1]), int(all_step[-1])
        # Keep only the tail the largest window needs.
        series.count += len(step)
        series.step, series.wall, series.value = _tail(all_step, all_wall, all_value, series.keep)

    def _stale_points(self, inst, step, wall, value, new_from, where, segment, now, out) -> None:
        """A gap between points longer than the threshold: stale, resolved by the next point."""
        t = inst.rule.threshold
        h = len(step) - len(where)
        alert = inst.alert
        w = wall[new_from:].astype(np.float64)
        prev = np.concatenate([[np.nan if inst.last_wall is None else inst.last_wall], w[:-1]])
        gap = w - prev
        # "Writing steadily": the typical of the last gaps before each point, times
        # STALE_STEADY, fits in the threshold. A run that writes once an hour is not
        # stale after ten minutes.
        armed = _steady(np.asarray(inst.gaps, np.float64), gap, t)
        start = 0
        if alert.state is AlertState.FIRING:  # fired by tick(): the first new point ends it
            alert.state, alert.resolved_at = AlertState.INACTIVE, float(w[0])
            t0 = self._transition(inst, AlertState.RESOLVED, step[new_from], w[0], value[new_from], 0.0, segment)
            out.append((float(w[0]), int(where[new_from - h]), t0))
            start = 1
        with np.errstate(invalid="ignore"):
            gaps = np.flatnonzero((gap > t) & armed)
        for i in gaps[gaps >= start].tolist():
            # Seen after the fact (replay, catch-up): it fired, and it is over.
            j, at = new_from + i, float(prev[i] + t)
            last_step = int(step[j - 1]) if j > 0 else inst.last_step
            last_value = float(value[j - 1]) if j > 0 else inst.last_value
            alert.fired_at, alert.resolved_at = at, float(w[i])
            point = int(where[j - h])
            out.append(
                (
                    at,
                    point,
                    self._transition(inst, AlertState.FIRING, last_step, at, last_value, w[i] - prev[i], segment),
                )
            )
            out.append(
                (float(w[i]), point, self._transition(inst, AlertState.RESOLVED, step[j], w[i], value[j], 0.0, segment))
            )
        inst.points += len(w)
        inst.gaps = (list(inst.gaps) + gap[np.isfinite(gap)].tolist())[-STALE_GAPS:]
        inst.last_step, inst.last_value = int(step[-1]), float(value[-1])
        inst.last_wall = float(w[-1])
        inst.last_arrival = now if now is not None else inst.last_wall

    def tick(self, now: float) -> list[Transition]:
        """Check ``stale`` rules against the clock; return transitions (firing only)."""
        out = []
        for inst in self._instances.values():
            if inst.rule.condition != "stale" or inst.alert.state is AlertState.FIRING:
                continue
            if inst.last_arrival is None or len(inst.gaps) < 2:
                continue
            if np.median(inst.gaps) * STALE_STEADY > inst.rule.threshold:
                continue  # not writing steadily at this time scale
            idle = now - inst.last_arrival
            if idle > inst.rule.threshold:
                at = inst.last_arrival + inst.rule.threshold
                inst.alert.state, inst.alert.fired_at = AlertState.FIRING, at
                out.append(self._transition(inst, AlertState.FIRING, inst.last_step, at, inst.last_value, idle, -1))
        return out

    def _transition(self, inst, state, step, wall, value, stat, segment) -> Transition:
        rule = inst.rule
        fields = {
            **inst.labels,
            "run": inst.key.run,
            "rule": rule.name,
            "metric": inst.tag,
            "value": float(value),
            "stat": float(stat),
            "threshold": rule.threshold,
            "step": int(step),
            "severity": rule.severity,
            "segment": int(segment),
            "wall_time": float(wall),
            "state": state.value,
            "condition": rule.condition,
        }
        return Transition(
            key=inst.key,
            state=state,
            metric=inst.tag,
            severity=rule.severity,
            step=int(step),
            wall_time=float(wall),
            value=float(value),
            segment=int(segment),
            summary=render(rule.summary or default_summary(rule), fields),
            stat=float(stat),
            threshold=rule.threshold,
            annotations={k: render(v, fields) for k, v in rule.annotations.items()},
        )

    # -- persistence ---------------------------------------------------------

    def restore(self, instances: list[dict], series: list) -> None:
        """Resume from persisted state (applied as each series is first routed)."""
        for d in instances:
            key = AlertKey(d["rule"], d["run"], tuple(sorted(d["labels"].items())))
            self._saved_instances[key] = d
        for rows in series:
            self._saved_series[(rows.run, rows.tag)] = rows

    def touch(self, key: AlertKey) -> None:
        """Mark an alert's state as changed (to be persisted with the next commit)."""
        self._dirty_alerts.add(key)

    def take_dirty(self) -> tuple[list[dict], list[tuple]]:
        """Alert states and new series points changed since the last call.

        Returns:
            (alert records, [(SeriesRows with the new points only, first sequence
            number, ring size)]).
        """
        alerts = [_dump_instance(self._instances[k]) for k in self._dirty_alerts]
        series = []
        for key, (first_seq, parts) in self._dirty_series.items():
            s = self._series[key]
            ring = DURATION_RING if s.keep.seconds is not None else max(s.keep.points or 1, 1)
            step = np.concatenate([p[0] for p in parts])
            wall = np.concatenate([p[1] for p in parts])
            value = np.concatenate([p[2] for p in parts])
            series.append(
                (SeriesRows(key[0], key[1], s.segment, s.start_step, s.count, step, wall, value), first_seq, ring)
            )
        self._dirty_alerts.clear()
        self._dirty_series.clear()
        return alerts, series

    # -- inspection ----------------------------------------------------------

    def alerts(self) -> dict[AlertKey, Alert]:
        """Every alert instance and its state."""
        return {k: i.alert for k, i in self._instances.items()}

    def firing(self) -> list[AlertKey]:
        """Identities of the alerts firing now."""
        return [k for k, i in self._instances.items() if i.alert.state is AlertState.FIRING]


#: Gaps remembered per stale instance, and how many typical gaps must fit in the
#: threshold for a run to count as "writing steadily".
STALE_GAPS = 16
STALE_STEADY = 5


def _steady(history: np.ndarray, gap: np.ndarray, threshold: float) -> np.ndarray:
    """Per new point: were the (up to STALE_GAPS) gaps before it steady, at least two of them?"""
    all_gaps = np.concatenate([np.full(STALE_GAPS, np.nan), history, np.where(np.isfinite(gap), gap, np.nan)])
    start = STALE_GAPS + len(history)
    idx = np.arange(start, start + len(gap))
    rows = sliding_window_view(all_gaps, STALE_GAPS)[idx - STALE_GAPS]  # the gaps before each point
    enough = np.count_nonzero(np.isfinite(rows), axis=1) >= 2
    typical = conditions.nanmedian_rows(rows)
    with np.errstate(invalid="ignore"):
        return enough & (typical * STALE_STEADY <= threshold)


_ALERT_FIELDS = ("breaches", "last_breach_at", "since_breach")


def _dump_instance(inst: _Instance) -> dict:
    a = inst.alert
    return {
        "rule": inst.key.rule,
        "run": inst.key.run,
        "labels": inst.key.label_dict,
        "tag": inst.tag,
        "state": a.state.value,
        "active_at": a.active_at,
        "fired_at": a.fired_at,
        "resolved_at": a.resolved_at,
        "last_sent_at": a.last_sent_at,
        **{f: getattr(a, f) for f in _ALERT_FIELDS},
        "best": inst.running.best,
        "last_wall": inst.last_wall,
        "last_step": inst.last_step,
        "last_value": inst.last_value,
        "last_arrival": inst.last_arrival,
        "points": inst.points,
        "gaps": list(inst.gaps),
    }


def _load_instance(inst: _Instance, d: dict) -> None:
    a = inst.alert
    a.state = AlertState(d["state"])
    a.active_at, a.fired_at, a.resolved_at, a.last_sent_at = (
        d["active_at"],
        d["fired_at"],
        d["resolved_at"],
        d["last_sent_at"],
    )
    for f in _ALERT_FIELDS:
        setattr(a, f, d[f])
    inst.running = conditions.Running(d["best"] if d["best"] is not None else math.nan)
    inst.last_wall, inst.last_step, inst.last_value = d["last_wall"], d["last_step"], d["last_value"]
    inst.last_arrival, inst.points = d["last_arrival"], d["points"]
    inst.gaps = list(d.get("gaps", []))


def _tail(step: np.ndarray, wall: np.ndarray, value: np.ndarray, keep: Span):
    n = len(step)
    start = max(n - (keep.points or 1), 0)
    if keep.seconds is not None and n:
        # One point older than the longest duration, so windows can tell they are complete.
        t = int(np.searchsorted(wall, wall[-1] - keep.seconds, side="right")) - 1
        start = min(start, max(t, 0))
    return step[start:].copy(), wall[start:].copy(), value[start:].copy()
