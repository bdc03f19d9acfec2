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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hjepa_watch.rules.schema import Rule, Span

#: Rows of windows handled per numpy call for window statistics (bounds memory).
_BLOCK = 1 << 16
#: z-score spike references (median and MAD) over longer windows than this are
#: refreshed every ceil(window / EXACT_SPIKE_WINDOW) points, not at every point.
EXACT_SPIKE_WINDOW = 16
#: z-score scale floor, relative to the reference median.
MAD_FLOOR = 1e-3


def _stride(points: int) -> int:
    return -(-points // EXACT_SPIKE_WINDOW) if points > EXACT_SPIKE_WINDOW else 1


@dataclass
class View:
    """One series in one segment: history tail followed by new points (chronological).

    Attributes:
        step, wall, value: the points.
        new: how many of them, at the end, are new.
        offset: how many points of the segment came before the first one here.
    """

    step: np.ndarray
    wall: np.ndarray
    value: np.ndarray
    new: int
    offset: int = 0  # position of the first point within its segment (a stable grid)

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
    #: Where ``stat`` holds only a bound that decided breach and clear, this gives the
    #: exact statistic for the new points at the given indices (for transitions).
    exact: Callable[[np.ndarray], np.ndarray] | None = None


def history_needed(rule: Rule) -> Span:
    """How much history the rule needs before a new point (points, or seconds)."""
    w = rule.window
    if rule.condition in ("drop_from_max", "rise_from_min", *("above", "below", "outside", "inside")):
        return w if w is not None else Span(points=1)
    if rule.condition == "spike":
        return Span(points=w.points + _stride(w.points) + 1) if w.points is not None else w
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
            out[a : a + _BLOCK] = nanmedian_rows(w)
    return out, full


def nanmedian_rows(w: np.ndarray) -> np.ndarray:
    """Median of each row, NaN left out; a row of NaN gives NaN.

    Rows without NaN (nearly all: only incomplete windows and NaN values have them)
    take np.median; np.nanmedian is many times slower and is kept for the others.
    """
    holes = np.isnan(w).any(axis=1)
    if not holes.any():
        return np.median(w, axis=1)
    out = np.empty(len(w))
    whole = ~holes
    if whole.any():
        out[whole] = np.median(w[whole], axis=1)
    part = w[holes]
    empty = np.isnan(part).all(axis=1)
    part = np.where(empty[:, None], 0.0, part)
    med = np.nanmedian(part, axis=1)
    med[empty] = np.nan
    out[holes] = med
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


def _window_extrema(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max (NaN left out) of every window x[s : s + width], in O(len(x)).

    van Herk / Gil-Werman: prefix and suffix extrema within blocks of ``width``; a
    window spans the suffix of one block and the prefix of the next.
    """
    n = len(x)
    pad = (-n) % width
    out = []
    for fill, acc in ((np.inf, np.minimum), (-np.inf, np.maximum)):
        a = np.concatenate([np.where(np.isnan(x), fill, x), np.full(pad, fill)]).reshape(-1, width)
        pre = acc.accumulate(a, axis=1).ravel()
        suf = acc.accumulate(a[:, ::-1], axis=1)[:, ::-1].ravel()
        s = np.arange(n - width + 1)
        out.append(acc(suf[s], pre[s + width - 1]))
    return out[0], out[1]


def _bounded_median(view: View, span: Span, levels: list[float]) -> tuple[np.ndarray, np.ndarray, Callable]:
    """Window medians, computed only where the window's min and max leave a level between them.

    Elsewhere the min stands in: it compares with every level as the median would.
    Returns (stat, complete, exact) with ``exact(rows)`` the true medians.
    """
    x = _finite_or_nan(view.value)
    lo, hi, full = _window_starts(view, span, trailing=False)

    def exact(rows: np.ndarray) -> np.ndarray:
        return _reference(x, lo[rows], hi[rows], mad=False)[0]

    if len(x) < span.points:
        return exact(np.arange(view.new)), full, exact
    mins, maxs = _window_extrema(x, span.points)
    s = np.minimum(np.maximum(lo, 0), len(mins) - 1)
    wmin, wmax = mins[s], maxs[s]
    undecided = ~np.isfinite(wmin) | ~np.isfinite(wmax)
    for level in levels:
        undecided |= (wmin <= level) & (level <= wmax)
    stat = wmin.copy()
    rows = np.flatnonzero(undecided | ~full)
    if len(rows):
        stat[rows] = exact(rows)
    return stat, full, exact


def _reference(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, mad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Median (and scaled MAD) of the windows [lo, hi) of x."""
    med = np.full(len(lo), np.nan)
    dev = np.full(len(lo), np.nan)
    for a in range(0, len(lo), _BLOCK):
        b = min(a + _BLOCK, len(lo))
        w = _masked_windows(x, lo[a:b], hi[a:b])
        med[a:b] = nanmedian_rows(w)
        if mad:
            dev[a:b] = nanmedian_rows(np.abs(w - med[a:b, None])) * 1.4826
    return med, dev


def _spike(rule: Rule, view: View) -> tuple[np.ndarray, np.ndarray, Callable | None]:
    """Newest value against the trailing window's median (factor) or median and MAD (z).

    Medians are the costly part of evaluation, so they are computed only where they
    matter. Factor mode is exact: the window's min and max bound its median, hence
    the factor; where no threshold or clear level lies between the bounds, they
    decide, and only the other points (near a spike) get their median — also every
    point of a transition, for its reported statistic. The z-score needs the median
    and the MAD everywhere: for windows over :data:`EXACT_SPIKE_WINDOW` points they are
    those of the last point on a grid of ``ceil(window / EXACT_SPIKE_WINDOW)`` points
    (aligned to the segment, so batches do not change them), lagging by less than 7%
    of the window; shorter windows, and durations, are exact.
    """
    x = _finite_or_nan(view.value)
    cur = x[view.first_new :]
    span = rule.window
    if rule.mode == "factor":
        lo, hi, full = _window_starts(view, span, trailing=True)
        valid = full & np.isfinite(cur)

        def exact(rows: np.ndarray) -> np.ndarray:
            med, _ = _reference(x, lo[rows], hi[rows], mad=False)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(med > 0, cur[rows] / med, np.nan)

        if span.points is None or len(x) < span.points:
            return exact(np.arange(view.new)), valid, None
        mins, maxs = _window_extrema(x, span.points)
        s = np.maximum(lo, 0)  # full windows start at lo = hi - points
        wmin, wmax = mins[np.minimum(s, len(mins) - 1)], maxs[np.minimum(s, len(maxs) - 1)]
        with np.errstate(invalid="ignore", divide="ignore"):
            b1, b2 = cur / wmin, cur / wmax
        s_lo, s_hi = np.fmin(b1, b2), np.fmax(b1, b2)
        t, c = rule.threshold, rule.clear
        levels = [t, 1 / t] + ([c, 1 / c] if c else [])
        undecided = ~(wmin > 0) | ~np.isfinite(s_lo) | ~np.isfinite(s_hi)
        for level in levels:
            undecided |= (s_lo <= level) & (level <= s_hi)
        undecided &= valid
        stat = s_lo.copy()
        rows = np.flatnonzero(undecided)
        if len(rows):
            stat[rows] = exact(rows)
        return stat, valid, exact
    k = _stride(span.points) if span.points is not None else 1
    if k > 1:
        j = np.arange(view.first_new, len(x))
        grid = j - (j + view.offset) % k  # the reference point of each new point (non-decreasing)
        change = np.ones(len(grid), bool)
        change[1:] = grid[1:] != grid[:-1]
        hi, inverse = grid[change], np.cumsum(change) - 1
        lo = hi - span.points
        full = (lo >= 0)[inverse]
        # A grid point before the kept history has no full window: its reference is unused.
        med, mad = _reference(x, np.maximum(lo, 0), np.maximum(hi, 0), mad=True)
        med, mad = med[inverse], mad[inverse]
    else:
        lo, hi, full = _window_starts(view, span, trailing=True)
        med, mad = _reference(x, lo, hi, mad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = cur - med
        # The scale has a floor of 0.1% of the median, so float noise on a flat series is
        # not a spike; a flat zero reference makes any departure infinitely unusual.
        scale = np.fmax(mad, MAD_FLOOR * np.abs(med))
        stat = np.where(scale > 0, dev / scale, np.where(dev == 0, 0.0, np.sign(dev) * np.inf))
    return stat, full & np.isfinite(cur), None


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
    exact = None
    if cond in ("above", "below", "outside", "inside"):
        how = rule.reduce or ("last" if rule.window is None else "mean")
        if how == "median" and rule.window.points is not None:
            levels = [*np.ravel(t), *(np.ravel(c) if c is not None else ())]
            stat, valid, exact = _bounded_median(view, rule.window, levels)
        else:
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
        stat, valid, exact = _spike(rule, view)
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
    return Result(stat, valid, breach & valid, cleared & valid, running, exact)


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
