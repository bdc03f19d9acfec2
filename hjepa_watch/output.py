"""Outputs of transitions: JSON lines, human lines, the dashboard; and history tables."""

from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import TextIO

from hjepa_watch.daemon import Output
from hjepa_watch.events.tailer import Notice
from hjepa_watch.rules.transition import Transition

_STATE = {"pending": "PENDING ", "firing": "FIRING  ", "resolved": "RESOLVED"}


def json_line(obj: dict) -> str:
    """One JSON object per line; NaN and ±Inf as the JSON text tokens NaN/Infinity."""
    return json.dumps(obj, allow_nan=True, separators=(", ", ": "))


def _when(wall: float) -> str:
    return _dt.datetime.fromtimestamp(wall, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def human_line(t: Transition | dict) -> str:
    """``2025-11-16 03:12:44  FIRING   critical  rule  run [labels]  step N: summary``."""
    d = t.to_json() if isinstance(t, Transition) else t
    labels = " ".join(f"{k}={v}" for k, v in sorted(d["labels"].items()))
    where = d["run"] + (f" [{labels}]" if labels else "")
    return (
        f"{_when(d['wall_time'])}  {_STATE[d['state']]} {d['severity']:<8}  {d['rule']}  {where}  "
        f"step {d['step']}: {d['summary']}"
    )


class LineOutput(Output):
    """Transitions as lines on stdout (JSON or human), notices on stderr."""

    def __init__(self, out: TextIO, err: TextIO, as_json: bool) -> None:
        self.out, self.err, self.as_json = out, err, as_json

    def transitions(self, items: list[dict]) -> None:
        for d in items:
            print(json_line(d) if self.as_json else human_line(d), file=self.out)
        self.out.flush()

    def notice(self, notice: Notice) -> None:
        if notice.kind != "new_run":
            print(f"hjepa-watch: {notice.kind}: {notice.message}", file=self.err)
            self.err.flush()


def make_output(settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> Output:
    """The dashboard on a terminal (unless turned off), JSON lines otherwise."""
    tty = out.isatty()
    dashboard = settings.dashboard if settings.dashboard is not None else tty and not settings.json_output
    if dashboard and not settings.json_output:
        from hjepa_watch.dashboard import DashboardOutput

        return DashboardOutput(out)
    return LineOutput(out, err, as_json=settings.json_output or not tty)


def history_table(rows: list[dict], out: TextIO) -> None:
    """Past transitions as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} alert transitions", expand=False)
    for col in ("time (UTC)", "state", "severity", "rule", "run", "labels", "step", "value", "summary"):
        table.add_column(col, overflow="fold")
    for r in rows:
        labels = " ".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        table.add_row(
            _when(r["wall_time"]),
            r["state"],
            r["severity"],
            r["rule"],
            r["run"],
            labels,
            str(r["step"]),
            f"{r['value']:.4g}",
            r["summary"],
        )
    Console(file=out, width=None if out.isatty() else 160).print(table)
