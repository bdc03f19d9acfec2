"""Human-readable lines for alert transitions (the JSON form is Transition.to_json)."""

from __future__ import annotations

import datetime as _dt

from hjepa_watch.rules.evaluate import Transition

_STATE = {"pending": "PENDING ", "firing": "FIRING  ", "resolved": "RESOLVED"}


def human_line(t: Transition) -> str:
    """``2025-11-16 03:12:44  FIRING   critical  rule  run [labels]  step N: summary``."""
    when = _dt.datetime.fromtimestamp(t.wall_time, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    labels = " ".join(f"{k}={v}" for k, v in t.key.labels)
    where = f"{t.key.run}" + (f" [{labels}]" if labels else "")
    return f"{when}  {_STATE[t.state.value]} {t.severity:<8}  {t.key.rule}  {where}  step {t.step}: {t.summary}"
