"""A small PNG of the offending series: recent window, threshold line, firing span shaded.

matplotlib with the Agg backend (no display, no GUI toolkit): the one plotting
library every Python install can get, and ~30 ms a chart here. Rendering happens
in the sender thread, off the evaluation path.
"""

from __future__ import annotations

import io

import numpy as np


def render_png(
    steps: list[int],
    values: list[float],
    *,
    title: str,
    threshold: float | list[float] | None = None,
    firing_from: int | None = None,
    firing_to: int | None = None,
) -> bytes:
    """PNG bytes of a 6x2.4 inch chart (~60 KB)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.4), dpi=100)
    ax = fig.add_subplot()
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    finite = np.isfinite(y)
    ax.plot(x[finite], y[finite], lw=1.2, color="#1f77b4")
    bad = ~finite
    if bad.any():  # NaN / Inf: marked at the top, where a reader looks
        top = np.nanmax(np.where(finite, y, np.nan)) if finite.any() else 1.0
        ax.scatter(x[bad], np.full(bad.sum(), top), marker="x", color="#d62728", zorder=3, label="non-finite")
    for t in [threshold] if isinstance(threshold, int | float) else (threshold or []):
        ax.axhline(float(t), color="#d62728", ls="--", lw=1)
    if firing_from is not None:
        ax.axvspan(
            firing_from,
            firing_to if firing_to is not None else (x.max() if len(x) else firing_from),
            color="#d62728",
            alpha=0.12,
            lw=0,
        )
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.2)  # fixed: tight_layout costs ~10 ms
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
