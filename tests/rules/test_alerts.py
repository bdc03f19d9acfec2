"""The state machine: pending, firing, hysteresis, keep_firing_for, resolve; pure and incremental."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hjepa_watch.alerts import Alert, AlertState, advance
from hjepa_watch.rules.schema import Span

from .helpers import rule, transitions


def test_pending_then_firing_after_for_points() -> None:
    r = rule("{condition: above, threshold: 1, for: 3}")
    assert transitions(r, "0 2 2 2 2 0") == [("pending", 1), ("firing", 3), ("resolved", 5)]


def test_pending_cancelled_quietly_when_breach_breaks() -> None:
    r = rule("{condition: above, threshold: 1, for: 3}")
    assert transitions(r, "2 2 0 2 2 2") == [("pending", 0), ("pending", 3), ("firing", 5)]


def test_for_as_duration_uses_writer_time() -> None:
    r = rule("{condition: above, threshold: 1, for: 30s}")
    walls = [1e9 + 10 * i for i in range(6)]
    assert transitions(r, "0 2 2 2 2 2", walls=walls) == [("pending", 1), ("firing", 4)]


def test_hysteresis_prevents_flapping_around_the_threshold() -> None:
    noisy = "1 0.09 0.11 0.09 0.11 0.09 0.11 0.25"
    plain = rule("{condition: below, threshold: 0.1}")
    assert len(transitions(plain, noisy)) == 6  # flaps
    sticky = rule("{condition: below, threshold: 0.1, clear: 0.2}")
    assert transitions(sticky, noisy) == [("firing", 1), ("resolved", 7)]


def test_keep_firing_for_points_and_rearm() -> None:
    r = rule("{condition: above, threshold: 1, keep_firing_for: 3}")
    assert transitions(r, "2 0 0 2 0 0 0 0") == [("firing", 0), ("resolved", 6)]


def test_keep_firing_for_duration() -> None:
    r = rule("{condition: above, threshold: 1, keep_firing_for: 25s}")
    walls = [1e9 + 10 * i for i in range(6)]
    assert transitions(r, "2 0 0 0 0 0", walls=walls) == [("firing", 0), ("resolved", 3)]


def test_transitions_stamp_times() -> None:
    a = Alert()
    wall = np.array([10.0, 20.0, 30.0, 40.0])
    out = advance(a, np.array([1, 1, 0, 0], bool), np.ones(4, bool), np.array([0, 0, 1, 1], bool), wall, Span(points=2))
    assert out == [(0, AlertState.PENDING), (1, AlertState.FIRING), (2, AlertState.RESOLVED)]
    assert (a.active_at, a.fired_at, a.resolved_at, a.state) == (None, 20.0, 30.0, AlertState.INACTIVE)


@settings(max_examples=150, deadline=None)
@given(
    bits=st.lists(st.sampled_from(["0", "2", "nan", "1"]), min_size=1, max_size=60),
    chunks=st.integers(1, 7),
    for_=st.integers(0, 4),
    keep=st.one_of(st.none(), st.integers(1, 3)),
)
def test_batches_give_the_same_transitions_as_one_pass(bits, chunks, for_, keep) -> None:
    """Incremental evaluation: any split of the points into batches changes nothing."""
    extra = f", keep_firing_for: {keep}" if keep else ""
    r = rule(f"{{condition: above, threshold: 1.5, window: 2, clear: 1.0, for: {for_}{extra}}}")
    series = " ".join(bits)
    assert transitions(r, series, chunks=chunks) == transitions(r, series, chunks=1)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(0.1, 10), min_size=8, max_size=80), chunks=st.integers(1, 6))
def test_windowed_conditions_are_incremental(values, chunks) -> None:
    for text in (
        "{condition: spike, threshold: 3, window: 5}",
        "{condition: spike, threshold: 2, window: 4, mode: zscore, direction: both}",
        "{condition: trend_up, threshold: 0.05, window: 6}",
        "{condition: drop_from_max, threshold: 0.5, window: 3}",
        "{condition: below, threshold: 2, window: 4, reduce: median}",
    ):
        r = rule(text)
        assert transitions(r, values, chunks=chunks) == transitions(r, values, chunks=1), text
