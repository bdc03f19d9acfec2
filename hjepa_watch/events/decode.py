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
from numpy.lib.stride_tricks import sliding_window_view
from tensorboard.compat.proto import event_pb2, types_pb2

from hjepa_watch.events.records import HEADER, ReadResult

SCALARS_PLUGIN = "scalars"
_MAX_STEP_BYTES = 5  # steps below 2**35 take the vectorised path
_BUCKETS = 1 << 16
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


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
    """The vectorised parse of a chunk's records (see :func:`plan`).

    Attributes:
        idx: indices of the records that have the simple_value layout.
        tag_rep: for each of them, the index (into ``idx``) of a record with the same tag.
        step, wall_time, value: their fields.
        tag_pos, tag_len: where their tag bytes are in the buffer.
    """

    idx: np.ndarray
    tag_rep: np.ndarray
    step: np.ndarray
    wall_time: np.ndarray
    value: np.ndarray
    tag_pos: np.ndarray
    tag_len: np.ndarray
    count: int  # number of records the plan was made for

    def cut(self, n: int) -> FastPlan:
        """Return the plan for the first ``n`` records."""
        if n >= self.count:
            return self
        k = int(np.searchsorted(self.idx, n))
        rep = self.tag_rep[:k]
        # A record whose representative was cut off stands for itself and its kin.
        lost = rep >= k
        if lost.any():
            rep = rep.copy()
            first: dict[int, int] = {}
            for i in np.flatnonzero(lost).tolist():
                rep[i] = first.setdefault(int(self.tag_rep[i]), i)
        return FastPlan(
            self.idx[:k], rep, self.step[:k], self.wall_time[:k], self.value[:k], self.tag_pos[:k], self.tag_len[:k], n
        )


def _gather(buf: np.ndarray, width: int, pos: np.ndarray) -> np.ndarray:
    return sliding_window_view(buf, width)[pos]


def _mix(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a (n, w) uint64 array."""
    h = np.full(len(words), 0x243F6A8885A308D3, np.uint64)
    for j in range(words.shape[1]):
        h = (h ^ words[:, j]) * _K1
        h ^= h >> np.uint64(29)
    return h


def _tag_words(buf: np.ndarray, pos: np.ndarray, tlen: int) -> np.ndarray:
    width = (tlen + 7) & ~7
    words = _gather(buf, width, pos).copy().view(np.uint64)
    if tlen % 8:
        # Bytes past the tag belong to the next field; little-endian, so keep the low ones.
        words[:, -1] &= np.uint64((1 << (8 * (tlen % 8))) - 1)
    return words


def _representatives(
    keys: np.ndarray, same: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Pick, for each row, a representative row with an equal key, exactly.

    Rows are bucketed by the hash ``keys``; a bucket's representative is one of its
    rows, and ``same(rows, reps)`` says which rows really equal theirs. Rows that
    collided with another key try again with other hash bits; returns
    (representative index or -1, resolved mask).
    """
    n = len(keys)
    rep = np.full(n, -1, np.int64)
    todo = np.arange(n)
    for shift in (48, 32, 16, 0):
        if not len(todo):
            break
        bucket = ((keys[todo] >> np.uint64(shift)) & np.uint64(_BUCKETS - 1)).astype(np.intp)
        table = np.empty(_BUCKETS, np.int64)
        table[bucket] = todo  # the last row of a bucket wins
        cand = table[bucket]
        eq = same(todo, cand)
        rep[todo[eq]] = cand[eq]
        todo = todo[~eq]
    return rep, rep >= 0


def plan(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, FastPlan]:
    """Parse the simple_value layout of every record that has it, without trusting it yet.

    Returns:
        (reference hint for ``verify_data``, the plan).
    """
    n = len(starts)
    d = starts + HEADER
    ok = (lengths >= 21) & (lengths <= 160)
    ok &= buf[d] == 0x09
    idx = np.flatnonzero(ok)
    d, length = d[idx], lengths[idx]
    has_step = buf[d + 9] == 0x10
    vb = _gather(buf, _MAX_STEP_BYTES, d + 10)
    more = vb >= 0x80
    nbytes = np.ones(len(idx), np.int64)
    run = np.ones(len(idx), bool)
    step = np.zeros(len(idx), np.int64)
    for j in range(_MAX_STEP_BYTES):
        step |= np.where(run, (vb[:, j] & 0x7F).astype(np.int64) << (7 * j), 0)
        run &= more[:, j]
        nbytes += run
    ok = ~run  # a varint that did not end within the limit leaves the fast path
    step = np.where(has_step, step, 0)
    p = d + 9 + np.where(has_step, 1 + nbytes, 0)
    slen = buf[p + 1].astype(np.int64)
    vlen = buf[p + 3].astype(np.int64)
    tlen = buf[p + 5].astype(np.int64)
    ok &= (buf[p] == 0x2A) & (buf[p + 2] == 0x0A) & (buf[p + 4] == 0x0A) & (tlen > 0)
    ok &= (slen == vlen + 2) & (vlen == tlen + 7) & (p + 2 + slen == d + length)
    ok &= buf[p + 6 + np.minimum(tlen, 127)] == 0x15
    keep = np.flatnonzero(ok)
    idx, d, length, step, p, tlen = idx[keep], d[keep], length[keep], step[keep], p[keep], tlen[keep]
    wall = _gather(buf, 8, d + 1).copy().view("<f8").ravel()
    value = _gather(buf, 4, p + 7 + tlen).copy().view("<f4").ravel().astype(np.float64)
    tag_pos = p + 6

    # Tag identity: hash the tag bytes, then check each record against its bucket's
    # representative byte for byte, one tag length at a time.
    keys = np.zeros(len(idx), np.uint64)
    tag_rep = np.full(len(idx), -1, np.int64)
    for t in np.flatnonzero(np.bincount(tlen, minlength=1)).tolist():
        rows = np.flatnonzero(tlen == t)
        words = _tag_words(buf, tag_pos[rows], t)
        keys[rows] = _mix(words) ^ np.uint64((t * int(_K2)) & 0xFFFFFFFFFFFFFFFF)
        local, _ = _representatives(keys[rows], lambda a, b, w=words: (w[a] == w[b]).all(axis=1))
        tag_rep[rows] = np.where(local >= 0, rows[np.maximum(local, 0)], -1)
    if (tag_rep < 0).any():  # hash collisions all the way down: let protobuf read them
        keep = np.flatnonzero(tag_rep >= 0)
        remap = np.full(len(idx), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        tag_rep = remap[tag_rep[keep]]
        idx, length, step, wall, value, tag_pos, tlen, keys = (
            a[keep] for a in (idx, length, step, wall, value, tag_pos, tlen, keys)
        )
    # CRC references: a record of the same tag and length, so only time, step and
    # value bytes differ. Any same-length record is correct; same-tag is fast.
    crc_keys = keys ^ (length.astype(np.uint64) * _K1)
    table = np.empty(_BUCKETS, np.int64)
    bucket = (crc_keys >> np.uint64(40)).astype(np.intp) & (_BUCKETS - 1)
    table[bucket] = idx
    ref = np.full(n, -1, np.int64)
    ref[idx] = table[bucket]
    return ref, FastPlan(idx, tag_rep, step, wall, value, tag_pos, tlen, n)


def cut(fast: FastPlan, n: int) -> FastPlan:
    """Cut a plan to its first ``n`` records (the ones whose CRCs verified)."""
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
            rep_ids = np.flatnonzero(np.bincount(fast.tag_rep, minlength=len(fast.idx)))
            lut = np.zeros(len(fast.idx), np.int32)
            buf = result.buf
            for r in rep_ids.tolist():
                pos, t = int(fast.tag_pos[r]), int(fast.tag_len[r])
                lut[r] = self.tag_id(buf[pos : pos + t].tobytes().decode("utf-8", "replace"))
            parts.append((fast.idx, Columns(lut[fast.tag_rep], fast.step, fast.wall_time, fast.value)))
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
        if kind == "tensor":
            plugin = self.plugins.get(v.tag, "")
            if plugin == SCALARS_PLUGIN:
                value = tensor_scalar(v.tensor)
                if value is not None:
                    return value
                self.skipped.add("non_scalar_tensor")
                return None
            self.skipped.add(_PLUGIN_KIND.get(plugin, f"tensor:{plugin}" if plugin else "tensor"))
            return None
        self.skipped.add(_ONEOF_KIND.get(kind or "", kind or "empty_value"))
        return None
