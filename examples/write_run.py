"""Write a small H-JEPA-like run with torch's SummaryWriter, with faults, restarted once.

Usage: python examples/write_run.py LOGDIR

The first life has a gradient spike at step 250 and level 2 collapsing from step
600; the second life starts again from step 0, as a restarted job does, and
hjepa-watch reads it as a new segment of the same run (its high early loss is not a
spike).
"""

from __future__ import annotations

import math
import random
import sys

from torch.utils.tensorboard import SummaryWriter


def write_life(logdir: str, steps: int, seed: int, faults: bool) -> None:
    """One job's life: losses per level, collapse metrics, gradient norm, lr, EMA."""
    rng = random.Random(seed)
    w = SummaryWriter(logdir)
    for step in range(steps):
        decay = math.exp(-step / 150)
        for level in range(3):
            std = 0.9 + rng.gauss(0, 0.02)
            if faults and level == 2 and step >= 600:
                std *= math.exp(-(step - 600) / 10)  # representations collapse
            w.add_scalar(f"train/loss/h{level}", 0.2 + decay * (1 + level) + rng.gauss(0, 0.01), step)
            w.add_scalar(f"train/collapse/level{level}_std_sqrt_d", std, step)
            w.add_scalar(f"train/collapse/level{level}_rank_fraction", 0.6 + rng.gauss(0, 0.02), step)
        w.add_scalar("train/loss/total", 0.6 + 3 * decay + rng.gauss(0, 0.02), step)
        grad = abs(rng.gauss(1.0, 0.2)) * (50 if faults and step == 250 else 1)
        w.add_scalar("train/gradient/global_norm_before_clip", grad, step)
        w.add_scalar("train/learning_rate/base_lr", 1e-3 * min(1.0, (step + 1) / 50), step)
        w.add_scalar("train/ema/momentum_current", 0.996 + 0.003 * step / steps, step)
    w.close()


def main() -> None:
    """Write two lives of one run under LOGDIR/demo-run."""
    logdir = sys.argv[1] + "/demo-run"
    write_life(logdir, 700, seed=1, faults=True)
    write_life(logdir, 120, seed=2, faults=False)  # the restart


if __name__ == "__main__":
    main()
