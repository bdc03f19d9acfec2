"""TFRecord framing: find, verify and commit records of one event file, exactly once.

A record is ``u64 length | u32 masked crc32c(length) | data | u32 masked crc32c(data)``.
:func:`frame` finds the chain of records with valid headers in a buffer without a
Python loop per record: every real header has four zero bytes at +4..+7 (lengths
are below 4 GiB), so the positions with that pattern are candidates, their header
CRCs are checked at once, and the chain from the start offset is read off the
candidates. The result is exactly that of walking the chain one record at a time
(the candidates only propose; each link is checked), which :func:`frame_slow` does
and the tests compare against.

:class:`RecordReader` owns one file's committed offset and the policy for its ends:
a partial record is "not yet" (nothing is consumed, the next read resumes there), a
corrupt one is reported once and re-checked on later reads until ``corrupt_grace``
seconds have passed (an NFS client can show a not-yet-written region as zeros),
then reading resynchronises past it.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from hjepa_watch.events import crc as _crc

HEADER = 12
FOOTER = 4
OVERHEAD = HEADER + FOOTER
#: A CRC-valid length above this is treated as corrupt: no event is this large, and
#: honouring it would mean buffering it.
MAX_RECORD = 256 << 20
#: Zero bytes after the logical end of every read buffer, so that fixed-width
#: gathers near the end never index out of bounds.
PAD = 256
#: Records at most this long take the vectorised data-CRC check.
VECTOR_MAX = 1024


def gather_rows(buf: np.ndarray, width: int, pos: np.ndarray) -> np.ndarray:
    """Rows of ``width`` bytes of ``buf`` starting at each of ``pos``, as a (n, width) copy.

    ``buf`` is seen as overlapping opaque items, one per offset, so that fancy
    indexing copies each row with one memcpy: several times faster than indexing a
    2-D sliding window row by row.
    """
    items = np.ndarray((len(buf) - width + 1,), dtype=f"V{width}", buffer=buf, strides=(1,))
    return items[pos].view(np.uint8).reshape(len(pos), width)


class Stop(enum.Enum):
    """Why framing stopped where it did."""

    END = "end"  # exactly at the end of the data: clean
    PARTIAL = "partial"  # an incomplete record: not yet written
    CORRUPT = "corrupt"  # a header that fails its CRC or claims an absurd length


@dataclass
class Frames:
    """The chain of records found in a buffer.

    Attributes:
        starts: offsets of the record headers, relative to the buffer (int64).
        lengths: data lengths (int64).
        stop: where framing stopped.
        status: why it stopped.
        need: for ``PARTIAL``, bytes from ``stop`` needed to complete the record.
    """

    starts: np.ndarray
    lengths: np.ndarray
    stop: int
    status: Stop
    need: int = 0


def _header_at(buf: np.ndarray, pos: int, end: int) -> tuple[Stop | None, int]:
    """Check the header at ``pos`` the slow way: (None, length) when valid."""
    if end - pos < HEADER:
        return Stop.PARTIAL, HEADER
    head = buf[pos : pos + HEADER].tobytes()
    (length,) = struct.unpack_from("<Q", head)
    (stored,) = struct.unpack_from("<I", head, 8)
    if _crc.masked_crc32c(head[:8]) != stored or length > MAX_RECORD:
        return Stop.CORRUPT, 0
    return None, length


def frame_slow(buf: np.ndarray, start: int, end: int) -> Frames:
    """Reference framing: walk the chain one record at a time."""
    starts: list[int] = []
    lengths: list[int] = []
    pos = start
    while True:
        if pos == end:
            return Frames(np.array(starts, np.int64), np.array(lengths, np.int64), pos, Stop.END)
        bad, length = _header_at(buf, pos, end)
        if bad is None and pos + OVERHEAD + length > end:
            bad, length = Stop.PARTIAL, OVERHEAD + length
        if bad is not None:
            need = length if bad is Stop.PARTIAL else 0
            return Frames(np.array(starts, np.int64), np.array(lengths, np.int64), pos, bad, need)
        starts.append(pos)
        lengths.append(length)
        pos += OVERHEAD + length


def _candidates(buf: np.ndarray, start: int, end: int, event_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Positions in [start, end) holding a CRC-valid header, and their lengths.

    With ``event_only``, a position is proposed when the data after it starts with
    0x09 (an Event's wall_time field, which every writer puts first) and bytes +4..+7
    are zero (lengths are below 4 GiB): one pass over the bytes and about one
    proposal per record. Records that miss it are still found, one at a time, by
    :func:`frame`. Without ``event_only`` every zero run is proposed (for resync).
    """
    n = end - start
    if n < HEADER:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if event_only:
        idx = np.flatnonzero(buf[start + HEADER : end] == 0x09) + start
    else:
        z = buf[start : end - 4] == 0
        pair = z[:-1] & z[1:]
        idx = np.flatnonzero((pair[:-2] & pair[2:])[4 : n - 7]) + start
    if not len(idx):
        return idx.astype(np.int64), idx.astype(np.int64)
    head = gather_rows(buf, HEADER, idx).view("<u4")  # (k, 3): length low, length high, CRC
    lengths = head[:, 0]
    ok = head[:, 1] == 0
    ok &= _crc.header_crcs(lengths) == head[:, 2]
    ok &= lengths <= MAX_RECORD
    return idx[ok].astype(np.int64), lengths[ok].astype(np.int64)


def frame(buf: np.ndarray, start: int, end: int) -> Frames:
    """Find the chain of records from ``start`` in ``buf[:end]``.

    Args:
        buf: uint8 array holding the data, with at least :data:`PAD` bytes after ``end``.
        start: offset of the first record.
        end: logical end of the data.

    Returns:
        The records with valid headers (data CRCs are not checked here), and where
        and why the chain stopped. Equal to :func:`frame_slow`'s result.
    """
    cands, clens = _candidates(buf, start, end)
    nxt = cands + OVERHEAD + clens
    # breaks[k]: candidate k's successor is not candidate k+1, so a run of links ends.
    breaks = np.flatnonzero(np.append(nxt[:-1] != cands[1:], True))
    parts_s: list[np.ndarray] = []
    parts_l: list[np.ndarray] = []
    pos = start
    while pos < end:
        j = int(np.searchsorted(cands, pos))
        if j < len(cands) and cands[j] == pos:
            k = int(breaks[np.searchsorted(breaks, j)])
            if nxt[k] <= end:
                parts_s.append(cands[j : k + 1])
                parts_l.append(clens[j : k + 1])
                pos = int(nxt[k])
                continue
            parts_s.append(cands[j:k])  # the last record of this run is incomplete
            parts_l.append(clens[j:k])
            pos = int(cands[k])
        # Not proposed (or incomplete): one exact step.
        bad, length = _header_at(buf, pos, end)
        if bad is None and pos + OVERHEAD + length <= end:
            parts_s.append(np.array([pos], np.int64))
            parts_l.append(np.array([length], np.int64))
            pos += OVERHEAD + length
            continue
        if bad is None:
            bad, length = Stop.PARTIAL, OVERHEAD + length
        starts, lengths = _concat(parts_s, parts_l)
        return Frames(starts, lengths, pos, bad, length if bad is Stop.PARTIAL else 0)
    starts, lengths = _concat(parts_s, parts_l)
    return Frames(starts, lengths, pos, Stop.END)


def _concat(parts_s: list[np.ndarray], parts_l: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not parts_s:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(parts_s), np.concatenate(parts_l)


def _stored_data_crcs(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    at = starts + HEADER + lengths
    return _crc.unmask_array(gather_rows(buf, 4, at).view("<u4").ravel())


def _direct_check(buf: np.ndarray, start: int, length: int, stored_unmasked: int) -> bool:
    d = start + HEADER
    return _crc.crc32c(buf[d : d + length].tobytes()) == stored_unmasked


def verify_data(
    buf: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    checked: np.ndarray | None = None,
) -> np.ndarray:
    """Check the data CRC of every record.

    Records of equal length are checked together against the first of them (see
    :func:`hjepa_watch.events.crc.same_length_crcs`); long ones one by one.

    Args:
        buf: the buffer the records are in (with :data:`PAD` bytes of slack).
        starts: header offsets.
        lengths: data lengths.
        checked: optional int8 per record: 1 or 0 where the caller has already
            checked it (ok or not), -1 where it has not.

    Returns:
        bool array, True where the stored CRC matches the data.
    """
    n = len(starts)
    ok = np.zeros(n, bool) if checked is None else checked == 1
    todo = np.arange(n) if checked is None else np.flatnonzero(checked < 0)
    if not len(todo):
        return ok
    stored = _stored_data_crcs(buf, starts[todo], lengths[todo])
    lens = lengths[todo]
    small = lens <= VECTOR_MAX
    for i in np.flatnonzero(~small).tolist():
        ok[todo[i]] = _direct_check(buf, int(starts[todo[i]]), int(lens[i]), int(stored[i]))
    sel = np.flatnonzero(small)
    if not len(sel):
        return ok
    order = sel[np.argsort(lens[sel].astype(np.uint16), kind="stable")]  # a radix sort
    bounds = np.flatnonzero(np.diff(lens[order])) + 1
    for a, b in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(order)].tolist(), strict=True):
        group = order[a:b]
        length = int(lens[group[0]])
        rows = gather_rows(buf, (length + 7) & ~7, starts[todo[group]] + HEADER)
        crcs, _, _ = _crc.same_length_crcs(rows, length)
        ok[todo[group]] = crcs == stored[group]
    return ok


@dataclass
class ReadResult:
    """Verified records of one read step.

    Attributes:
        buf: the buffer holding the records (uint8, with padding).
        starts: header offsets of the records, relative to ``buf``.
        lengths: their data lengths.
        plan: whatever the planner returned for these records, cut to them.
        base: file offset of ``buf[0]``.
        end: file offset just past the last record: the offset to commit once the
            records have been dealt with.
    """

    buf: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    plan: object
    base: int
    end: int


#: A planner parses framed records before their CRCs are known and returns
#: (per-record int8 CRC verdicts it reached itself: 1 ok, 0 bad, -1 not checked;
#: opaque plan). The reader checks the rest and cuts the plan to the records
#: before the first bad one with ``cut(plan, n)``.
Planner = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray | None, object]]


@dataclass
class CorruptReport:
    """A corrupt region, reported once."""

    path: str
    offset: int
    reason: str


@dataclass
class _Bad:
    offset: int
    since: float


@dataclass
class RecordReader:
    """Reads one event file's records past a committed offset, exactly once.

    :meth:`read` is a resumable generator: it yields verified records chunk by
    chunk and advances :attr:`offset` past a chunk only when the consumer asks for
    the next one (or the generator finishes), so records handed out are never
    handed out again and records not handed out are never skipped. The file is
    open only while the generator runs, so thousands of readers hold no file
    descriptors.

    Attributes:
        path: the file.
        offset: committed offset: everything before it has been consumed.
        corrupt_grace: seconds a corrupt region is re-checked before it is skipped.
        chunk_bytes: bytes read per step (bounds memory).
        corrupt_skipped: corrupt regions skipped so far.
    """

    path: str
    offset: int = 0
    corrupt_grace: float = 30.0
    chunk_bytes: int = 4 << 20
    corrupt_skipped: int = 0
    _bad: _Bad | None = field(default=None, repr=False)
    _reported: set[int] = field(default_factory=set, repr=False)

    @property
    def holding(self) -> bool:
        """True while a corrupt region blocks the file within its grace period."""
        return self._bad is not None

    def read(
        self,
        now: float,
        planner: Planner,
        cut: Callable[[object, int], object],
        on_corrupt: Callable[[CorruptReport], None] | None = None,
        size: int | None = None,
    ) -> Iterator[ReadResult]:
        """Yield every new verified record up to the end of the file.

        Args:
            now: the current time (for the corrupt-region grace period).
            planner: see :data:`Planner`.
            cut: cuts a plan to its first n records.
            on_corrupt: called once per newly seen corrupt region.
            size: the file size, if the caller has just stat'ed it.

        Raises:
            OSError: the file cannot be opened or read (the caller decides whether
                that is transient).
        """
        with open(self.path, "rb", buffering=0) as f:
            if size is None:
                size = os.fstat(f.fileno()).st_size
            want = self.chunk_bytes
            while self.offset < size:
                n = min(want, size - self.offset)
                buf = np.zeros(n + PAD, np.uint8)
                f.seek(self.offset)
                got = f.readinto(memoryview(buf)[:n])
                if not got:
                    return
                frames = frame(buf, 0, got)
                count = len(frames.starts)
                if count:
                    checked, plan = planner(buf, frames.starts, frames.lengths)
                    ok = verify_data(buf, frames.starts, frames.lengths, checked)
                    bad = np.flatnonzero(~ok)
                    good = int(bad[0]) if len(bad) else count
                    if good:
                        stop = int(frames.starts[good]) if good < count else frames.stop
                        base = self.offset
                        yield ReadResult(
                            buf, frames.starts[:good], frames.lengths[:good], cut(plan, good), base, base + stop
                        )
                        self.offset = base + stop
                        self._clear_bad_before(self.offset)
                    if good < count:
                        skip = self.offset + OVERHEAD + int(frames.lengths[good])
                        if not self._on_bad(now, "data CRC mismatch", on_corrupt):
                            return
                        self.offset = skip
                        self.corrupt_skipped += 1
                        self._bad = None
                        continue
                else:
                    self.offset += frames.stop
                self._clear_bad_before(self.offset)
                if frames.status is Stop.END:
                    want = self.chunk_bytes
                elif frames.status is Stop.PARTIAL:
                    if frames.stop:
                        want = self.chunk_bytes  # the chunk ended mid-record: read on
                    elif self.offset + frames.need <= size:
                        want = max(self.chunk_bytes, frames.need)  # one record larger than a chunk
                    else:
                        return  # not yet written
                else:
                    # A corrupt header: its length cannot be trusted, so skipping scans.
                    if not self._on_bad(now, "bad record header", on_corrupt):
                        return
                    if not self._resync_scan(f, size):
                        return  # nothing valid after the damage yet

    def _clear_bad_before(self, offset: int) -> None:
        if self._bad is not None and self._bad.offset < offset:
            self._bad = None

    def _on_bad(
        self,
        now: float,
        reason: str,
        on_corrupt: Callable[[CorruptReport], None] | None,
    ) -> bool:
        """Note a corrupt record at :attr:`offset`; True when its grace has run out."""
        if self._bad is None or self._bad.offset != self.offset:
            self._bad = _Bad(self.offset, now)
        if self.offset not in self._reported:
            self._reported.add(self.offset)
            if on_corrupt is not None:
                on_corrupt(CorruptReport(self.path, self.offset, reason))
        return now - self._bad.since >= self.corrupt_grace

    def _resync_scan(self, f: BinaryIO, size: int) -> bool:
        """Move past a corrupt header to the next record that verifies, if any yet."""
        pos = self.offset + 1
        while pos < size:
            n = min(self.chunk_bytes, size - pos)
            buf = np.zeros(n + PAD, np.uint8)
            f.seek(pos)
            got = f.readinto(memoryview(buf)[:n])
            cands, lens = _candidates(buf, 0, got, event_only=False)
            for c, length in zip(cands.tolist(), lens.tolist(), strict=True):
                if c + OVERHEAD + length > got:
                    if c == 0:
                        return False  # the first record after the damage is incomplete
                    pos += c  # read on from this candidate
                    break
                stored = _stored_data_crcs(buf, np.array([c]), np.array([length]))
                if _direct_check(buf, c, length, int(stored[0])):
                    self.offset = pos + c
                    self.corrupt_skipped += 1
                    self._bad = None
                    return True
            else:
                if pos + got >= size:
                    return False
                pos += max(got - HEADER, 1)
        return False
