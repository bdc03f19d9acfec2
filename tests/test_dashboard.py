"""Dashboard rendering: golden snapshots at 80 and 140 columns (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import math
import os
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from hjepa_watch.dashboard import SIGNALS, SPARK, Board, RunInfo, Snapshot, render, signal_of, sparkline
from hjepa_watch.events.tailer import ScalarBatch

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_800_000_000.0


def _run(name: str, step: int, age: float, seg: int = 0, sick: bool = False) -> RunInfo:
    r = RunInfo(name, step, NOW - age, seg, step * 20)
    t = np.linspace(0, 1, SPARK)
    r.signals = {
        "loss": deque(list(3 * np.exp(-3 * t) + 0.3), maxlen=SPARK),
        "loss h0": deque(list(np.exp(-2 * t)), maxlen=SPARK),
        "std·√D L0": deque(list(0.9 - (0.85 * t if sick else 0 * t)), maxlen=SPARK),
        "rank frac L0": deque(list(0.6 + 0.01 * np.sin(9 * t)), maxlen=SPARK),
        "grad norm": deque([1.0] * (SPARK - 1) + [math.nan], maxlen=SPARK),
        "lr": deque(list(1e-3 * t), maxlen=SPARK),
        "ema": deque(list(0.996 + 0.004 * t), maxlen=SPARK),
    }
    return r


def _transition(rule, run, state, severity, step, summary, age) -> dict:
    return {"rule": rule, "run": run, "state": state, "severity": severity, "step": step, "summary": summary}


def _snapshots() -> dict[str, Snapshot]:
    for tag in ("train/loss/total", "train/loss/h0", "train/collapse/level0_std_sqrt_d"):
        signal_of(tag)  # the board learns the display order as tags arrive
    for tag in (
        "train/collapse/level0_rank_fraction",
        "train/lr",
        "train/ema_momentum",
        "train/gradient_flow/global_norm",
    ):
        signal_of(tag)
    assert SIGNALS
    recent = [
        {
            **_transition("grad_spike", "exp/a", "firing", "critical", 250, "gradient norm 58.9x its median", 0),
            "wall_time": NOW - 40,
        },
        {
            **_transition("grad_spike", "exp/a", "resolved", "critical", 251, "gradient norm 1.1x", 0),
            "wall_time": NOW - 39,
        },
        {
            **_transition("collapse_std", "exp/b", "firing", "critical", 625, "level 0 of exp/b collapsed: 0.072", 0),
            "wall_time": NOW - 5,
        },
    ]
    return {
        "empty": Snapshot(NOW, [], {}, {}, [], 0, 0, 0.0, 0, [], 5),
        "healthy": Snapshot(
            NOW,
            [_run("exp/a", 1200, 3), _run("exp/c", 90, 400, seg=1)],
            {},
            {"exp/c": 1},
            [],
            4,
            28000,
            950.0,
            0,
            [],
            5,
        ),
        "firing": Snapshot(
            NOW,
            [_run("exp/a", 1200, 3), _run("exp/b", 625, 1, sick=True)],
            {"exp/b": [("collapse_std", "critical")], "exp/a": [("loss_trend", "warning")]},
            {},
            recent,
            5,
            123456,
            1234.5,
            2,
            ["/logs/exp/a/events.out.tfevents.1: corrupt record at offset 300 (data CRC mismatch); skipped"],
            5,
        ),
        "many": Snapshot(
            NOW,
            [_run(f"sweep/lr{i:03d}", 100 + i, i * 30) for i in range(300)],
            {f"sweep/lr{i:03d}": [("collapse_std", "critical")] for i in range(0, 300, 37)},
            {},
            recent[:1],
            300,
            9_000_000,
            41000.0,
            0,
            [],
            5,
        ),
    }


@pytest.mark.parametrize("width", [80, 140])
@pytest.mark.parametrize("name", ["empty", "healthy", "firing", "many"])
def test_golden(name, width) -> None:
    console = Console(width=width, record=True, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(_snapshots()[name], height=40))
    text = console.export_text()
    path = GOLDEN / f"dashboard_{name}_{width}.txt"
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(text)
    assert text == path.read_text()
    assert max(len(line) for line in text.splitlines()) <= width


def test_worst_runs_first_and_summary_line_for_the_rest() -> None:
    console = Console(width=100, record=True, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(_snapshots()["many"], height=40))
    lines = console.export_text().splitlines()
    body = [ln for ln in lines if "sweep/lr" in ln]
    assert "collapse_std" in body[0]  # the worst first
    assert any("… 284 more runs (0 firing)" in ln for ln in lines)


def test_board_follows_batches() -> None:
    board = Board()
    tags = ["train/loss/total", "train/loss_h1", "train/collapse/level2_std_sqrt_d", "other"]
    tid = np.array([0, 1, 2, 3, 0], np.int32)
    b = ScalarBatch(
        "r", "f", tags, tid, np.arange(5), np.arange(5) + NOW, np.array([3.0, 2, 1, 0, 2.5]), np.zeros(5, int), 0
    )
    board.batch(b)
    info = board.runs["r"]
    assert info.last_step == 4 and list(info.signals["loss"]) == [3.0, 2.5]
    assert set(info.signals) == {"loss", "loss h1", "std·√D L2"}
    assert signal_of("train/context_std") == "context std" and signal_of("nope") is None


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert sparkline([1, math.nan, 1]) == "▁×▁"
    assert sparkline([math.nan]) == "·"
