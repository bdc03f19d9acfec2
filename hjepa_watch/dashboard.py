"""The live dashboard: a snapshot of the daemon's view, rendered with rich.

:class:`Board` keeps what the dashboard shows (per run: last step, last update,
segment, recent values of the key H-JEPA signals; alert states; recent
transitions) and is fed by the daemon. :func:`render` turns a :class:`Snapshot`
into renderables and does nothing else, so it is tested with a capture console of
fixed width. :class:`DashboardOutput` wires both to a ``rich.live.Live``.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hjepa_watch.daemon import Daemon, Output
from hjepa_watch.events.tailer import Notice, ScalarBatch
from hjepa_watch.rules.selectors import compile_pattern

_BARS = "▁▂▃▄▅▆▇█"
SPARK = 24  # values per sparkline

#: The key signals, each with the tags (DESIGN.md §8, then the public trainer's) that carry it.
SIGNALS: list[tuple[str, list[str]]] = [
    ("loss", ["train/loss/total", "train/loss"]),
    ("loss h{level}", ["train/loss/h{level}", "train/loss_h{level}"]),
    ("std·√D L{level}", ["train/collapse/level{level}_std_sqrt_d"]),
    ("context std", ["train/context_std"]),
    ("rank frac L{level}", ["train/collapse/level{level}_rank_fraction"]),
    ("context rank", ["train/context_rank"]),
    ("grad norm", ["train/gradient/global_norm_before_clip", "train/gradient_flow/global_norm"]),
    ("lr", ["train/learning_rate/base_lr", "train/lr"]),
    ("ema", ["train/ema/momentum_current", "train/ema_momentum"]),
    ("samples/s", ["train/performance/samples_per_second"]),
]
_COMPILED = [(name, [compile_pattern(p) for p in pats]) for name, pats in SIGNALS]
_ORDER = {name: i for i, (name, _) in enumerate(SIGNALS)}


def signal_of(tag: str) -> str | None:
    """The key signal a tag carries (e.g. ``loss h1``), or None."""
    for name, pats in _COMPILED:
        for p in pats:
            m = p.match(tag)
            if m is not None:
                label = name.format(**m)
                _RANK.setdefault(label, (_ORDER[name], label))
                return label
    return None


_RANK: dict[str, tuple[int, str]] = {}  # signal label -> display order


def sparkline(values: list[float]) -> str:
    """Unicode block sparkline; non-finite values show as a gap marker."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return "·" * len(values)
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join(
        _BARS[min(int((v - lo) / span * (len(_BARS) - 1) + 0.5), len(_BARS) - 1)] if np.isfinite(v) else "×"
        for v in values
    )


@dataclass
class RunInfo:
    """What the dashboard knows of one run."""

    name: str
    last_step: int = 0
    last_wall: float = 0.0
    segment: int = 0
    scalars: int = 0
    signals: dict[str, deque] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Everything one frame shows; plain data."""

    now: float
    runs: list[RunInfo]
    firing: dict[str, list[tuple[str, str]]]  # run -> [(rule, severity)]
    pending: dict[str, int]
    recent: list[dict]
    files: int
    scalars: int
    rate: float
    corrupt: int
    notices: list[str]
    rules: int


class Board:
    """Keeps the dashboard's state up to date from batches and notices."""

    def __init__(self) -> None:
        self.runs: dict[str, RunInfo] = {}
        self.notices: deque[str] = deque(maxlen=3)
        self._signal_cache: dict[tuple[str, str], str | None] = {}

    def batch(self, batch: ScalarBatch) -> None:
        """Fold new scalars in (the last values of each key signal only)."""
        if not len(batch):
            return
        info = self.runs.setdefault(batch.run, RunInfo(batch.run))
        info.last_step = int(batch.step[-1])
        info.last_wall = float(batch.wall_time[-1])
        info.segment = int(batch.segment[-1])
        info.scalars += len(batch)
        for tid in np.unique(batch.tag_id).tolist():
            tag = batch.tags[tid]
            key = (batch.run, tag)
            if key not in self._signal_cache:
                self._signal_cache[key] = signal_of(tag)
            name = self._signal_cache[key]
            if name is None:
                continue
            vals = batch.value[batch.tag_id == tid][-SPARK:]
            info.signals.setdefault(name, deque(maxlen=SPARK)).extend(vals.tolist())

    def notice(self, notice: Notice) -> None:
        """Keep the last few notices on screen."""
        if notice.kind != "new_run":
            self.notices.append(notice.message)

    def snapshot(self, daemon: Daemon, now: float) -> Snapshot:
        """A frame's data from the daemon and this board."""
        firing: dict[str, list[tuple[str, str]]] = {}
        pending: dict[str, int] = {}
        for key, alert in daemon.evaluator.alerts().items():
            rule = next((r for r in daemon.evaluator.rules if r.name == key.rule), None)
            severity = rule.severity if rule else "warning"
            if alert.state.value == "firing":
                firing.setdefault(key.run, []).append((key.rule, severity))
            elif alert.state.value == "pending":
                pending[key.run] = pending.get(key.run, 0) + 1
        stats = daemon.tailer.stats
        return Snapshot(
            now=now,
            runs=list(self.runs.values()),
            firing=firing,
            pending=pending,
            recent=list(daemon.recent[-8:]),
            files=stats.files,
            scalars=daemon.counters.scalars,
            rate=daemon.counters.rate(daemon.clock()),
            corrupt=stats.corrupt_records,
            notices=list(self.notices),
            rules=len(daemon.rules),
        )


_SEV_RANK = {"critical": 3, "warning": 2, "info": 1}
_SEV_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _age(now: float, wall: float) -> str:
    s = max(now - wall, 0)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def _fmt(v: float) -> str:
    return f"{v:.4g}" if np.isfinite(v) else str(v)


def _badness(snap: Snapshot, run: str) -> tuple:
    sev = max((_SEV_RANK.get(s, 0) for _, s in snap.firing.get(run, [])), default=0)
    return (-sev, -len(snap.firing.get(run, [])), -snap.pending.get(run, 0), run)


def render(snap: Snapshot, height: int = 40) -> Group:
    """The dashboard for one snapshot (pure: no I/O, no clock)."""
    n_firing = sum(len(v) for v in snap.firing.values())
    n_pending = sum(snap.pending.values())
    stats = Text.assemble(
        f"{_n(len(snap.runs), 'run')} · {_n(snap.files, 'file')} · {snap.scalars:,} scalars · {snap.rate:,.0f}/s · ",
        (f"{snap.corrupt} corrupt", "red" if snap.corrupt else ""),
        " · ",
        (f"{n_firing} firing", "bold red" if n_firing else "green"),
        f" · {n_pending} pending · {_n(snap.rules, 'rule')}",
    )
    runs = sorted(snap.runs, key=lambda r: _badness(snap, r.name))
    room = max(height - 24, 3)
    shown, hidden = runs[:room], runs[room:]
    table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
    table.add_column("run", ratio=3, overflow="ellipsis", no_wrap=True)
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("seg", justify="right", no_wrap=True)
    table.add_column("alerts", ratio=2, overflow="ellipsis", no_wrap=True)
    for r in shown:
        alerts = snap.firing.get(r.name, [])
        worst = max((s for _, s in alerts), key=lambda s: _SEV_RANK.get(s, 0), default=None)
        style = _SEV_STYLE.get(worst, "green") if alerts else ("yellow" if snap.pending.get(r.name) else "green")
        text = ", ".join(rule for rule, _ in alerts) or (
            f"{snap.pending[r.name]} pending" if snap.pending.get(r.name) else "ok"
        )
        table.add_row(
            Text(r.name, style=style),
            str(r.last_step),
            _age(snap.now, r.last_wall),
            str(r.segment),
            Text(text, style=style),
        )
    if hidden:
        bad = sum(1 for r in hidden if snap.firing.get(r.name))
        table.add_row(Text(f"… {len(hidden)} more runs ({bad} firing)", style="dim"), "", "", "", "")
    parts = [Panel(Group(stats, table), title="[bold]hjepa-watch[/]", title_align="left")]
    if runs:
        top = runs[0]
        sig = Table(expand=True, box=None, pad_edge=False, show_header=False)
        sig.add_column("signal", no_wrap=True)
        sig.add_column("last", justify="right", no_wrap=True)
        sig.add_column("trend", no_wrap=True)
        for name in sorted(top.signals, key=lambda n: _RANK.get(n, (99, n))):
            vals = list(top.signals[name])
            sig.add_row(name, _fmt(vals[-1]), sparkline(vals))
        parts.append(Panel(sig, title=f"signals · {top.name}", title_align="left"))
    recent = Table(expand=True, box=None, pad_edge=False, show_header=False)
    recent.add_column("when", no_wrap=True)
    recent.add_column("state", no_wrap=True)
    recent.add_column("what", overflow="ellipsis", no_wrap=True, ratio=1)
    for d in reversed(snap.recent):
        when = _dt.datetime.fromtimestamp(d["wall_time"], _dt.timezone.utc).strftime("%H:%M:%S")
        style = (
            _SEV_STYLE.get(d["severity"], "")
            if d["state"] == "firing"
            else ("green" if d["state"] == "resolved" else "yellow")
        )
        recent.add_row(when, Text(d["state"], style=style), f"{d['rule']} · {d['run']} · {d['summary']}")
    if not snap.recent:
        recent.add_row("", "", Text("no alert transitions yet", style="dim"))
    parts.append(Panel(recent, title="recent transitions", title_align="left"))
    for n in snap.notices:
        parts.append(Text(n, style="dim"))
    return Group(*parts)


class DashboardOutput(Output):
    """The rich Live dashboard on a terminal."""

    def __init__(self, out, min_interval: float = 0.25) -> None:
        self.console = Console(file=out)
        self.board = Board()
        self.live = Live(console=self.console, auto_refresh=False, screen=False, transient=False)
        self.live.start()
        self.min_interval = min_interval
        self._last = 0.0

    def notice(self, notice: Notice) -> None:
        self.board.notice(notice)

    def batch(self, batch: ScalarBatch) -> None:
        self.board.batch(batch)

    def refresh(self, daemon: Daemon) -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        snap = self.board.snapshot(daemon, time.time())
        self.live.update(render(snap, self.console.size.height), refresh=True)

    def close(self) -> None:
        self.live.stop()
