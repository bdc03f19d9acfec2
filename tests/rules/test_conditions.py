"""Each condition: firing and not, at its boundaries, with NaN inside windows and with gaps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import rule, transitions


def test_above_fires_strictly_above_and_resolves() -> None:
    r = rule("{condition: above, threshold: 5}")
    assert transitions(r, "1 5 6 7 5 1") == [("firing", 2), ("resolved", 4)]


def test_below_with_window_mean() -> None:
    r = rule("{condition: below, threshold: 0.5, window: 3}")
    # means from step 2: 1, .7, .4, .1, .4, .7
    assert transitions(r, "1 1 1 0.1 0.1 0.1 1 1") == [("firing", 4), ("resolved", 7)]


@pytest.mark.parametrize("how,want", [("min", 3), ("max", 5), ("median", 4), ("last", 3)])
def test_reductions(how, want) -> None:
    # windows of 3 over 10 10 10 0 0 0: min <1 from step 3, median from 4, max from 5.
    r = rule(f"{{condition: below, threshold: 1, window: 3, reduce: {how}}}")
    assert transitions(r, "10 10 10 0 0 0")[0] == ("firing", want)


def test_outside_and_inside_ranges() -> None:
    r = rule("{condition: outside, threshold: [0.4, 0.7]}")
    assert transitions(r, "0.5 0.7 0.71 0.4 0.39") == [("firing", 2), ("resolved", 3), ("firing", 4)]
    r = rule("{condition: inside, threshold: [0.4, 0.7]}")
    assert transitions(r, "0.1 0.4 0.9") == [("firing", 1), ("resolved", 2)]


def test_nonfinite() -> None:
    r = rule("{condition: nonfinite}")
    assert transitions(r, "1 nan 1 inf -inf 1") == [
        ("firing", 1),
        ("resolved", 2),
        ("firing", 3),
        ("resolved", 5),
    ]


def test_nan_inside_window_is_left_out_not_propagated() -> None:
    r = rule("{condition: below, threshold: 0.5, window: 3}")
    # The NaN does not blind the window: mean of the finite values still falls.
    assert transitions(r, "1 1 0.1 nan 0.1 0.1") == [("firing", 4)]


def test_nan_value_neither_breaches_nor_clears() -> None:
    r = rule("{condition: above, threshold: 5}")
    assert transitions(r, "9 nan 9 nan 1") == [("firing", 0), ("resolved", 4)]


def test_trend_up_needs_a_full_window_and_a_slope() -> None:
    r = rule("{condition: trend_up, threshold: 0.5, window: 4}")
    # slopes over 4 points: 0.3 at step 4, 0.8 at 5, 1 at 6-7, 0.7 at 8, 0.3 at 9.
    assert transitions(r, "0 0 0 0 1 2 3 4 4 4 4 4") == [("firing", 5), ("resolved", 9)]
    assert transitions(r, "0 1 2") == []  # never a full window


def test_trend_down_normalised_is_a_fraction_over_the_window() -> None:
    # At step 7 the window 1 1 .875 .75 .625 falls 0.1/step over 4 steps, mean 0.85: -47%.
    r = rule("{condition: trend_down, threshold: 0.4, window: 5, normalize: true}")
    assert transitions(r, "1x4 0.875 0.75 0.625 0.5") == [("firing", 7)]
    r = rule("{condition: trend_down, threshold: 0.9, window: 5, normalize: true}")
    assert transitions(r, "1x4 0.875 0.75 0.625 0.5") == []


def test_trend_slope_uses_steps_not_positions() -> None:
    r = rule("{condition: trend_up, threshold: 0.01, window: 3}")
    # +1 per point, but points are 1000 steps apart: slope 0.001 per step.
    assert transitions(r, "0 1 2 3", steps=[0, 1000, 2000, 3000]) == []
    assert transitions(r, "0 1 2 3") == [("firing", 2)]


def test_spike_factor_against_trailing_median() -> None:
    r = rule("{condition: spike, threshold: 10, window: 5}")
    assert transitions(r, "1x5 10 1") == [("firing", 6), ("resolved", 7)]
    assert transitions(r, "1x5 9.99 1") == []
    assert transitions(r, "1x3 50") == []  # no full reference window yet


def test_spike_robust_z_ignores_one_outlier_in_the_reference() -> None:
    r = rule("{condition: spike, threshold: 7, window: 6, mode: zscore}")
    # Reference 1,2,1,2,1,2 (MAD 0.5): 10 is z = (10-1.5)/(0.74) = 11.5; 3 is 2.0.
    assert transitions(r, "1 2 1 2 1 2 3 1 10") == [("firing", 8)]


def test_spike_down_and_both() -> None:
    r = rule("{condition: spike, threshold: 10, window: 3, direction: down}")
    assert transitions(r, "10 10 10 0.5 10") == [("firing", 3), ("resolved", 4)]
    r = rule("{condition: spike, threshold: 10, window: 3, direction: both}")
    assert transitions(r, "1 1 1 100 1 1 1 0.01") == [("firing", 3), ("resolved", 4), ("firing", 7)]


def test_drop_from_max_is_relative_to_the_best_so_far() -> None:
    r = rule("{condition: drop_from_max, threshold: 0.5}")
    assert transitions(r, "10 20 30 16 15 14 30") == [("firing", 4), ("resolved", 6)]


def test_rise_from_min() -> None:
    r = rule("{condition: rise_from_min, threshold: 0.5}")
    assert transitions(r, "4 2 1 1.4 1.5 1.6") == [("firing", 4)]


def test_duration_window() -> None:
    # Points every 10 s; a 30 s window holds the last 3 points.
    r = rule("{condition: below, threshold: 0.5, window: 30s}")
    walls = [1e9 + 10 * i for i in range(6)]
    assert transitions(r, "1 1 1 0 0 0", walls=walls) == [("firing", 4)]


def test_gaps_do_not_matter_to_point_windows() -> None:
    r = rule("{condition: above, threshold: 3, window: 2}")
    # Windows are the last 2 points whatever the steps between them: 2.5 at step 3, 5 at 5.
    assert transitions(r, "0 _ _ 5 _ 5") == [("firing", 5)]


def _naive_medians(values: list[float], w: int, trailing: bool) -> list[float]:
    import numpy as np

    out = []
    for j in range(len(values)):
        lo, hi = (j - w, j) if trailing else (j - w + 1, j + 1)
        out.append(float(np.median(values[lo:hi])) if lo >= 0 else float("nan"))
    return out


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(0.01, 100), min_size=5, max_size=120),
    w=st.integers(2, 40),
    t=st.floats(1.1, 20),
    chunks=st.integers(1, 4),
)
def test_factor_spike_and_median_bounds_are_exact(values, w, t, chunks) -> None:
    """The min/max shortcuts decide exactly as the medians at every point would."""
    import numpy as np

    from hjepa_watch.rules.conditions import View, evaluate

    x = np.array(values)
    spike = rule(f"{{condition: spike, threshold: {t}, window: {w}}}")
    res = evaluate(spike, View(np.arange(len(x)), np.arange(len(x)) + 1e9, x, len(x)))
    med = np.array(_naive_medians(values, w, trailing=True))
    want = x / med >= t
    assert (res.breach == np.where(np.isnan(med), False, want)).all()
    fired = np.flatnonzero(res.breach)
    if len(fired):
        assert np.allclose(res.exact(fired), (x / med)[fired])
    below = rule(f"{{condition: below, threshold: {t}, window: {w}, reduce: median}}")
    got = transitions(below, values, chunks=chunks)
    med_in = np.array(_naive_medians(values, w, trailing=False))
    firing, want_t = False, []
    for j, m in enumerate(med_in):
        if np.isnan(m):
            continue
        if m < t and not firing:
            want_t.append(("firing", j))
            firing = True
        elif m >= t and firing:
            want_t.append(("resolved", j))
            firing = False
    assert got == want_t
