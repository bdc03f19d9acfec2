"""Idle cost of watching 1,000 runs x 60 tags: CPU and RSS of the daemon, against the Rust data server.

Usage:
    python benchmarks/idle.py [--runs N] [--seconds S]

Makes N runs, each an event file of 60 tags x 10 steps written by torch's
SummaryWriter (one file, copied), starts the daemon on them (default rule pack,
inotify plus the default 2 s polling floor), waits until it has caught up, then
measures its CPU time and RSS over S idle seconds from /proc. The peer is
TensorBoard's Rust data server on the same directory with a 2 s reload (it re-walks
the directory every cycle), measured the same way after its first load cycle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def make_logdir(root: Path, runs: int) -> Path:
    """N runs of one 60-tag file each."""
    from torch.utils.tensorboard import SummaryWriter

    src = root / "src"
    w = SummaryWriter(str(src))
    for step in range(10):
        for i in range(60):
            w.add_scalar(f"train/metric{i:02d}", 0.5, step)
    w.close()
    f = next(src.iterdir())
    logs = root / "logs"
    for r in range(runs):
        d = logs / f"run{r:04d}"
        d.mkdir(parents=True)
        shutil.copy(f, d / f.name)
    return logs


def idle(pid: int, seconds: float) -> tuple[float, float, float]:
    """(CPU %, RSS MiB, peak RSS MiB) over ``seconds`` of idling."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    rss, peak = rss_mib(pid)
    return 100 * (c1 - c0) / (t1 - t0), rss, peak


def settle(pid: int, quiet: float = 3.0, limit: float = 300) -> float:
    """Wait until the process has used almost no CPU for ``quiet`` seconds; return the wait."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        c0 = cpu_seconds(pid)
        time.sleep(quiet)
        if cpu_seconds(pid) - c0 < 0.05 * quiet:
            return time.monotonic() - start
    return time.monotonic() - start


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        logs = make_logdir(root, args.runs)
        cmd = [sys.executable, "-m", "hjepa_watch", str(logs), "--state", str(root / "state.db"), "--json"]
        d = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        caught_up = settle(d.pid)
        ours = idle(d.pid, args.seconds)
        d.terminate()
        d.wait(timeout=30)
        from tensorboard_data_server import server_binary

        rust = subprocess.Popen(
            [server_binary(), "--logdir", str(logs), "--reload", "2", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        settle(rust.pid)
        theirs = idle(rust.pid, args.seconds)
        rust.kill()
        rust.wait()
    print(f"{args.runs} runs x 60 tags, idle for {args.seconds:.0f} s after catching up ({caught_up:.0f} s)")
    print(f"  hjepa-watch (inotify + 2 s poll)  CPU {ours[0]:5.2f}%  RSS {ours[1]:6.1f} MiB  (peak {ours[2]:.1f})")
    print(
        f"  Rust data server (2 s reload)     CPU {theirs[0]:5.2f}%  RSS {theirs[1]:6.1f} MiB  (peak {theirs[2]:.1f})"
    )
    ratio = theirs[0] / ours[0] if ours[0] > 0 else float("inf")
    print(f"idle CPU, Rust data server / hjepa-watch: {ratio:.1f}x")


if __name__ == "__main__":
    main()
