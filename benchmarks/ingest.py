"""Cold ingest of a 1,000,000-scalar run: hjepa-watch vs TensorBoard's readers, in one run.

Usage:
    python benchmarks/ingest.py [--scalars N] [--cache DIR] [--repeats K] [--ea-repeats K] [--cores C]

Makes (or reuses from the cache folder) one run written by torch's SummaryWriter
with the H-JEPA tag vocabulary of DESIGN.md §8, then times, each in its own process
pinned to one core (``taskset``), with the file in the page cache:

* ``hjepa-watch replay --no-rules`` (ingest only, both CRCs verified): the ``seconds`` of its summary line,
  i.e. ingest without interpreter start-up; its peak RSS too;
* TensorBoard's legacy ``EventAccumulator.Reload()``;
* the Rust data server of ``tensorboard-data-server`` (``--reload once``), until it
  logs "Finished load cycle", with ``--checksum`` (both CRCs, like hjepa-watch) and
  without (its default: data CRCs only when parsing fails).

Prints scalars/s for each and the ratios. Medians over the repeats. Then, to show
that replay memory is bounded, hjepa-watch's peak RSS on a logdir of ``--copies``
runs (symlinks to the same file, so no disk is spent) against one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAGS = (
    [f"train/loss/h{i}" for i in range(3)]
    + ["train/loss/total", "train/loss/unweighted"]
    + [f"train/loss/contribution_h{i}" for i in range(3)]
    + ["train/ema/momentum_current", "train/ema/weight_magnitude_ratio", "train/masking/mask_ratio"]
    + [
        f"train/collapse/level{i}_{m}"
        for i in range(3)
        for m in ("std_sqrt_d", "rank_fraction", "effective_rank", "mean_similarity")
    ]
    + [f"train/prediction/level{i}_cosine_sim_mean" for i in range(3)]
    + ["train/gradient/global_norm_before_clip", "train/gradient/global_norm_after_clip", "train/gradient/was_clipped"]
    + ["train/learning_rate/base_lr", "train/performance/samples_per_second", "train/performance/total_time_ms"]
    + [f"train/hierarchy/level{i}_feat_std" for i in range(3)]
)


def series(tag: str, steps: int, rng) -> list[float]:
    """Plausible values for one tag of a healthy H-JEPA run, with a few faults.

    Losses decay with noise, collapse metrics hover near healthy levels, the gradient
    norm is log-normal with a spike every ~5,000 steps, schedules ramp; one NaN loss.
    """
    import numpy as np

    t = np.arange(steps, dtype=np.float64)
    noise = rng.standard_normal(steps)
    if tag.startswith("train/loss/contribution"):
        v = 33 + 2 * noise
    elif tag.startswith("train/loss"):
        v = 0.3 + 2.5 * np.exp(-t / (steps / 5)) + 0.02 * noise
        v[steps // 2] = np.nan
    elif "std_sqrt_d" in tag:
        v = 0.9 + 0.02 * noise
    elif "rank_fraction" in tag:
        v = 0.6 + 0.1 * np.tanh(t / 2000) + 0.01 * noise
    elif "effective_rank" in tag:
        v = 300 + 50 * np.tanh(t / 2000) + 5 * noise
    elif "mean_similarity" in tag:
        v = 0.1 + 0.01 * noise
    elif "global_norm" in tag:
        v = np.exp(0.2 * noise)
        v[::5000] *= 40
    elif tag.endswith("was_clipped"):
        v = (rng.random(steps) < 0.05).astype(float)
    elif "learning_rate" in tag:
        v = 1e-3 * np.minimum(1, (t + 1) / 1000) * (0.5 + 0.5 * np.cos(np.pi * t / steps))
    elif "momentum" in tag:
        v = 0.996 + 0.004 * t / steps
    elif "weight_magnitude" in tag:
        v = 1 + 0.01 * noise
    elif "mask_ratio" in tag:
        v = 0.6 + 0.02 * noise
    elif "samples_per_second" in tag:
        v = 800 + 20 * noise
    elif "time_ms" in tag:
        v = 120 + 5 * noise
    else:
        v = 0.5 + 0.05 * noise
    return v.tolist()


def make_run(root: Path, scalars: int) -> Path:
    """Write (once) a run of at least ``scalars`` scalars with torch's SummaryWriter."""
    run = root / f"run-{scalars}-v2" / "hjepa"
    done = run.parent / "DONE"
    if done.exists():
        return run.parent
    import math

    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    run.mkdir(parents=True, exist_ok=True)
    for f in run.glob("*tfevents*"):
        f.unlink()
    rng = np.random.default_rng(0)
    steps = math.ceil(scalars / len(TAGS))
    values = {tag: series(tag, steps, rng) for tag in TAGS}
    print(f"writing {steps * len(TAGS):,} scalars with torch's SummaryWriter into {run} (cached) ...", file=sys.stderr)
    t = time.perf_counter()
    w = SummaryWriter(str(run))
    for step in range(steps):
        for tag in TAGS:
            w.add_scalar(tag, values[tag][step], step)
    w.close()
    done.write_text(str(steps * len(TAGS)))
    print(f"  took {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return run.parent


def make_copies(root: Path, logdir: Path, copies: int) -> Path:
    """A logdir of ``copies`` runs whose event files are symlinks to the one real file."""
    big = root / f"copies-{copies}-of-{logdir.name}"
    src = next(logdir.rglob("*tfevents*"))
    for i in range(copies):
        run = big / f"run{i:03d}"
        run.mkdir(parents=True, exist_ok=True)
        link = run / src.name
        if not link.exists():
            link.symlink_to(src)
    return big


def pinned(cores: str) -> list[str]:
    return ["taskset", "-c", cores]


def time_hjepa(logdir: Path, cores: str) -> tuple[float, int, int]:
    """(ingest seconds, scalars, peak RSS in KiB) of one ``hjepa-watch replay``."""
    code = (
        "import json, resource, sys\n"
        "from hjepa_watch.cli import main\n"
        "rc = main(['replay', sys.argv[1], '--json', '--no-rules'])\n"
        "print(json.dumps({'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
    )
    out = subprocess.run([*pinned(cores), sys.executable, "-c", code, str(logdir)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    summary = next(x for x in lines if x.get("type") == "summary")
    return summary["seconds"], summary["scalars"], lines[-1]["maxrss"]


def time_event_accumulator(logdir: Path, cores: str) -> tuple[float, int]:
    """(seconds, scalars) of TensorBoard's legacy EventAccumulator.Reload()."""
    code = (
        "import sys, time, json\n"
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
        "t = time.perf_counter()\n"
        "ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0})\n"
        "ea.Reload()\n"
        "dt = time.perf_counter() - t\n"
        "n = sum(len(ea.Scalars(tag)) for tag in ea.Tags()['scalars'])\n"
        "print(json.dumps([dt, n]))\n"
    )
    run = next(p.parent for p in logdir.rglob("*tfevents*"))
    out = subprocess.run([*pinned(cores), sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    dt, n = json.loads(out.stdout.splitlines()[-1])
    return dt, n


def time_rust(logdir: Path, cores: str, checksum: bool) -> float:
    """Seconds of one load cycle of the Rust data server, as it logs them."""
    from tensorboard_data_server import server_binary

    args = [server_binary(), "--logdir", str(logdir), "--reload", "once", "-v", "--port", "0"]
    args.append("--checksum" if checksum else "--no-checksum")
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([*pinned(cores), *args], stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                err.seek(0)
                m = re.search(r"Finished load cycle \(([\d.]+)(m?s|µs)\)", err.read())
                if m:
                    value, unit = float(m.group(1)), m.group(2)
                    return value / {"s": 1, "ms": 1e3, "µs": 1e6}[unit]
                if p.poll() is not None:
                    raise SystemExit("the Rust data server exited without finishing a load cycle")
                time.sleep(0.01)
            raise SystemExit("the Rust data server did not finish a load cycle in 600 s")
        finally:
            p.kill()
            p.wait()


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scalars", type=int, default=1_000_000)
    ap.add_argument("--cache", type=Path, default=HERE / ".cache")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ea-repeats", type=int, default=1, help="EventAccumulator is slow: default one run")
    ap.add_argument("--cores", default="0", help="taskset core list for every reader (default: one core)")
    ap.add_argument("--copies", type=int, default=20, help="runs in the memory-boundedness check (0: skip)")
    args = ap.parse_args()

    logdir = make_run(args.cache, args.scalars)
    size = sum(f.stat().st_size for f in logdir.rglob("*tfevents*"))
    for f in logdir.rglob("*tfevents*"):  # into the page cache, for every reader alike
        f.read_bytes()

    hj, rs_ck, rs_nock = [], [], []
    rss = 0
    for _ in range(args.repeats):  # interleaved, so that machine noise hits all alike
        dt, n, r = time_hjepa(logdir, args.cores)
        hj.append(dt)
        rss = max(rss, r)
        rs_ck.append(time_rust(logdir, args.cores, checksum=True))
        rs_nock.append(time_rust(logdir, args.cores, checksum=False))
    ea = []
    for _ in range(args.ea_repeats):
        dt, n_ea = time_event_accumulator(logdir, args.cores)
        ea.append(dt)
    if n_ea != n:
        raise SystemExit(f"readers disagree: hjepa-watch read {n} scalars, EventAccumulator {n_ea}")

    med = statistics.median
    rows = [
        ("hjepa-watch replay (both CRCs)", med(hj)),
        ("Rust data server --checksum", med(rs_ck)),
        ("Rust data server (default)", med(rs_nock)),
        ("EventAccumulator", med(ea)),
    ]
    print(
        f"{n:,} scalars, {size / 2**20:.1f} MiB, cores {args.cores}, medians of {args.repeats} (EA: {args.ea_repeats})"
    )
    for name, dt in rows:
        print(f"  {name:34s} {dt:8.3f} s  {n / dt / 1e6:7.2f} M scalars/s")
    print(f"  hjepa-watch peak RSS {rss / 1024:.0f} MiB")
    print(f"ratio vs Rust data server --checksum: {med(rs_ck) / med(hj):.2f}x  (target >= 1.5x)")
    print(f"ratio vs Rust data server default:    {med(rs_nock) / med(hj):.2f}x")
    print(f"ratio vs EventAccumulator:            {med(ea) / med(hj):.1f}x  (target >= 50x)")
    if args.copies:
        big = make_copies(args.cache, logdir, args.copies)
        dt_big, n_big, rss_big = time_hjepa(big, args.cores)
        print(
            f"memory: {n_big:,} scalars ({args.copies} runs, {args.copies * size / 2**30:.2f} GiB) in {dt_big:.2f} s, "
            f"peak RSS {rss_big / 1024:.0f} MiB (one run: {rss / 1024:.0f} MiB)"
        )
    print(f"(self time of this script's children: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.1f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
