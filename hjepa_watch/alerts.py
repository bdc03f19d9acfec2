"""The alert state machine (DESIGN.md §7): inactive -> pending -> firing -> resolved.

Pure: :func:`advance` takes an alert's state, one series' breach and clear flags for
new points, and their steps and times; it returns the transitions and changes the
state in place. It never reads a clock and never does I/O. It jumps from one change
to the next with numpy instead of looking at every point, so a quiet series costs a
few array operations per batch whatever its length.

Semantics:

* ``for: N`` points — N consecutive breaching points; the first makes the alert
  *pending*, the N-th makes it *firing* (N <= 1 fires at once, with no pending).
  ``for: 5m`` — firing at the first breaching point 5 minutes (writer's clock) after
  the first. A valid non-breaching point in between cancels a pending alert quietly.
  Points where the condition could not be evaluated neither extend nor break a run.
* A firing alert resolves at the first point that is *cleared* (past ``clear`` if
  given, else simply not breaching) and, with ``keep_firing_for``, only once that
  many points or seconds have passed since the last breaching point.
* Resolved alerts go back to inactive; a new breach starts over.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from hjepa_watch.rules.schema import Span


class AlertState(str, enum.Enum):
    """States, with explicit names (they appear in JSON and in the database)."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertKey:
    """Identity of an alert: rule + run + labels (values change, identity does not)."""

    rule: str
    run: str
    labels: tuple[tuple[str, str], ...]

    @property
    def label_dict(self) -> dict[str, str]:
        """The labels as a dict."""
        return dict(self.labels)


@dataclass
class Alert:
    """The state of one alert instance; every transition stamps a time.

    Attributes:
        state: inactive, pending or firing (resolved is a transition, after which
            the alert is inactive again).
        active_at: writer time the current breach began (pending since).
        fired_at: writer time it started firing.
        resolved_at: writer time it last resolved.
        breaches: consecutive breaching points so far (while pending).
        last_breach_at: writer time of the last breaching point.
        since_breach: evaluated points since the last breaching point (while firing).
        last_sent_at: when a notification about it last went out (set by notifiers).
    """

    state: AlertState = AlertState.INACTIVE
    active_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    breaches: int = 0
    last_breach_at: float | None = None
    since_breach: int = 0
    last_sent_at: float | None = None

    def cancel_pending(self) -> None:
        """A new segment: a breach run of the old life does not carry over."""
        if self.state is AlertState.PENDING:
            self.state = AlertState.INACTIVE
            self.active_at = None
            self.breaches = 0


_INACTIVE, _PENDING, _FIRING, _RESOLVED = (
    AlertState.INACTIVE,
    AlertState.PENDING,
    AlertState.FIRING,
    AlertState.RESOLVED,
)


class _Index:
    """Positions of the True entries of a mask: "next True at or after i" in O(log n)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.at = np.flatnonzero(mask)
        self.n = len(mask)

    def next(self, start: int) -> int:
        k = int(self.at.searchsorted(start))
        return int(self.at[k]) if k < len(self.at) else self.n

    def between(self, lo: int, hi: int) -> np.ndarray:
        return self.at[self.at.searchsorted(lo) : self.at.searchsorted(hi)]


def advance(
    alert: Alert,
    breach: np.ndarray,
    valid: np.ndarray,
    cleared: np.ndarray,
    wall: np.ndarray,
    for_: Span,
    keep_firing_for: Span | None = None,
) -> list[tuple[int, AlertState]]:
    """Feed one batch of evaluated points to an alert.

    Args:
        alert: the state, changed in place.
        breach: per point, the condition holds (only where ``valid``).
        valid: per point, the condition could be evaluated.
        cleared: per point, the condition is clear enough to resolve.
        wall: per point, the writer's time (for durations and time stamps).
        for_: how long a breach must last before firing.
        keep_firing_for: how long to keep firing after the last breach.

    Returns:
        (point index, new state) for each transition, in order.
    """
    n = len(breach)
    out: list[tuple[int, AlertState]] = []
    if alert.state is _INACTIVE and not breach.any():
        return out  # the common case: nothing to do
    breaches = _Index(breach)
    breaking = _Index(valid & ~breach)  # a valid point that does not breach ends a breach run
    clears: _Index | None = None
    evaluated = np.concatenate([[0], np.cumsum(valid)])  # evaluated[b] - evaluated[a]: valid in [a, b)
    i = 0
    while i < n:
        if alert.state is _INACTIVE:
            k = breaches.next(i)
            if k >= n:
                break
            alert.state, alert.active_at, alert.breaches = _PENDING, float(wall[k]), 0
            if not _fires_at_once(for_):
                out.append((k, _PENDING))
            i = k
        if alert.state is _PENDING:
            end = breaking.next(i)
            hits = breaches.between(i, end)
            fire = _fire_index(alert, hits, wall, for_)
            if fire is not None:
                alert.state, alert.fired_at = _FIRING, float(wall[fire])
                alert.last_breach_at, alert.since_breach = float(wall[fire]), 0
                out.append((fire, _FIRING))
                i = fire + 1
                continue
            alert.breaches += len(hits)
            if end >= n:
                break
            alert.cancel_pending()  # quietly: it never fired
            i = end + 1
            continue
        # FIRING
        if clears is None:
            clears = _Index(cleared & valid)
        r = _resolve_index(alert, breaches, clears, evaluated, wall, i, keep_firing_for)
        if r is None:
            break
        alert.state, alert.resolved_at = _INACTIVE, float(wall[r])
        alert.active_at, alert.breaches = None, 0
        out.append((r, _RESOLVED))
        i = r + 1
    return out


def _fires_at_once(for_: Span) -> bool:
    return (for_.points is not None and for_.points <= 1) or (for_.seconds is not None and for_.seconds <= 0)


def _fire_index(alert: Alert, hits: np.ndarray, wall: np.ndarray, for_: Span) -> int | None:
    if not len(hits):
        return None
    if for_.points is not None:
        need = max(for_.points, 1) - alert.breaches  # this many more breaching points
        return int(hits[need - 1]) if len(hits) >= need else None
    ok = np.flatnonzero(wall[hits] - alert.active_at >= for_.seconds)
    return int(hits[ok[0]]) if len(ok) else None


def _resolve_index(
    alert: Alert,
    breaches: _Index,
    clears: _Index,
    evaluated: np.ndarray,
    wall: np.ndarray,
    start: int,
    keep: Span | None,
) -> int | None:
    """The first index >= start where a firing alert resolves, updating breach tracking."""
    n = clears.n
    i = start
    while i < n:
        r = clears.next(i)
        # Breaches before r keep the alert alive and restart keep_firing_for.
        seg = breaches.between(i, r)
        if len(seg):
            last = int(seg[-1])
            alert.last_breach_at = float(wall[last])
            alert.since_breach = int(evaluated[r] - evaluated[last + 1])
        else:
            alert.since_breach += int(evaluated[r] - evaluated[i])
        if r >= n:
            return None
        alert.since_breach += 1  # the clear point itself is an evaluated point
        if keep is None:
            return r
        if keep.points is not None and alert.since_breach >= keep.points:
            return r
        if keep.seconds is not None and wall[r] - (alert.last_breach_at or wall[r]) >= keep.seconds:
            return r
        i = r + 1
    return None
