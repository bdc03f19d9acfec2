"""CRC32C (Castagnoli) as TFRecord framing uses it: scalar and vectorised forms.

The scalar form calls google-crc32c (C, hardware-accelerated where the CPU has it).
The vectorised form exists because one C call per record costs more than the whole
rest of ingest: CRC is linear over GF(2), so for two byte strings of equal length
``crc(a) ^ crc(b) == crc0(a ^ b)`` where ``crc0`` is the pure polynomial remainder
(no init, no final xor). ``crc0`` of a string is the xor, over its non-zero bytes, of
a table entry indexed by (distance from the end, byte value). Records of one tag
differ from each other only in a dozen bytes (wall time, step, value), so checking
a record against its predecessor costs a dozen table lookups, done for all records
at once with numpy.
"""

from __future__ import annotations

import functools

import google_crc32c
import numpy as np

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """Return the standard CRC32C of ``data``."""
    return google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)


def mask(crc: int) -> int:
    """Apply TFRecord's CRC mask (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """Return the masked CRC32C stored in TFRecord framing."""
    return mask(crc32c(data))


def unmask_array(masked: np.ndarray) -> np.ndarray:
    """Invert :func:`mask` element-wise on a uint32 array."""
    r = (masked.astype(np.uint32) - np.uint32(_MASK_DELTA)).astype(np.uint32)
    return ((r >> np.uint32(17)) | (r << np.uint32(15))).astype(np.uint32)


def mask_array(crc: np.ndarray) -> np.ndarray:
    """Apply :func:`mask` element-wise on a uint32 array."""
    c = crc.astype(np.uint32)
    return (((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(_MASK_DELTA)).astype(np.uint32)


@functools.lru_cache(maxsize=1)
def _byte_table() -> np.ndarray:
    """crc0 of each single byte value (the classic 256-entry table)."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


class _DistanceTables:
    """``table(k)[b]`` = crc0 of byte ``b`` followed by ``k`` zero bytes.

    Grown on demand and kept: distances are bounded by the longest record that
    takes the vectorised path.
    """

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = [_byte_table()]
        self.stacked = np.stack(self._rows)

    def upto(self, k: int) -> np.ndarray:
        """Return a (k+1, 256) array of the tables for distances 0..k."""
        if k >= len(self._rows):
            t0 = _byte_table()
            row = self._rows[-1]
            while len(self._rows) <= k:
                # Feeding one zero byte through the register: shift and reduce.
                row = (row >> np.uint32(8)) ^ t0[row & np.uint32(0xFF)]
                self._rows.append(row)
            self.stacked = np.stack(self._rows)
        return self.stacked


DISTANCE_TABLES = _DistanceTables()


@functools.lru_cache(maxsize=1)
def _short_header_table() -> np.ndarray:
    """Masked header CRC of every length below 65536 (most records are shorter)."""
    n = np.arange(1 << 16, dtype=np.uint32)
    return _header_crcs_by_bytes(n.view(np.uint8).reshape(-1, 4))


def _header_crcs_by_bytes(length_bytes: np.ndarray) -> np.ndarray:
    tables = DISTANCE_TABLES.upto(7)
    # crc(x) = crc(0^8) ^ crc0(x): the four zero bytes contribute nothing to crc0.
    acc = np.full(len(length_bytes), crc32c(bytes(8)), dtype=np.uint32)
    for j in range(4):
        acc ^= tables[7 - j][length_bytes[:, j]]
    return mask_array(acc)


def header_crcs(lengths: np.ndarray) -> np.ndarray:
    """Masked CRC32C of 8-byte little-endian lengths below 2**32, as headers store it.

    Args:
        lengths: uint32 array.

    Returns:
        (n,) uint32 array.
    """
    short = _short_header_table()
    small = lengths < len(short)
    out = short[np.where(small, lengths, 0)]
    if not small.all():
        big = np.flatnonzero(~small)
        out[big] = _header_crcs_by_bytes(np.ascontiguousarray(lengths[big], dtype="<u4").view(np.uint8).reshape(-1, 4))
    return out


def crc0_of_columns(diff: np.ndarray, length: int, columns: np.ndarray) -> np.ndarray:
    """crc0 of rows of ``diff`` that are zero outside ``columns``.

    Args:
        diff: (n, w) uint8 array with w >= length; bytes past ``length`` are ignored.
        length: the length of the byte strings the rows stand for.
        columns: indices (< length) of the columns that may be non-zero.

    Returns:
        (n,) uint32 array.
    """
    tables = DISTANCE_TABLES.upto(max(length - 1, 0))
    acc = np.zeros(len(diff), dtype=np.uint32)
    for p in columns:
        acc ^= tables[length - 1 - int(p)][diff[:, p]]
    return acc


def same_length_crcs(rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CRC32C of the first ``length`` bytes of every row, checked against row 0.

    ``crc(row) == crc(row0) ^ crc0(row ^ row0)``: one C call for row 0, then table
    lookups for the columns where some row differs from it.

    Args:
        rows: (n, w) uint8 array, n >= 1, w >= length and w a multiple of 8.

    Returns:
        (crcs, diff, columns): the CRCs (uint32), ``rows ^ rows[0]``, and the columns
        (< length) where any row differs from row 0 (callers reuse the last two).
    """
    diff = rows ^ rows[0]
    cols = np.bitwise_or.reduce(diff.view(np.uint64), axis=0).view(np.uint8)[:length]
    cols = np.flatnonzero(cols)
    crcs = crc0_of_columns(diff, length, cols) ^ np.uint32(crc32c(rows[0, :length].tobytes()))
    return crcs, diff, cols
