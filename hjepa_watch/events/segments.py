"""Segments: a step that goes backwards starts a new life of the run.

A restarted job writes a new event file whose steps start again from 1 (or from a
checkpoint). Windows that span the old and the new life would read the restart as
a loss spike, so every point carries the segment of its run it belongs to.

Detection is per tag (two writers in one run directory log different tags with
independent steps), coupled per run: the first tag to go backwards opens a new
segment; other tags join it when they go backwards in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

_NO_STEP = np.iinfo(np.int64).min


@dataclass
class SegmentTracker:
    """Assigns segments to one run's points, batch by batch, in file order.

    Attributes:
        segment: the run's newest segment.
        last_step: last step seen per tag id.
        tag_segment: current segment per tag id (-1: tag not seen yet).
    """

    segment: int = 0
    last_step: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    tag_segment: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def _grow(self, n_tags: int) -> None:
        if n_tags > len(self.last_step):
            extra = n_tags - len(self.last_step)
            self.last_step = np.concatenate([self.last_step, np.full(extra, _NO_STEP, np.int64)])
            self.tag_segment = np.concatenate([self.tag_segment, np.full(extra, -1, np.int64)])

    def assign(self, tag_id: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Return the segment of each point and advance the state past them.

        Args:
            tag_id: tag ids (indices into the run's tag table), in file order.
            step: their steps.
        """
        n = len(step)
        if not n:
            return np.empty(0, np.int64)
        self._grow(int(tag_id.max()) + 1)
        # Tag ids are small: as uint16 the stable sort is a radix sort.
        keys = tag_id.astype(np.uint16) if len(self.last_step) <= 1 << 16 else tag_id
        order = np.argsort(keys, kind="stable")
        s_tag, s_step = tag_id[order], step[order]
        first = np.ones(n, bool)
        first[1:] = s_tag[1:] != s_tag[:-1]
        prev = np.empty(n, np.int64)
        prev[1:] = s_step[:-1]
        prev[first] = self.last_step[s_tag[first]]
        back = s_step < prev
        new = first & (self.tag_segment[s_tag] < 0)
        last = np.ones(n, bool)
        last[:-1] = first[1:]
        self.last_step[s_tag[last]] = s_step[last]
        if not back.any() and not new.any():
            return self.tag_segment[tag_id]
        # Rare: restarts and new tags, replayed in file order.
        events = sorted(zip(order[back | new].tolist(), back[back | new].tolist(), strict=True))
        before = self.tag_segment.copy()
        changes: dict[int, list[tuple[int, int]]] = {}
        for row, is_back in events:
            t = int(tag_id[row])
            if not is_back:  # a tag's first point ever
                self.tag_segment[t] = self.segment
            else:
                if self.tag_segment[t] == self.segment:
                    self.segment += 1
                self.tag_segment[t] = self.segment
            changes.setdefault(t, []).append((row, int(self.tag_segment[t])))
        seg = before[tag_id]
        for t, rows_segs in changes.items():
            rows = np.flatnonzero(tag_id == t)
            at = np.array([r for r, _ in rows_segs])
            segs = np.array([s for _, s in rows_segs])
            k = np.searchsorted(at, rows, side="right") - 1
            seg[rows] = np.where(k >= 0, segs[np.maximum(k, 0)], before[t])
        return seg

    def to_state(self, tags: list[str]) -> dict:
        """A JSON-able snapshot, keyed by tag name."""
        return {
            "segment": self.segment,
            "tags": {
                tags[i]: [int(self.last_step[i]), int(self.tag_segment[i])]
                for i in range(len(self.last_step))
                if self.tag_segment[i] >= 0
            },
        }

    @classmethod
    def from_state(cls, state: dict, tag_id: Callable[[str], int]) -> SegmentTracker:
        """Rebuild from :meth:`to_state`; ``tag_id`` maps a tag name to its id."""
        tracker = cls(segment=int(state["segment"]))
        items = [(tag_id(tag), v) for tag, v in state["tags"].items()]
        tracker._grow(max((i for i, _ in items), default=-1) + 1)
        for i, (step, seg) in items:
            tracker.last_step[i] = step
            tracker.tag_segment[i] = seg
        return tracker
