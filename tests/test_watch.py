"""Live tailing: a real writer process, inotify and polling, each scalar exactly once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from hjepa_watch.events.tailer import Tailer
from hjepa_watch.events.watch import follow

from .conftest import read_all, same_points, write_torch_scalars

WRITER = textwrap.dedent(
    """
    import sys, time
    from torch.utils.tensorboard import SummaryWriter
    w = SummaryWriter(sys.argv[1])
    for step in range(int(sys.argv[2])):
        for tag in ("train/loss/total", "train/loss/h0", "train/collapse/level0_std_sqrt_d"):
            w.add_scalar(tag, step * 0.01, step)
        time.sleep(0.005)
    w.close()
    """
)


def _follow_in_thread(tailer: Tailer, **kw):
    got: list[tuple] = []
    stop = threading.Event()

    def run() -> None:
        for batch in follow(tailer, stop=stop, **kw):
            got.extend(tuple(p) for p in batch.points())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return got, stop, t


@pytest.mark.parametrize(("use_inotify", "poll_interval"), [(True, 3600.0), (False, 0.1)])
def test_follow_live_writer_exactly_once(tmp_path, use_inotify, poll_interval) -> None:
    """With an hour-long poll interval only inotify can deliver; without it, only polling."""
    tailer = Tailer([str(tmp_path)], corrupt_grace=0)
    got, stop, thread = _follow_in_thread(tailer, poll_interval=poll_interval, use_inotify=use_inotify)
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "run"), "150"], check=True, timeout=120)
    deadline = time.monotonic() + 30
    while len(got) < 450 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert same_points(got, read_all(tmp_path))
    assert len(got) == 450


def test_polling_finds_new_runs_and_survives_a_deleted_logdir(tmp_path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    notices = []
    tailer = Tailer([str(logdir)], corrupt_grace=0, on_notice=notices.append)
    got, stop, thread = _follow_in_thread(tailer, poll_interval=0.05, use_inotify=False)
    write_torch_scalars(logdir / "a", [("x", 1.0, 1)])
    deadline = time.monotonic() + 20
    while len(got) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    shutil.rmtree(logdir)
    while not any(n.kind == "logdir" for n in notices) and time.monotonic() < deadline:
        time.sleep(0.02)
    write_torch_scalars(logdir / "b", [("y", 2.0, 1)])
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)
    assert [(p[0], p[1], p[4]) for p in got] == [("a", "x", 1.0), ("b", "y", 2.0)]
    logdir_notices = [n.message for n in notices if n.kind == "logdir"]
    assert len(logdir_notices) == 2 and "waiting" in logdir_notices[0] and "back" in logdir_notices[1]
