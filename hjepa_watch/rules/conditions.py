"""Conditions: pure numpy functions from a series window to breach and clear flags.

Each condition turns the points of one series (a history tail of the same segment,
then the new points) into a statistic per new point — the window's mean, its
least-squares slope, the newest value over the trailing median, the fall from the
running maximum — and compares it with the threshold (``breach``) and with the clear
level (``cleared``; without one, "not breaching"). A point where the statistic
cannot be computed (an incomplete window, NaN inside, a zero median) is not
``valid``: it neither breaches nor clears, and the alert state stays as it was.

Non-finite values are left out of every window statistic: they are the business of
``nonfinite``, and one NaN would otherwise blind a threshold rule for a whole window.
Everything is computed for all new points at once; the cost is proportional to the
new points times the window, never to the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hjepa_watch.rules.schema import Rule, Span

#: Rows of windows handled per numpy call for window statistics (bounds memory).
_BLOCK = 1 << 16


@dataclass
class View:
    """One series in one segment: history tail followed by new points (chronological).

    Attributes:
        step, wall, value: the points.
        new: how many of them, at the end, are new.
    """

    step: np.ndarray
    wall: np.ndarray
    value: np.ndarray
    new: int

    @property
    def first_new(self) -> int:
        """Index of the first new point."""
        return len(self.value) - self.new


@dataclass
class Running:
    """O(1) state a condition carries across batches within a segment."""

    best: float = np.nan  # running max (drop_from_max) or min (rise_from_min)


@dataclass
class Result:
    """Per new point: the statistic, whether it could be computed, breach and clear."""

    stat: np.ndarray
    valid: np.ndarray
    breach: np.ndarray
    cleared: np.ndarray
    running: Running = field(default_factory=Running)


def history_needed(rule: Rule) -> Span:
    """How much history the rule needs before a new point (points, or seconds)."""
    w = rule.window
    if rule.condition in ("drop_from_max", "rise_from_min", *("above", "below", "outside", "inside")):
        return w if w is not None else Span(points=1)
    if rule.condition == "spike":
        return Span(points=w.points + 1) if w.points is not None else w
    if rule.condition in ("trend_up", "trend_down"):
        return w
    return Span(points=1)


def _window_starts(view: View, span: Span, trailing: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each new point j: [lo, hi) of its window, and whether the window is complete.

    ``trailing`` windows end before j (spike's reference); others include j.
    """
    j = np.arange(view.first_new, len(view.value))
    hi = j if trailing else j + 1
    if span.points is not None:
        lo = hi - span.points
        full = lo >= 0
        return np.maximum(lo, 0), hi, full
    lo = np.searchsorted(view.wall, view.wall[j] - span.seconds, side="right")
    if trailing:
        lo = np.minimum(lo, hi)
    # Complete when the history reaches back a whole duration before the window.
    full = (view.wall[j] - view.wall[0] >= span.seconds) & (hi - lo >= (2 if trailing else 1))
    return lo, hi, full


def _masked_windows(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(n, width) matrix of window values, NaN outside each window."""
    width = int(np.max(hi - lo)) if len(lo) else 1
    width = max(width, 1)
    padded = np.concatenate([np.full(width, np.nan), x])
    # Row i holds x[hi-width : hi]; positions before lo are masked.
    rows = sliding_window_view(padded, width)[hi]
    start = (hi - lo)[:, None]
    keep = np.arange(width)[None, :] >= width - start
    return np.where(keep, rows, np.nan)


def _finite_or_nan(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, np.nan)


def window_reduce(view: View, span: Span | None, how: str, trailing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Reduce each new point's window (finite values only); return (values, complete)."""
    x = _finite_or_nan(view.value)
    if span is None or how == "last":
        out = x[view.first_new :]
        if span is None:
            return out, np.ones(view.new, bool)
    lo, hi, full = _window_starts(view, span, trailing)
    if how == "last":
        return out, full
    if how == "mean":
        f = np.isfinite(x)
        cs = np.concatenate([[0.0], np.cumsum(np.where(f, x, 0.0))])
        cn = np.concatenate([[0], np.cumsum(f)])
        n = cn[hi] - cn[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (cs[hi] - cs[lo]) / np.maximum(n, 1), np.nan), full
    out = np.empty(len(lo))
    for a in range(0, len(lo), _BLOCK):
        w = _masked_windows(x, lo[a : a + _BLOCK], hi[a : a + _BLOCK])
        if how == "min":
            out[a : a + _BLOCK] = np.fmin.reduce(w, axis=1)
        elif how == "max":
            out[a : a + _BLOCK] = np.fmax.reduce(w, axis=1)
        else:
            out[a : a + _BLOCK] = _nanmedian_rows(w)
    return out, full


def _nanmedian_rows(w: np.ndarray) -> np.ndarray:
    if not np.isnan(w).any():
        return np.median(w, axis=1)
    empty = np.isnan(w).all(axis=1)
    w = np.where(empty[:, None], 0.0, w)
    out = np.nanmedian(w, axis=1)
    out[empty] = np.nan
    return out


def _slopes(view: View, span: Span) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope of value on step per window; also mean, span of steps, completeness."""
    lo, hi, full = _window_starts(view, span, trailing=False)
    y = view.value
    f = np.isfinite(y)
    # Centred on the view's start: sums stay small, cancellation stays harmless.
    x = (view.step - view.step[0]).astype(np.float64)
    yc = np.where(f, y - np.nanmean(np.where(f, y, np.nan)) if f.any() else 0.0, 0.0)
    xf = np.where(f, x, 0.0)

    def window_sum(a: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(a)])
        return c[hi] - c[lo]

    n = window_sum(f.astype(np.float64))
    sx, sy = window_sum(xf), window_sum(yc)
    sxx, sxy = window_sum(xf * xf), window_sum(xf * yc)
    den = n * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where((n >= 2) & (den > 0), (n * sxy - sx * sy) / den, np.nan)
        mean = np.where(n > 0, window_sum(np.where(f, y, 0.0)) / n, np.nan)
    extent = (view.step[hi - 1] - view.step[lo]).astype(np.float64)
    return slope, mean, extent, full & (n >= 3)


def _spike(rule: Rule, view: View) -> tuple[np.ndarray, np.ndarray]:
    lo, hi, full = _window_starts(view, rule.window, trailing=True)
    x = _finite_or_nan(view.value)
    cur = x[view.first_new :]
    stat = np.full(view.new, np.nan)
    for a in range(0, len(lo), _BLOCK):
        b = min(a + _BLOCK, len(lo))
        w = _masked_windows(x, lo[a:b], hi[a:b])
        med = _nanmedian_rows(w)
        with np.errstate(invalid="ignore", divide="ignore"):
            if rule.mode == "factor":
                stat[a:b] = np.where(med > 0, cur[a:b] / med, np.nan)
            else:
                mad = _nanmedian_rows(np.abs(w - med[:, None])) * 1.4826
                dev = cur[a:b] - med
                z = dev / mad
                # A flat reference: any departure is infinitely unusual, none is not.
                z = np.where(mad > 0, z, np.where(dev == 0, 0.0, np.sign(dev) * np.inf))
                stat[a:b] = z
    return stat, full & np.isfinite(cur)


def evaluate(rule: Rule, view: View, running: Running | None = None) -> Result:
    """Breach and clear flags of ``rule`` for the new points of ``view``.

    Args:
        rule: a validated rule (not ``stale``: that one is driven by the clock).
        view: the series' history tail and new points, one segment, post-warmup.
        running: state carried from the previous batch of this segment.
    """
    running = Running(running.best) if running is not None else Running()
    cond, t, c = rule.condition, rule.threshold, rule.clear
    if cond == "nonfinite":
        v = view.value[view.first_new :]
        bad = ~np.isfinite(v)
        return Result(v, np.ones(view.new, bool), bad, ~bad, running)
    if cond in ("above", "below", "outside", "inside"):
        how = rule.reduce or ("last" if rule.window is None else "mean")
        stat, valid = window_reduce(view, rule.window, how)
        valid = valid & np.isfinite(stat)
        breach, cleared = _compare(cond, stat, t, c)
    elif cond in ("trend_up", "trend_down"):
        slope, mean, extent, valid = _slopes(view, rule.window)
        stat = slope
        if rule.normalize:
            with np.errstate(invalid="ignore", divide="ignore"):
                stat = np.where(np.abs(mean) > 0, slope * extent / np.abs(mean), np.nan)
        valid = valid & np.isfinite(stat)
        signed = stat if cond == "trend_up" else -stat
        breach, cleared = _compare("above", signed, t, c)
    elif cond == "spike":
        stat, valid = _spike(rule, view)
        valid &= ~np.isnan(stat)
        if rule.mode == "factor":
            with np.errstate(divide="ignore"):
                inv = np.where(stat > 0, 1.0 / stat, np.inf)
            up, up_c = _compare("above", stat, t, c, inclusive=True)
            down, down_c = _compare("above", inv, t, c, inclusive=True)
        else:
            up, up_c = _compare("above", stat, t, c)
            down, down_c = _compare("above", -stat, t, c)
        breach = {"up": up, "down": down, "both": up | down}[rule.direction]
        cleared = {"up": up_c, "down": down_c, "both": up_c & down_c}[rule.direction]
    elif cond in ("drop_from_max", "rise_from_min"):
        how = rule.reduce or ("last" if rule.window is None else "mean")
        r, complete = window_reduce(view, rule.window, how)
        r = np.where(complete, r, np.nan)
        seed = running.best
        if cond == "drop_from_max":
            best = np.fmax.accumulate(np.concatenate([[seed], r]))[1:]
            with np.errstate(invalid="ignore", divide="ignore"):
                stat = np.where(best > 0, (best - r) / best, np.nan)
        else:
            best = np.fmin.accumulate(np.concatenate([[seed], r]))[1:]
            with np.errstate(invalid="ignore", divide="ignore"):
                stat = np.where(best > 0, (r - best) / best, np.nan)
        if len(best):
            running.best = float(best[-1])
        valid = np.isfinite(stat)
        breach, cleared = _compare("above", stat, t, c, inclusive=True)
    else:
        raise ValueError(f"condition {cond} is not evaluated on points")
    return Result(stat, valid, breach & valid, cleared & valid, running)


def _compare(cond: str, stat: np.ndarray, t, c, inclusive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(breach, cleared) for a level comparison; NaN is neither."""
    with np.errstate(invalid="ignore"):
        if cond == "above":
            breach = stat >= t if inclusive else stat > t
            cleared = stat <= c if c is not None else ~breach & ~np.isnan(stat)
        elif cond == "below":
            breach = stat < t
            cleared = stat >= c if c is not None else ~breach & ~np.isnan(stat)
        elif cond == "outside":
            breach = (stat < t[0]) | (stat > t[1])
            cc = c if c is not None else t
            cleared = (stat >= cc[0]) & (stat <= cc[1])
        else:  # inside
            breach = (stat >= t[0]) & (stat <= t[1])
            cleared = (stat < c[0]) | (stat > c[1]) if c is not None else ~breach & ~np.isnan(stat)
    return breach, cleared
