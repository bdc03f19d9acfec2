"""Cost of the chart attached to a notification (target: < 50 ms), against the text alone.

Usage:
    python benchmarks/chart.py [--points N] [--repeats K]

Renders the PNG of a series of N points (threshold line, firing span shaded) K times
in one process after one warm-up (the first chart pays matplotlib's import), and the
notification text for the same alert, and prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hjepa_watch.notify.chart import render_png
from hjepa_watch.notify.message import render, sample_alert


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    steps = list(range(args.points))
    values = list(0.9 - 0.85 * (np.arange(args.points) > args.points * 0.8))
    t0 = time.perf_counter()
    render_png(steps, values, title="warm-up", threshold=0.1)
    first = time.perf_counter() - t0
    charts, texts = [], []
    alert = sample_alert(time.time())
    for _ in range(args.repeats):
        t = time.perf_counter()
        png = render_png(
            steps,
            values,
            title="train/collapse/level0_std_sqrt_d · exp",
            threshold=0.1,
            firing_from=int(args.points * 0.8),
        )
        charts.append(time.perf_counter() - t)
        t = time.perf_counter()
        render([alert], time.time())
        texts.append(time.perf_counter() - t)
    c, m = statistics.median(charts) * 1e3, statistics.median(texts) * 1e3
    print(
        f"chart of {args.points} points: {c:.1f} ms median over {args.repeats} ({len(png) / 1024:.0f} KiB PNG); "
        f"first one {first * 1e3:.0f} ms with imports"
    )
    print(f"text of the same alert: {m:.3f} ms; chart / text: {c / m:.0f}x  (target: chart < 50 ms)")


if __name__ == "__main__":
    main()
