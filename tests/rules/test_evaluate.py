"""The evaluator: routing by selectors, labels, segments, warmup, stale, output."""

from __future__ import annotations

import json

import numpy as np

from hjepa_watch.events.segments import SegmentTracker
from hjepa_watch.rules.evaluate import Evaluator

from .helpers import batch, rule


def test_captures_become_labels_and_instances() -> None:
    r = rule("{condition: below, threshold: 0.1}", metric="train/collapse/level{level}_std_sqrt_d")
    ev = Evaluator([r])
    tags: list[str] = []
    out = []
    for lvl, v in [(0, 0.05), (1, 0.9), (2, 0.01)]:
        out += ev.process(batch("run", tags, f"train/collapse/level{lvl}_std_sqrt_d", [1], [v]))
    assert sorted(t.key.label_dict["level"] for t in out) == ["0", "2"]
    assert {t.metric for t in out} == {"train/collapse/level0_std_sqrt_d", "train/collapse/level2_std_sqrt_d"}


def test_also_names_the_same_signal_and_runs_glob_selects() -> None:
    r = rule("{condition: above, threshold: 1}", metric="train/loss/total", also=["train/loss"], runs="exp-*")
    ev = Evaluator([r])
    out = ev.process(batch("exp-1", [], "train/loss", [1], [5]))
    out += ev.process(batch("other", [], "train/loss/total", [1], [5]))
    assert [(t.key.run, t.metric) for t in out] == [("exp-1", "train/loss")]


def test_static_labels_join_the_identity_and_json_shape() -> None:
    r = rule(
        "{condition: above, threshold: 1, severity: critical, labels: {team: ssl}, summary: 'v={value:.2f} {team}'}",
        metric="train/x{i}",
    )
    ev = Evaluator([r])
    (t,) = ev.process(batch("run", [], "train/x3", [7], [2.5]))
    j = t.to_json()
    assert j["labels"] == {"i": "3", "team": "ssl"} and j["summary"] == "v=2.50 ssl"
    assert {k: j[k] for k in ("type", "rule", "run", "metric", "state", "severity", "step", "value", "segment")} == {
        "type": "alert",
        "rule": "r",
        "run": "run",
        "metric": "train/x3",
        "state": "firing",
        "severity": "critical",
        "step": 7,
        "value": 2.5,
        "segment": 0,
    }
    assert json.loads(json.dumps(j)) == j


def test_nan_value_serialises_as_json_token() -> None:
    ev = Evaluator([rule("{condition: nonfinite}")])
    (t,) = ev.process(batch("run", [], "m", [1], [float("nan")]))
    from hjepa_watch.cli import json_line

    assert '"value": NaN' in json_line(t.to_json())


def test_restart_is_not_a_spike_windows_stay_in_their_segment() -> None:
    """Loss falls to 0.1 in life one; the restarted life starts at 5 again: no spike."""
    r = rule("{condition: spike, threshold: 10, window: 5}")
    ev = Evaluator([r])
    tags: list[str] = []
    tracker = SegmentTracker()
    first = ev.process(batch("run", tags, "m", np.arange(1, 21), np.full(20, 0.1), tracker=tracker))
    second = ev.process(batch("run", tags, "m", np.arange(1, 21), np.full(20, 5.0), tracker=tracker))
    assert first == [] and second == []
    # The same jump inside one life is a spike.
    third = ev.process(batch("run", tags, "m", np.arange(21, 30), [5.0] * 4 + [100.0] * 5, tracker=tracker))
    assert [t.state.value for t in third][:1] == ["firing"]


def test_warmup_applies_to_each_segment_and_windows_skip_it() -> None:
    r = rule("{condition: below, threshold: 0.5, warmup: 100}")
    ev = Evaluator([r])
    tags: list[str] = []
    tracker = SegmentTracker()
    a = ev.process(batch("run", tags, "m", [0, 50, 100, 150], [0.1, 0.1, 1, 1], tracker=tracker))
    b = ev.process(batch("run", tags, "m", [0, 50, 120], [0.1, 0.1, 0.1], tracker=tracker))  # restart
    assert a == [] and [(t.state.value, t.step, t.segment) for t in b] == [("firing", 120, 1)]


def test_drop_from_max_restarts_with_the_segment() -> None:
    r = rule("{condition: drop_from_max, threshold: 0.5}")
    ev = Evaluator([r])
    tags: list[str] = []
    tracker = SegmentTracker()
    ev.process(batch("run", tags, "m", [1, 2], [100, 100], tracker=tracker))
    assert ev.process(batch("run", tags, "m", [1, 2], [10, 9], tracker=tracker)) == []


def test_stale_from_gaps_and_from_the_clock() -> None:
    r = rule("{condition: stale, threshold: 60}")
    ev = Evaluator([r])
    tags: list[str] = []
    walls = [1000.0, 1010, 1020, 1200, 1210]
    out = ev.process(batch("run", tags, "m", [1, 2, 3, 4, 5], [1] * 5, walls=walls))
    assert [(t.state.value, t.wall_time) for t in out] == [("firing", 1080.0), ("resolved", 1200.0)]
    assert ev.tick(1260) == []
    (t,) = ev.tick(1271)
    assert (t.state.value, t.wall_time) == ("firing", 1270.0)
    assert ev.tick(2000) == []  # firing once, not again
    (r2,) = ev.process(batch("run", tags, "m", [6], [1], walls=[2000.0]))
    assert r2.state.value == "resolved"
