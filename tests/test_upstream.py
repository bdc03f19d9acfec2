"""The public H-JEPA trainer's real event files (skipped when ../shared is absent)."""

from __future__ import annotations

from collections import Counter

from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

from hjepa_watch.events.discovery import discover
from hjepa_watch.events.tailer import Tailer

LOSS_TAGS = ["train/lr", "train/ema_momentum", "train/loss_h0", "train/loss_h1", "train/loss_h2", "train/loss"]
LOSS_TAGS.append("train/loss_unweighted")
STAT_TAGS = [f"train/{w}_{k}" for k in ("std", "norm", "rank") for w in ("context", "target")]


def _read(upstream):
    t = Tailer([str(upstream)], corrupt_grace=0)
    t.scan()
    return t, [p for b in t.poll() for p in b.points()]


def test_exact_counts_per_run_and_tag(upstream) -> None:
    t, pts = _read(upstream)
    counts = Counter((p.run, p.tag) for p in pts)
    fm, vt = "foundation_model/logs/tensorboard", "validation_test/logs/tensorboard"
    want = {}
    for tag in LOSS_TAGS:
        want[(fm, tag)] = 7 + 7 + 3
        want[(vt, tag)] = 8 + 15
    for tag in STAT_TAGS:
        want[(fm, tag)] = 4 + 4 + 2
        want[(vt, tag)] = 4 + 8
    assert counts == want
    s = t.stats
    assert (s.runs, s.files, s.scalars, s.corrupt_records) == (2, 5, 412, 0)


def test_restarts_are_segments(upstream) -> None:
    _, pts = _read(upstream)
    fm = [(p.step, p.segment) for p in pts if p.run.startswith("foundation") and p.tag == "train/loss"]
    assert fm == [(s, 0) for s in range(1, 1502, 250)] + [(s, 1) for s in range(1, 1502, 250)] + [
        (1, 2),
        (251, 2),
        (501, 2),
    ]
    vt = {p.segment for p in pts if p.run.startswith("validation")}
    assert vt == {0, 1}


def test_values_match_tensorboard_reader(upstream) -> None:
    _, pts = _read(upstream)
    want = []
    for run in discover(str(upstream)):
        for f in run.files:
            for e in LegacyEventFileLoader(f).Load():
                for v in e.summary.value:
                    want.append((run.name, v.tag, e.step, e.wall_time, v.simple_value))
    got = [(p.run, p.tag, p.step, p.wall_time, p.value) for p in pts]
    assert len(got) == len(want) == 412
    assert sorted(got) == sorted((r, t, s, w, float(__import__("numpy").float32(v))) for r, t, s, w, v in want)
