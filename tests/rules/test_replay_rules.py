"""replay --rules over real event files: JSON lines, ordering, and the upstream restarts."""

from __future__ import annotations

import json
import subprocess
import sys

from hjepa_watch.replay import replay
from hjepa_watch.rules.loader import load_rules

from ..conftest import write_torch_scalars

NAIVE_SPIKE = """rules:
  - name: loss_spike
    metric: train/loss
    condition: spike
    threshold: 1.5
    window: 3
"""


def test_upstream_restart_is_not_a_spike(upstream, tmp_path) -> None:
    """train/loss drops over each life and starts high again after each restart:
    within a life a 1.5x factor never happens, across the boundary it would."""
    rules_file = tmp_path / "r.yaml"
    rules_file.write_text(NAIVE_SPIKE)
    transitions, summary = replay([str(upstream)], load_rules([str(rules_file)]))
    assert summary.scalars == 412
    assert transitions == []
    # The same rule fed one life after the other, as one segment, would fire:
    from hjepa_watch.events.tailer import Tailer
    from hjepa_watch.rules.evaluate import Evaluator

    t = Tailer([str(upstream)], corrupt_grace=0)
    t.scan()
    ev = Evaluator(load_rules([str(rules_file)]))
    fired = []
    for b in t.poll():
        b.segment[:] = 0
        fired += ev.process(b)
    assert any(x.state.value == "firing" for x in fired)


def test_replay_json_lines_in_writer_time_order(tmp_path) -> None:
    write_torch_scalars(tmp_path / "a", [("train/loss/total", v, s) for s, v in enumerate([1, 1, 1, float("nan"), 1])])
    write_torch_scalars(tmp_path / "b", [("train/loss/total", v, s) for s, v in enumerate([1, float("inf")])])
    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "replay", str(tmp_path), "--json"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    alerts = [x for x in lines if x["type"] == "alert"]
    assert [(a["run"], a["state"], a["step"]) for a in alerts] == [
        ("a", "firing", 3),
        ("a", "resolved", 4),
        ("b", "firing", 1),
    ]
    assert [a["wall_time"] for a in alerts] == sorted(a["wall_time"] for a in alerts)
    assert lines[-1]["type"] == "summary" and lines[-1]["alerts_fired"] == 2
    assert '"value": NaN' in p.stdout and '"value": Infinity' in p.stdout


def test_replay_human_output_and_bad_rules_exit_2(tmp_path) -> None:
    write_torch_scalars(tmp_path / "a", [("train/loss/total", float("nan"), 1)])
    p = subprocess.run([sys.executable, "-m", "hjepa_watch", "replay", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0 and "FIRING" in p.stdout and "loss_nonfinite" in p.stdout
    (tmp_path / "bad.yaml").write_text("rules: [{name: x}]\n")
    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "replay", str(tmp_path), "--rules", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "bad.yaml:1: rule 'x'" in p.stderr and "Traceback" not in p.stderr
