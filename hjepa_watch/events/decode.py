"""Event records -> scalar columns, for every scalar encoding writers use.

Two paths give the same answer:

* the vectorised path parses the record layout torch's ``add_scalar`` and
  tensorboardX write (``Event{wall_time, step, summary{value{tag, simple_value}}}``,
  fields in number order, one-byte lengths) for all records of a chunk at once with
  numpy, and groups records by tag so that :func:`~hjepa_watch.events.records.verify_data`
  checks each against a same-tag reference;
* every other record (TF2 tensor scalars, torch ``new_style``, several values per
  event, metadata, histograms, images, ...) is parsed with the protobuf classes.

NaN and ±Inf values are kept: rules need them.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, types_pb2

from hjepa_watch.events import crc as _crc
from hjepa_watch.events.records import HEADER, ReadResult, gather_rows

SCALARS_PLUGIN = "scalars"
_MAX_STEP_BYTES = 5  # steps below 2**35 take the vectorised path
_BUCKETS = 1 << 16


class ScalarPoint(NamedTuple):
    """One scalar value of one run.

    Attributes:
        run: run name (the run directory relative to LOGDIR).
        tag: the summary tag, e.g. ``train/loss/total``.
        step: the global step.
        wall_time: seconds since the epoch when the writer logged it.
        value: the value (NaN and ±Inf included).
        segment: the run's life it belongs to; a step going backwards starts a new one.
    """

    run: str
    tag: str
    step: int
    wall_time: float
    value: float
    segment: int


@dataclass
class Columns:
    """Scalars of one read step, in file order, before segments are assigned.

    Attributes:
        tag_id: index into the run's tag table (int32).
        step: int64.
        wall_time: float64.
        value: float64.
    """

    tag_id: np.ndarray
    step: np.ndarray
    wall_time: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.step)

    @staticmethod
    def empty() -> Columns:
        """Return columns with no rows."""
        return Columns(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0), np.empty(0))


@dataclass
class FastPlan:
    """The vectorised parse of a chunk's simple_value records (see :func:`plan`).

    Attributes:
        idx: indices of the records that have the layout, in file order.
        tag: for each, an index into :attr:`tags`.
        tags: the distinct tags (raw bytes) of these records.
        step, wall_time, value: their fields.
        count: the number of records the plan was made for.
    """

    idx: np.ndarray
    tag: np.ndarray
    tags: list[bytes]
    step: np.ndarray
    wall_time: np.ndarray
    value: np.ndarray
    count: int

    def cut(self, n: int) -> FastPlan:
        """Return the plan for the first ``n`` records."""
        if n >= self.count:
            return self
        k = int(np.searchsorted(self.idx, n))
        return FastPlan(self.idx[:k], self.tag[:k], self.tags, self.step[:k], self.wall_time[:k], self.value[:k], n)


def _representatives(keys: np.ndarray, same: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """For each row, a row with an equal key (by ``same``, exactly), in O(rows).

    Rows are bucketed by the hash ``keys``; a bucket's representative is one of its
    rows, and ``same(rows, reps)`` says which rows really equal theirs. Rows that
    collided with another key try again with other bits; -1 where all tries fail.
    """
    n = len(keys)
    rep = np.full(n, -1, np.int64)
    todo = np.arange(n)
    for shift in (0, 16, 32, 48):
        if not len(todo):
            break
        bucket = ((keys[todo] >> np.uint64(shift)) & np.uint64(_BUCKETS - 1)).astype(np.intp)
        table = np.empty(_BUCKETS, np.int64)
        table[bucket] = todo  # the last row of a bucket wins
        cand = table[bucket]
        eq = same(todo, cand)
        rep[todo[eq]] = cand[eq]
        todo = todo[~eq]
    return rep


def _layout_keys(head: np.ndarray, length: np.ndarray) -> np.ndarray:
    """length * 8 + the step's varint size (0: no step field); 0 where no fast layout fits.

    Args:
        head: (n, 8) uint8, data bytes 8..15 of each record.
        length: data lengths.
    """
    has_step = head[:, 1] == 0x10
    nbytes = np.ones(len(head), np.int64)
    run = np.ones(len(head), bool)
    for j in range(_MAX_STEP_BYTES):
        run &= head[:, 2 + j] >= 0x80
        nbytes += run
    nbytes = np.where(has_step, nbytes, 0)
    return np.where(run & has_step, 0, length * 8 + nbytes)


_K = np.uint64(0x9E3779B97F4A7C15)


def _same_words(columns: list[np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Rows i and j agree in every column (i is often all rows in order: no gather)."""
    whole = len(i) == len(columns[0])
    acc = np.zeros(len(i), np.uint64)
    for col in columns:
        acc |= (col if whole else col[i]) ^ col[j]
    return acc == 0


def plan(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, FastPlan]:
    """Parse and CRC-check every record with torch's simple_value layout, all at once.

    Records are grouped by layout (length, size of the step varint): within a group
    every field sits at a fixed column of one (records x bytes) matrix, so parsing
    is slicing. Each record is paired with a representative of the same tag; the
    columns where any record differs from its representative are, in the common
    case, only those of the wall time, step and value. That one fact proves the tags
    equal, the layout sound (checked once per representative), and makes the CRC
    check a dozen table lookups per record (see :mod:`hjepa_watch.events.crc`).

    Returns:
        (int8 CRC verdict per record: 1 ok, 0 bad, -1 not checked; the plan).
    """
    n = len(starts)
    checked = np.full(n, -1, np.int8)
    d_all = starts + HEADER
    cand = np.flatnonzero((lengths >= 21) & (lengths <= 160) & (buf[d_all] == 0x09))
    if not len(cand):
        return checked, FastPlan(cand, cand, [], cand, np.empty(0), np.empty(0), n)
    d = d_all[cand]
    keys = _layout_keys(gather_rows(buf, 8, d + 8), lengths[cand])
    order = np.argsort(keys.astype(np.uint16), kind="stable")  # a radix sort: keys < 2**11
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    fast = np.zeros(len(cand), bool)
    tag = np.zeros(len(cand), np.int64)
    step = np.zeros(len(cand), np.int64)
    wall = np.zeros(len(cand), np.float64)
    value = np.zeros(len(cand), np.float64)
    tags: list[bytes] = []
    tag_index: dict[bytes, int] = {}
    for a, b in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(order)].tolist(), strict=True):
        rows = order[a:b]
        key = int(keys[rows[0]])
        size, nb = divmod(key, 8)
        p = 9 + (1 + nb if nb else 0)  # where the summary field starts
        t0, t1 = p + 6, size - 5  # the tag bytes
        if not key or not 1 <= t1 - t0 <= 118:
            continue
        x = gather_rows(buf, (size + 4 + 7) & ~7, d[rows])  # data and its stored CRC
        # The tag's bytes as masked 8-byte words: a hash key, and exact equality.
        byte_mask = np.zeros(x.shape[1], np.uint8)
        byte_mask[t0:t1] = 0xFF
        word_mask = byte_mask.view(np.uint64)
        xw = x.view(np.uint64)
        tw = [xw[:, j] & word_mask[j] for j in np.flatnonzero(word_mask).tolist()]
        h = np.zeros(len(rows), np.uint64)
        for col in tw:
            h = (h ^ col) * _K
        h ^= h >> np.uint64(31)
        rep = _representatives(h, lambda i, j, tw=tw: _same_words(tw, i, j))
        if (rep < 0).any():  # collisions all the way down: let protobuf read them
            keep = rep >= 0
            rows, x, rep = rows[keep], x[keep], np.cumsum(keep)[rep[keep]] - 1
        w = x.shape[1]
        diff = x ^ gather_rows(x.ravel(), w, rep * w)
        var = np.flatnonzero(np.bitwise_or.reduce(diff.view(np.uint64), axis=0).view(np.uint8)[:size])
        reps = np.flatnonzero(np.bincount(rep, minlength=1))
        # Layout: checked on each representative; rows that differ from theirs in a
        # layout byte leave the fast path.
        cols = [0, 9, p, p + 1, p + 2, p + 3, p + 4, p + 5, t1]
        tlen = t1 - t0
        want = np.array([0x09, 0x10 if nb else 0x2A, 0x2A, tlen + 9, 0x0A, tlen + 7, 0x0A, tlen, 0x15])
        good = (x[reps][:, cols] == want).all(axis=1)
        bad_rep = np.zeros(len(rows), bool)
        bad_rep[reps[~good]] = True
        drop = bad_rep[rep]
        if np.isin(var, cols).any():
            drop |= (diff[:, cols] != 0).any(axis=1)
        if drop.any():
            rows, x, rep, diff = rows[~drop], x[~drop], np.cumsum(~drop)[rep[~drop]] - 1, diff[~drop]
            reps = np.flatnonzero(np.bincount(rep, minlength=1))
            if not len(rows):
                continue
        rep_crc = np.zeros(len(rows), np.uint32)
        for r in reps.tolist():
            rep_crc[r] = _crc.crc32c(x[r, :size].tobytes())
        crcs = rep_crc[rep] ^ _crc.crc0_of_columns(diff, size, var)
        stored = _crc.unmask_array(x[:, size : size + 4].copy().view("<u4").ravel())
        checked[cand[rows]] = crcs == stored
        fast[rows] = True
        local = np.zeros(len(rows), np.int64)
        for r in reps.tolist():
            raw = x[r, t0:t1].tobytes()
            i = tag_index.get(raw)
            if i is None:
                i = tag_index[raw] = len(tags)
                tags.append(raw)
            local[r] = i
        tag[rows] = local[rep]
        wall[rows] = x[:, 1:9].copy().view("<f8").ravel()
        value[rows] = x[:, size - 4 : size].copy().view("<f4").ravel()
        if nb:
            s = np.zeros(len(rows), np.int64)
            for j in range(nb):
                s |= (x[:, 10 + j] & 0x7F).astype(np.int64) << (7 * j)
            step[rows] = s
    keep = np.flatnonzero(fast)
    return checked, FastPlan(cand[keep], tag[keep], tags, step[keep], wall[keep], value[keep], n)


def cut(fast: FastPlan, n: int) -> FastPlan:
    """Cut a plan to its first ``n`` records (the ones before the first bad CRC)."""
    return fast.cut(n)


@dataclass
class Skipped:
    """Counts of summary values and events that are not scalars."""

    counts: Counter = field(default_factory=Counter)

    def add(self, kind: str, n: int = 1) -> None:
        """Count ``n`` more of ``kind``."""
        self.counts[kind] += n


_DTYPE_FIELDS: dict[int, tuple[str, str | None]] = {
    types_pb2.DT_FLOAT: ("float_val", "<f4"),
    types_pb2.DT_DOUBLE: ("double_val", "<f8"),
    types_pb2.DT_INT32: ("int_val", "<i4"),
    types_pb2.DT_INT16: ("int_val", "<i2"),
    types_pb2.DT_INT8: ("int_val", "<i1"),
    types_pb2.DT_UINT8: ("int_val", "<u1"),
    types_pb2.DT_INT64: ("int64_val", "<i8"),
    types_pb2.DT_UINT16: ("int_val", "<u2"),
    types_pb2.DT_UINT32: ("uint32_val", "<u4"),
    types_pb2.DT_UINT64: ("uint64_val", "<u8"),
    types_pb2.DT_BOOL: ("bool_val", "?"),
    types_pb2.DT_HALF: ("half_val", "<f2"),
    types_pb2.DT_BFLOAT16: ("half_val", None),
}


def tensor_scalar(tensor) -> float | None:
    """The value of a one-element numeric TensorProto, or None if it is not one."""
    if math.prod(d.size for d in tensor.tensor_shape.dim) != 1:
        return None
    spec = _DTYPE_FIELDS.get(tensor.dtype)
    if spec is None:
        return None
    name, fmt = spec
    if tensor.tensor_content:
        raw = tensor.tensor_content
        if tensor.dtype == types_pb2.DT_BFLOAT16:
            return struct.unpack("<f", b"\0\0" + raw[:2])[0]
        size = np.dtype(fmt).itemsize
        if len(raw) < size:
            return None
        return float(np.frombuffer(raw[:size], fmt)[0])
    vals = getattr(tensor, name)
    if not len(vals):
        return 0.0  # TensorProto leaves out all-default contents
    v = vals[0]
    if tensor.dtype == types_pb2.DT_HALF:
        return float(np.array([v], np.uint16).view(np.float16)[0])
    if tensor.dtype == types_pb2.DT_BFLOAT16:
        return struct.unpack("<f", struct.pack("<I", (v & 0xFFFF) << 16))[0]
    return float(v)


_PLUGIN_KIND = {"histograms": "histogram", "images": "image", "text": "text", "hparams": "hparams", "audio": "audio"}
_ONEOF_KIND = {"histo": "histogram", "image": "image", "audio": "audio", "obsolete_old_style_histogram": "histogram"}


@dataclass
class RunDecoder:
    """Decodes records of one run's files into scalar columns.

    Keeps what must outlive a single record: the run's tag table and the plugin
    each tag was declared with (TF1 writers send it only with a tag's first value).

    Attributes:
        tags: the run's tag table; :attr:`Columns.tag_id` indexes it.
        plugins: plugin name per tag, from the first value that carried metadata.
        skipped: counts of non-scalar values and events.
    """

    tags: list[str] = field(default_factory=list)
    plugins: dict[str, str] = field(default_factory=dict)
    skipped: Skipped = field(default_factory=Skipped)
    _tag_ids: dict[str, int] = field(default_factory=dict, repr=False)

    def tag_id(self, tag: str) -> int:
        """Return the id of ``tag`` in this run's table, adding it if new."""
        i = self._tag_ids.get(tag)
        if i is None:
            i = self._tag_ids[tag] = len(self.tags)
            self.tags.append(tag)
        return i

    def decode(self, result: ReadResult) -> Columns:
        """Decode the verified records of one read step, in file order."""
        fast: FastPlan = result.plan  # type: ignore[assignment]
        n = len(result.starts)
        parts: list[tuple[np.ndarray, Columns]] = []
        if len(fast.idx):
            used = np.flatnonzero(np.bincount(fast.tag, minlength=1))
            lut = np.zeros(max(len(fast.tags), 1), np.int32)
            for i in used.tolist():
                lut[i] = self.tag_id(fast.tags[i].decode("utf-8", "replace"))
            parts.append((fast.idx, Columns(lut[fast.tag], fast.step, fast.wall_time, fast.value)))
        if len(fast.idx) < n:
            rest = np.ones(n, bool)
            rest[fast.idx] = False
            slow = self._decode_slow(result, np.flatnonzero(rest))
            if slow is not None:
                parts.append(slow)
        if not parts:
            return Columns.empty()
        if len(parts) == 1:
            return parts[0][1]
        order = np.argsort(np.concatenate([p[0] for p in parts]), kind="stable")
        return Columns(
            *(np.concatenate([getattr(p[1], f) for p in parts])[order] for f in Columns.__dataclass_fields__)
        )

    def _decode_slow(self, result: ReadResult, which: np.ndarray) -> tuple[np.ndarray, Columns] | None:
        rec: list[int] = []
        ids: list[int] = []
        steps: list[int] = []
        walls: list[float] = []
        values: list[float] = []
        buf = result.buf
        for i in which.tolist():
            d = int(result.starts[i]) + HEADER
            try:
                event = event_pb2.Event.FromString(buf[d : d + int(result.lengths[i])].tobytes())
            except DecodeError:
                self.skipped.add("undecodable")  # its CRC held: a writer bug, not damage
                continue
            what = event.WhichOneof("what")
            if what != "summary":
                self.skipped.add(what or "empty_event")
                continue
            for v in event.summary.value:
                value = self._value(v)
                if value is None:
                    continue
                rec.append(i)
                ids.append(self.tag_id(v.tag))
                steps.append(event.step)
                walls.append(event.wall_time)
                values.append(value)
        if not rec:
            return None
        return np.array(rec, np.int64), Columns(
            np.array(ids, np.int32),
            np.array(steps, np.int64),
            np.array(walls, np.float64),
            np.array(values, np.float64),
        )

    def _value(self, v) -> float | None:
        if v.HasField("metadata") and v.metadata.plugin_data.plugin_name:
            self.plugins.setdefault(v.tag, v.metadata.plugin_data.plugin_name)
        kind = v.WhichOneof("value")
        if kind == "simple_value":
            return float(v.simple_value)
        plugin = self.plugins.get(v.tag, "")
        if kind == "tensor" and plugin == SCALARS_PLUGIN:
            value = tensor_scalar(v.tensor)
            if value is not None:
                return value
            self.skipped.add("non_scalar_tensor")
            return None
        # Counted by what they are; a histogram rule can start from here.
        what = _PLUGIN_KIND.get(plugin) or _ONEOF_KIND.get(kind or "")
        self.skipped.add(what or (f"{kind}:{plugin}" if plugin else kind or "empty_value"))
        return None
