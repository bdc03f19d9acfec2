"""Latency from a training process writing a scalar to the daemon printing the alert transition.

Usage:
    python benchmarks/latency.py [--alerts N] [--period SECONDS]

A writer process (torch's SummaryWriter; without TensorFlow installed it writes every
record with its own open/write/close, so each scalar is on disk within milliseconds
and ``flush_secs`` plays no part) logs a value every ``--period`` seconds that
alternates across a threshold, so that every point is an alert transition. The
daemon runs as a real subprocess with ``--json``; each transition line's
``wall_time`` is the writer's timestamp of the point, and the time the line is read
from the daemon's stdout, minus it, is the latency (one host, one clock). Measured
with inotify, and for the peer with polling only (``--no-inotify``, the default
2 s interval); prints p50/p99/max of each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

RULES = "rules:\n  - {name: high, metric: train/loss/total, condition: above, threshold: 5}\n"
WRITER = textwrap.dedent(
    """
    import sys, time
    from torch.utils.tensorboard import SummaryWriter
    w = SummaryWriter(sys.argv[1])
    n, period = int(sys.argv[2]), float(sys.argv[3])
    time.sleep(2)  # the daemon is up and watching
    for step in range(n):
        w.add_scalar("train/loss/total", 10.0 if step % 2 else 0.0, step, walltime=time.time())
        time.sleep(period)
    w.close()
    """
)


def measure(alerts: int, period: float, inotify: bool) -> list[float]:
    """Latencies (seconds) of ``alerts`` transitions."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "logs").mkdir()
        (t / "rules.yaml").write_text(RULES)
        cmd = [sys.executable, "-m", "hjepa_watch", str(t / "logs"), "--rules", str(t / "rules.yaml")]
        cmd += ["--state", str(t / "state.db"), "--json"] + ([] if inotify else ["--no-inotify"])
        daemon = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lat: list[float] = []

        def read() -> None:
            for line in daemon.stdout:
                got = time.time()
                d = json.loads(line)
                if d.get("type") == "alert":
                    lat.append(got - d["wall_time"])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        subprocess.run(
            [sys.executable, "-c", WRITER, str(t / "logs" / "run"), str(alerts + 1), str(period)], check=True
        )
        deadline = time.monotonic() + 10
        while len(lat) < alerts and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.terminate()
        daemon.wait(timeout=10)
        return lat


def summary(lat: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) in milliseconds."""
    s = sorted(lat)
    return statistics.median(s) * 1e3, s[min(int(0.99 * len(s)), len(s) - 1)] * 1e3, s[-1] * 1e3


def main() -> None:
    """Measure both modes and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=200)
    ap.add_argument("--period", type=float, default=0.05)
    args = ap.parse_args()
    ino = measure(args.alerts, args.period, inotify=True)
    poll = measure(min(args.alerts, 60), max(args.period, 0.1), inotify=False)
    a, b = summary(ino), summary(poll)
    print(f"writer: torch SummaryWriter, one record per open/write/close (no buffering), a point every {args.period}s")
    print(f"  inotify       {len(ino):4d} transitions  p50 {a[0]:7.1f} ms  p99 {a[1]:7.1f} ms  max {a[2]:7.1f} ms")
    print(f"  polling (2 s) {len(poll):4d} transitions  p50 {b[0]:7.1f} ms  p99 {b[1]:7.1f} ms  max {b[2]:7.1f} ms")
    print(f"p99 with inotify: {a[1]:.0f} ms (target < 1000 ms); polling p50 / inotify p50: {b[0] / a[0]:.0f}x")


if __name__ == "__main__":
    main()
