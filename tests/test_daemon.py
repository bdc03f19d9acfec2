"""The daemon as a real subprocess: live alerts, clean stops, restarts and crashes, bad input."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hjepa_watch.replay import replay
from hjepa_watch.rules.loader import load_rules

from .conftest import write_torch_scalars

RULES = """rules:
  - name: loss_nan
    metric: "train/loss/{part}"
    condition: nonfinite
    severity: critical
  - name: high
    metric: "train/x/{k}"
    condition: above
    threshold: 0.5
    for: 2
  - name: dip
    metric: "train/x/{k}"
    condition: drop_from_max
    threshold: 0.9
    window: 3
"""

WRITER = textwrap.dedent(
    """
    import math, sys
    from torch.utils.tensorboard import SummaryWriter
    w = SummaryWriter(sys.argv[1])
    start, n = int(sys.argv[2]), int(sys.argv[3])
    for step in range(start, start + n):
        w.add_scalar("train/loss/total", float("nan") if step % 50 == 49 else 1.0, step)
        w.add_scalar("train/x/a", (step % 7) / 6, step)
    w.close()
    """
)


class Daemon:
    """hjepa-watch in a subprocess, its stdout lines collected by a thread."""

    def __init__(self, logdir: Path, state: Path, rules: Path, *extra: str) -> None:
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hjepa_watch",
                str(logdir),
                "--state",
                str(state),
                "--rules",
                str(rules),
                "--json",
                "--poll-interval",
                "0.2",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.p.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stderr, False), daemon=True).start()

    def _read(self, stream, out: bool) -> None:
        for line in stream:
            (self.lines.append(json.loads(line)) if out else self.err.append(line.rstrip()))

    def wait_for(self, pred, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"daemon exited {self.p.returncode}: {self.err}")
            time.sleep(0.05)
        assert pred(), f"timed out; stderr: {self.err[-5:]}"

    def stop(self, sig=signal.SIGTERM) -> int:
        self.p.send_signal(sig)
        return self.p.wait(timeout=30)


@pytest.fixture
def rules(tmp_path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES)
    return p


def _key(x: dict) -> tuple:
    return (x["rule"], x["run"], json.dumps(x["labels"], sort_keys=True), x["state"], x["segment"], x["step"])


def _replayed(logdir: Path, rules: Path) -> list[tuple]:
    got, _ = replay([str(logdir)], load_rules([str(rules)]))
    return sorted(_key(t.to_json()) for t in got)


def _history(state: Path) -> list[tuple]:
    db = sqlite3.connect(state)
    rows = db.execute(
        "SELECT rule, run, labels, state, segment, step FROM history ORDER BY rule, run, labels, step, state"
    )
    return [tuple(r) for r in rows]


def test_live_alert_then_sigterm_and_restart_repeat_nothing(tmp_path, rules) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    d = Daemon(logdir, state, rules)
    subprocess.run([sys.executable, "-c", WRITER, str(logdir / "run"), "0", "60"], check=True, timeout=120)
    want = _replayed(logdir, rules)
    d.wait_for(lambda: len(d.lines) >= len(want))
    time.sleep(0.5)
    assert sorted(_key(x) for x in d.lines) == want  # live equals replay
    t0 = time.monotonic()
    assert d.stop() == 0
    stop_seconds = time.monotonic() - t0  # reported, not asserted: machines are noisy
    first = list(d.lines)
    assert sorted((x["rule"], x["state"], x["step"]) for x in first) == sorted(
        set((x["rule"], x["state"], x["step"]) for x in first)
    )
    # While it is down the run goes on; on restart it catches up: the alerts of that
    # time fire once, and nothing from before is printed again.
    subprocess.run([sys.executable, "-c", WRITER, str(logdir / "run"), "60", "60"], check=True, timeout=120)
    d2 = Daemon(logdir, state, rules)
    d2.wait_for(lambda: any(x["rule"] == "loss_nan" and x["step"] == 99 for x in d2.lines))
    time.sleep(0.5)
    assert sorted(_key(x) for x in first + d2.lines) == _replayed(logdir, rules)
    assert d2.stop(signal.SIGINT) == 0
    assert not {(x["rule"], x["state"], x["step"]) for x in first} & {
        (x["rule"], x["state"], x["step"]) for x in d2.lines
    }
    print(f"stopped in {stop_seconds:.2f} s")


def test_sigkill_at_random_moments_equals_one_uninterrupted_replay(tmp_path, rules) -> None:
    src = tmp_path / "src"
    write_torch_scalars(
        src, [("train/x/a", (s % 7) / 6, s) for s in range(3000)] + [("train/loss/total", float("nan"), 3000)]
    )
    event_file = next(src.iterdir())
    logdir = tmp_path / "logs"
    for i in range(64):
        (logdir / f"r{i:02d}").mkdir(parents=True)
        shutil.copy(event_file, logdir / f"r{i:02d}" / event_file.name)
    want = _replayed(logdir, rules)
    state = tmp_path / "state.db"
    rng = random.Random(7)
    kills = 0
    progress = []
    for _ in range(40):
        d = Daemon(logdir, state, rules)
        time.sleep(rng.uniform(0.2, 1.0))
        if d.p.poll() is not None:
            raise AssertionError(d.err)
        d.p.kill()  # SIGKILL: no handler, no cleanup
        d.p.wait()
        kills += 1
        progress.append(len(_history(state)))
        if progress[-1] >= len(want):
            break
    d = Daemon(logdir, state, rules)  # finish cleanly
    d.wait_for(lambda: len(_history(state)) >= len(want), timeout=120)
    time.sleep(0.5)
    assert d.stop() == 0
    print("kills", kills, "progress", progress, "of", len(want))
    assert kills >= 2
    assert any(0 < n < len(want) for n in progress), progress  # killed in the middle of the work
    assert sorted(_history(state)) == want


def test_bad_config_unwritable_state_and_damaged_database(tmp_path, rules) -> None:
    def run(*args, env=None):
        return subprocess.run(
            [sys.executable, "-m", "hjepa_watch", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = run(logdir, "--state", tmp_path / "s.db", env={"HJEPA_WATCH_POLL_INTERVAL": "soon"})
    assert p.returncode == 2 and "HJEPA_WATCH_POLL_INTERVAL" in p.stderr and p.stderr.count("\n") == 1
    cfg = tmp_path / "c.yaml"
    cfg.write_text("poll_interval: -3\n")
    p = run(logdir, "--state", tmp_path / "s.db", "--config", cfg)
    assert p.returncode == 2 and "poll_interval" in p.stderr and str(cfg) in p.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = run(logdir, "--state", blocker / "state.db", "--json")
    assert p.returncode == 2 and "state database" in p.stderr and "Traceback" not in p.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    p = run(logdir, "--state", junk, "--json")
    assert p.returncode == 2 and "cannot be used" in p.stderr and "Traceback" not in p.stderr
    assert junk.read_bytes() == b"this is not a database" * 100  # never rewritten
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version=99")
    db.close()
    p = run(logdir, "--state", newer, "--json")
    assert p.returncode == 2 and "newer" in p.stderr


def test_logdir_deleted_while_watched(tmp_path, rules) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    write_torch_scalars(logdir / "a", [("train/loss/total", float("nan"), 1)])
    d = Daemon(logdir, state, rules)
    d.wait_for(lambda: len(d.lines) == 1)
    shutil.rmtree(logdir)
    d.wait_for(lambda: any("waiting for it to come back" in e for e in d.err))
    write_torch_scalars(logdir / "b", [("train/loss/total", float("inf"), 1)])
    d.wait_for(lambda: len(d.lines) == 2)
    assert d.stop() == 0
    assert [(x["run"], x["state"]) for x in d.lines] == [("a", "firing"), ("b", "firing")]


def test_sighup_reloads_rules_and_keeps_old_ones_when_broken(tmp_path, rules) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    d = Daemon(logdir, state, rules)
    time.sleep(1.0)
    rules.write_text("rules: [{name: broken}]\n")
    d.p.send_signal(signal.SIGHUP)
    d.wait_for(lambda: any("old rules stay in force" in e for e in d.err))
    write_torch_scalars(logdir / "a", [("train/loss/total", float("nan"), 1)])
    d.wait_for(lambda: len(d.lines) == 1)  # the old rules still work
    rules.write_text("rules: [{name: only_big, metric: train/loss/total, condition: above, threshold: 1e3}]\n")
    d.p.send_signal(signal.SIGHUP)
    d.wait_for(lambda: any("rules reloaded: 1 rules" in e for e in d.err))
    write_torch_scalars(logdir / "b", [("train/loss/total", 5e3, 1)])
    d.wait_for(lambda: any(x["rule"] == "only_big" for x in d.lines))
    assert d.stop() == 0


def test_history_command(tmp_path, rules) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    write_torch_scalars(logdir / "a", [("train/loss/total", float("nan"), 1)])
    d = Daemon(logdir, state, rules)
    d.wait_for(lambda: len(d.lines) == 1)
    assert d.stop() == 0
    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "history", "--state", str(state), "--json"],
        capture_output=True,
        text=True,
    )
    (row,) = [json.loads(x) for x in p.stdout.splitlines()]
    assert (row["rule"], row["run"], row["state"], row["step"]) == ("loss_nan", "a", "firing", 1)
    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "history", "--state", str(state)], capture_output=True, text=True
    )
    assert p.returncode == 0 and "loss_nan" in p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "history", "--state", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "no state database" in p.stderr
