"""Small helpers: one rule from YAML text, a series in the compact notation, its transitions."""

from __future__ import annotations

import numpy as np
import yaml

from hjepa_watch.events.segments import SegmentTracker
from hjepa_watch.events.tailer import ScalarBatch
from hjepa_watch.rules.evaluate import Evaluator
from hjepa_watch.rules.schema import Rule
from hjepa_watch.ruletest import parse_series


def rule(text: str, **kw) -> Rule:
    """A validated rule from YAML (name and metric defaulted)."""
    data = {"name": "r", "metric": "m", **yaml.safe_load(text), **kw}
    return Rule.model_validate(data)


def batch(run: str, tags: list[str], tag: str, steps, values, walls=None, tracker=None) -> ScalarBatch:
    """A ScalarBatch of one tag (segments assigned like the tailer does)."""
    if tag not in tags:
        tags.append(tag)
    steps = np.asarray(steps, np.int64)
    tid = np.full(len(steps), tags.index(tag), np.int32)
    walls = np.asarray(walls if walls is not None else steps * 1.0 + 1e9, np.float64)
    seg = (tracker or SegmentTracker()).assign(tid, steps)
    return ScalarBatch(run, "<t>", tags, tid, steps, walls, np.asarray(values, np.float64), seg, 0)


def transitions(r: Rule | list[Rule], values: str | list, *, chunks: int = 1, steps=None, walls=None, tag="m"):
    """(state, step) of every transition for a series fed in ``chunks`` batches."""
    vals = parse_series(values) if isinstance(values, str) else list(values)
    idx = [i for i, v in enumerate(vals) if v is not None]
    steps = np.asarray(steps if steps is not None else idx, np.int64)
    vals = np.array([vals[i] for i in idx], np.float64)
    walls = np.asarray(walls if walls is not None else steps * 1.0 + 1e9)
    ev = Evaluator(r if isinstance(r, list) else [r])
    tags: list[str] = []
    tracker = SegmentTracker()
    out = []
    for part in np.array_split(np.arange(len(steps)), chunks):
        if len(part):
            b = batch("run", tags, tag, steps[part], vals[part], walls[part], tracker)
            out += [(t.state.value, t.step) for t in ev.process(b)]
    return out
