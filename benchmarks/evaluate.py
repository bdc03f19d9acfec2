"""Rule evaluation cost: replay with 50 rules vs plain ingest of the same 1M-scalar run.

Usage:
    python benchmarks/evaluate.py [--scalars N] [--cache DIR] [--repeats K] [--cores C]

Uses the run of ``benchmarks/ingest.py`` (made and cached there) and
``benchmarks/rules-50.yaml``: fifty rules of every condition over the H-JEPA tags,
windows from 1 to 500 points, most of them matching several tags through captures
and globs. Each repeat runs, in one process pinned to one core, a plain replay
(ingest only) and a replay with the rules, alternately; prints the medians and the
ratio (target: at most 2x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ingest import make_run, pinned  # noqa: E402

CHILD = """
import json, sys, time
from hjepa_watch.replay import replay
from hjepa_watch.rules.loader import load_rules
logdir, rules_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
rules = load_rules([rules_path])
plain, ruled = [], []
for _ in range(repeats):
    t = time.perf_counter(); _, s = replay([logdir]); plain.append(time.perf_counter() - t)
    t = time.perf_counter(); tr, s2 = replay([logdir], rules); ruled.append(time.perf_counter() - t)
print(json.dumps({"plain": plain, "ruled": ruled, "scalars": s.scalars, "rules": len(rules),
                  "transitions": len(tr), "fired": s2.alerts_fired}))
"""


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scalars", type=int, default=1_000_000)
    ap.add_argument("--cache", type=Path, default=HERE / ".cache")
    ap.add_argument("--rules", type=Path, default=HERE / "rules-50.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cores", default="0")
    args = ap.parse_args()
    logdir = make_run(args.cache, args.scalars)
    out = subprocess.run(
        [*pinned(args.cores), sys.executable, "-c", CHILD, str(logdir), str(args.rules), str(args.repeats)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    r = json.loads(out.stdout.splitlines()[-1])
    plain, ruled = statistics.median(r["plain"]), statistics.median(r["ruled"])
    print(f"{r['scalars']:,} scalars, {r['rules']} rules, cores {args.cores}, medians of {args.repeats}")
    print(f"  replay, ingest only          {plain:7.3f} s  {r['scalars'] / plain / 1e6:6.2f} M scalars/s")
    print(
        f"  replay with {r['rules']} rules        {ruled:7.3f} s  ({r['transitions']} transitions, {r['fired']} fired)"
    )
    print(f"ratio with rules / ingest only: {ruled / plain:.2f}x  (target <= 2x)")


if __name__ == "__main__":
    main()
