"""TFRecord framing and CRCs: the vectorised path against the one-record-at-a-time reference."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hjepa_watch.events import crc, records
from hjepa_watch.events.records import PAD, RecordReader, Stop, frame, frame_slow, verify_data

from .conftest import write_torch_scalars


def record(data: bytes) -> bytes:
    """Frame ``data`` as a TFRecord."""
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", crc.masked_crc32c(head)) + data + struct.pack("<I", crc.masked_crc32c(data))


def padded(b: bytes) -> np.ndarray:
    buf = np.zeros(len(b) + PAD, np.uint8)
    buf[: len(b)] = np.frombuffer(b, np.uint8)
    return buf


def test_masked_crc_matches_tensorboard() -> None:
    from tensorboard.summary.writer.record_writer import masked_crc32c

    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert crc.masked_crc32c(data) == masked_crc32c(data)


def test_vectorised_header_crcs_match_scalar() -> None:
    lengths = np.array([0, 1, 33, 255, 256, 70000, 2**31 + 5], np.uint32)
    want = [crc.masked_crc32c(struct.pack("<Q", int(n))) for n in lengths]
    assert crc.header_crcs(lengths).tolist() == want  # table and byte-wise paths
    assert crc.header_crcs(lengths[:5]).tolist() == want[:5]  # table path only


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("torch")
    rows = [(f"train/loss/h{i % 3}", float(i) * 0.5, i // 3) for i in range(600)]
    rows += [("train/x", float("nan"), 200), ("train/x", float("inf"), 201), ("train/y", -1.0, 2**40)]
    return Path(write_torch_scalars(d, rows)).read_bytes()


def _fields(f: records.Frames) -> tuple:
    return f.starts.tolist(), f.lengths.tolist(), f.stop, f.status, f.need


def test_frame_equals_slow_walk_on_real_file(torch_file: bytes) -> None:
    buf = padded(torch_file)
    for end in [len(torch_file), len(torch_file) - 1, len(torch_file) - 20, 11, 12, 0]:
        assert _fields(frame(buf, 0, end)) == _fields(frame_slow(buf, 0, end))
    assert frame(buf, 0, len(torch_file)).status is Stop.END


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_frame_equals_slow_walk_on_damaged_bytes(torch_file: bytes, data) -> None:
    """Flipped, zeroed and cut bytes: the vectorised framing never differs from the walk."""
    b = bytearray(torch_file[: data.draw(st.integers(0, 3000))])
    for _ in range(data.draw(st.integers(0, 4))):
        if b:
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.sampled_from([0, 0xFF, b[i] ^ 1]))
    if data.draw(st.booleans()) and len(b) > 40:  # a zero-filled region
        i = data.draw(st.integers(0, len(b) - 30))
        b[i : i + 30] = bytes(30)
    buf = padded(bytes(b))
    assert _fields(frame(buf, 0, len(b))) == _fields(frame_slow(buf, 0, len(b)))


def test_false_header_inside_data_is_not_followed() -> None:
    """A record whose data contains a valid-looking header: the chain steps over it."""
    inner = record(b"x" * 5)
    b = record(b"A" * 3 + inner + b"B") + record(b"tail")
    buf = padded(b)
    got = frame(buf, 0, len(b))
    assert got.starts.tolist() == [0, 16 + 3 + len(inner) + 1] and got.status is Stop.END


def test_verify_data_detects_any_flipped_byte(torch_file: bytes) -> None:
    """Both CRC paths: the layout-grouped one of decode.plan, and the generic one."""
    from hjepa_watch.events import decode

    buf = padded(torch_file)
    f = frame(buf, 0, len(torch_file))
    checked, _ = decode.plan(buf, f.starts, f.lengths)
    # file_version is not a scalar; step 2**40 needs a 6-byte varint: both take the generic path
    assert (checked[1:-1] == 1).all() and checked[0] == checked[-1] == -1
    assert verify_data(buf, f.starts, f.lengths).all()
    rng = np.random.default_rng(0)
    for k in rng.choice(len(f.starts), 40, replace=False).tolist():
        for _ in range(3):
            pos = int(f.starts[k]) + records.HEADER + int(rng.integers(0, f.lengths[k] + 4))
            bad = buf.copy()
            bad[pos] ^= 1 << int(rng.integers(0, 8))
            want = [i != k for i in range(len(f.starts))]
            assert verify_data(bad, f.starts, f.lengths).tolist() == want
            checked, _ = decode.plan(bad, f.starts, f.lengths)
            assert verify_data(bad, f.starts, f.lengths, checked).tolist() == want


def _read(reader: RecordReader, now: float = 0.0) -> list[bytes]:
    out = []
    for res in reader.read(now, lambda b, s, n: (None, None), lambda p, n: p):
        for s, n in zip(res.starts.tolist(), res.lengths.tolist(), strict=True):
            out.append(res.buf[s + records.HEADER : s + records.HEADER + n].tobytes())
    return out


def test_partial_record_is_not_yet(tmp_path) -> None:
    full = record(b"one") + record(b"two") + record(b"three")
    p = tmp_path / "f.tfevents"
    r = RecordReader(str(p))
    for cut in range(len(full) + 1):
        p.write_bytes(full[:cut])
        r = RecordReader(str(p))
        first = _read(r)
        p.write_bytes(full)
        assert first + _read(r) == [b"one", b"two", b"three"], cut


def test_record_larger_than_chunk(tmp_path) -> None:
    p = tmp_path / "f.tfevents"
    big = bytes(range(256)) * 100
    p.write_bytes(record(b"a") + record(big) + record(b"b"))
    assert _read(RecordReader(str(p), chunk_bytes=64)) == [b"a", big, b"b"]


def test_corrupt_data_is_held_for_grace_then_skipped(tmp_path) -> None:
    p = tmp_path / "f.tfevents"
    recs = [record(f"rec{i}".encode()) for i in range(5)]
    b = bytearray(b"".join(recs))
    at = len(recs[0]) + len(recs[1]) + records.HEADER
    b[at] ^= 0xFF
    p.write_bytes(bytes(b))
    reports = []
    r = RecordReader(str(p), corrupt_grace=10.0)

    def read(now):
        return [
            res.buf[s + 12 : s + 12 + n].tobytes()
            for res in r.read(now, lambda *a: (None, None), lambda p, n: p, reports.append)
            for s, n in zip(res.starts.tolist(), res.lengths.tolist(), strict=True)
        ]

    assert read(0.0) == [b"rec0", b"rec1"]
    assert read(5.0) == []  # still within grace: held, re-checked
    assert len(reports) == 1 and reports[0].offset == len(recs[0]) + len(recs[1])
    assert read(10.0) == [b"rec3", b"rec4"]
    assert r.corrupt_skipped == 1 and len(reports) == 1


def test_zero_filled_region_later_written_is_read_in_full(tmp_path) -> None:
    """NFS can show a not-yet-written region as zeros: nothing may be lost."""
    p = tmp_path / "f.tfevents"
    recs = [record(f"rec{i}".encode() * 3) for i in range(6)]
    good = b"".join(recs)
    head = len(recs[0]) + len(recs[1])
    p.write_bytes(good[:head] + bytes(len(good) - head))
    r = RecordReader(str(p), corrupt_grace=30.0)
    reports = []
    got = [
        res.buf[s + 12 : s + 12 + n].tobytes()
        for res in r.read(0.0, lambda *a: (None, None), lambda p, n: p, reports.append)
        for s, n in zip(res.starts.tolist(), res.lengths.tolist(), strict=True)
    ]
    assert len(reports) == 1 and reports[0].offset == head
    p.write_bytes(good)
    got += _read(r, now=1.0)
    assert got == [f"rec{i}".encode() * 3 for i in range(6)]
    assert r.corrupt_skipped == 0 and not r.holding


def test_bad_header_resyncs_to_next_record_after_grace(tmp_path) -> None:
    p = tmp_path / "f.tfevents"
    recs = [record(f"r{i}".encode()) for i in range(4)]
    b = bytearray(b"".join(recs))
    b[len(recs[0]) + 9] ^= 0x55  # the length CRC of record 1
    p.write_bytes(bytes(b))
    r = RecordReader(str(p), corrupt_grace=0.0)
    assert _read(r) == [b"r0", b"r2", b"r3"]
    assert r.corrupt_skipped == 1


def test_absurd_length_is_corrupt(tmp_path) -> None:
    head = struct.pack("<Q", 2**50)
    junk = head + struct.pack("<I", crc.masked_crc32c(head)) + b"zz"
    buf = padded(junk)
    got = frame(buf, 0, len(junk))
    assert got.status is Stop.CORRUPT and got.stop == 0
