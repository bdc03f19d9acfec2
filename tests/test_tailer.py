"""Following files as they grow, tear, break, move and vanish: each scalar exactly once."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import summary_pb2

from hjepa_watch.events import records
from hjepa_watch.events.discovery import discover, natural_key
from hjepa_watch.events.tailer import Tailer

from .conftest import ProtoWriter, read_all, same_points, tensor_value, tf2_tensor, write_torch_scalars


def _mixed_file(d: Path) -> bytes:
    """Fast-path and protobuf-path records, NaN, a histogram, a restart inside the file."""
    w = ProtoWriter(d)
    for step in range(40):
        w.event(step, summary_pb2.Summary.Value(tag=f"train/loss/h{step % 3}", simple_value=step * 0.1))
        if step % 7 == 0:
            w.event(step, tensor_value("train/lr", tf2_tensor(1e-3 * step), metadata=step == 0))
        if step % 11 == 0:
            histo = summary_pb2.HistogramProto(min=0, max=1, num=1, bucket_limit=[1], bucket=[1])
            w.event(step, summary_pb2.Summary.Value(tag="hist", histo=histo))
    w.event(41, summary_pb2.Summary.Value(tag="train/loss/h0", simple_value=float("nan")))
    for step in range(5):  # steps go back: a new segment
        w.event(step, summary_pb2.Summary.Value(tag="train/loss/h0", simple_value=-step))
    return Path(w.close()).read_bytes()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[bytes, list[tuple]]:
    d = tmp_path_factory.mktemp("mixed")
    data = _mixed_file(d)
    return data, read_all(d)


def _run_chunks(tmp: Path, data: bytes, cuts: list[int], chunk_bytes: int = 16 << 20) -> list[tuple]:
    run = tmp / "run"
    run.mkdir(parents=True, exist_ok=True)
    path = run / "events.out.tfevents.1.host.1.0"
    path.write_bytes(b"")
    t = Tailer([str(tmp)], corrupt_grace=0, chunk_bytes=chunk_bytes)
    t.scan()
    got: list[tuple] = []
    prev = 0
    for cut in [*cuts, len(data)]:
        with open(path, "ab") as f:
            f.write(data[prev:cut])
        prev = cut
        got += [tuple(p) for b in t.poll() for p in b.points()]
    assert t.stats.corrupt_records == 0
    return [("run", *p[1:]) for p in got]


def test_torn_write_at_every_byte_position(tmp_path, mixed) -> None:
    data, whole = mixed
    whole = [("run", *p[1:]) for p in whole]
    # Every byte of the first few records (file_version, fast, protobuf) and some later.
    positions = list(range(0, 400)) + list(range(len(data) - 200, len(data)))
    for i, cut in enumerate(positions):
        got = _run_chunks(tmp_path / str(i), data, [cut])
        assert same_points(got, whole), f"cut at byte {cut}"
        shutil.rmtree(tmp_path / str(i))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 4000), max_size=12), chunk=st.sampled_from([16, 100, 1000, 16 << 20]))
def test_any_split_into_appended_chunks_reads_like_whole(tmp_path_factory, mixed, cuts, chunk) -> None:
    data, whole = mixed
    cuts = sorted(min(c, len(data)) for c in cuts)
    got = _run_chunks(tmp_path_factory.mktemp("split"), data, cuts, chunk_bytes=chunk)
    assert same_points(got, [("run", *p[1:]) for p in whole])


def test_restart_in_new_file_is_a_new_segment(tmp_path) -> None:
    write_torch_scalars(tmp_path, [("loss", 1.0, s) for s in range(1, 101)])
    time.sleep(1.1)  # torch names files by the second
    write_torch_scalars(tmp_path, [("loss", 2.0, s) for s in range(1, 31)] + [("new", 0.0, 31)])
    pts = read_all(tmp_path)
    assert [p[5] for p in pts] == [0] * 100 + [1] * 31
    assert len(pts) == 131


def _tailer(tmp_path, notices) -> Tailer:
    t = Tailer([str(tmp_path)], corrupt_grace=0, on_notice=notices.append)
    t.scan()
    return t


def _points(t: Tailer) -> list[tuple]:
    return [tuple(p) for b in t.poll() for p in b.points()]


def test_truncated_file_is_read_again(tmp_path) -> None:
    path = write_torch_scalars(tmp_path, [("a", 1.0, 1), ("a", 2.0, 2)])
    notices = []
    t = _tailer(tmp_path, notices)
    assert len(_points(t)) == 2
    data = Path(path).read_bytes()
    with open(path, "r+b") as f:
        f.truncate(50)
    assert _points(t) == [] and [n.kind for n in notices] == ["new_run", "truncated"]
    Path(path).write_bytes(data)
    assert [p[4] for p in _points(t)] == [1.0, 2.0]


def test_replaced_by_extended_copy_continues(tmp_path) -> None:
    """An rsync or object-store re-upload: new inode, same bytes plus more."""
    path = write_torch_scalars(tmp_path / "src", [("a", float(i), i) for i in range(10)])
    data = Path(path).read_bytes()
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    dst = run / os.path.basename(path)
    dst.write_bytes(data[:400])
    notices = []
    t = _tailer(tmp_path / "logs", notices)
    first = _points(t)
    tmp = run / "upload.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, dst)
    second = _points(t)
    assert [p[4] for p in first + second] == [float(i) for i in range(10)]
    assert notices[-1].kind == "replaced" and "reading on" in notices[-1].message


def test_replaced_by_other_content_is_read_from_start(tmp_path) -> None:
    path = write_torch_scalars(tmp_path / "a", [("a", 1.0, 1)])
    other = write_torch_scalars(tmp_path / "b", [("b", 2.0, 1), ("b", 3.0, 2)])
    notices = []
    t = _tailer(tmp_path / "a", notices)
    assert [p[1] for p in _points(t)] == ["a"]
    shutil.copy(other, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)
    assert [p[1] for p in _points(t)] == ["b", "b"]
    assert "from the start" in notices[-1].message


def test_deleted_file_is_forgotten_and_points_kept(tmp_path) -> None:
    path = write_torch_scalars(tmp_path, [("a", 1.0, 1)])
    notices = []
    t = _tailer(tmp_path, notices)
    assert len(_points(t)) == 1
    os.remove(path)
    assert _points(t) == [] and notices[-1].kind == "deleted"
    assert t.stats.scalars == 1


def test_unreadable_file_warns_once_then_recovers(tmp_path, monkeypatch) -> None:
    """Permission denied (root ignores chmod, so the OS boundary is stubbed)."""
    write_torch_scalars(tmp_path, [("a", 1.0, 1)])
    notices = []
    t = _tailer(tmp_path, notices)
    real_open = open

    def denied(path, *a, **k):
        if "tfevents" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(records, "open", denied, raising=False)
    assert _points(t) == [] and _points(t) == []
    assert [n.kind for n in notices].count("unreadable") == 1
    assert "Permission denied" in notices[-1].message
    monkeypatch.undo()
    assert len(_points(t)) == 1


def test_empty_and_non_event_files(tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.out.tfevents.1.h.1.0").write_bytes(b"")
    (tmp_path / "run" / "notes.txt").write_text("hello")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "checkpoint.pt").write_bytes(b"\0" * 100)
    t = Tailer([str(tmp_path)], corrupt_grace=0)
    t.scan()
    assert _points(t) == [] and t.stats.runs == 1 and t.stats.files == 1


def test_symlink_loop_terminates(tmp_path) -> None:
    write_torch_scalars(tmp_path / "run", [("a", 1.0, 1)])
    os.symlink(tmp_path, tmp_path / "run" / "loop")
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    runs = discover(str(tmp_path))
    assert [r.name for r in runs] == ["run"]


def test_file_order_is_numeric_not_lexicographic(tmp_path) -> None:
    names = [f"events.out.tfevents.1700000000.host.{pid}.{c}" for pid, c in [(9, 0), (10, 0), (9, 10), (9, 2)]]
    assert sorted(names, key=natural_key) == [
        "events.out.tfevents.1700000000.host.9.0",
        "events.out.tfevents.1700000000.host.9.2",
        "events.out.tfevents.1700000000.host.9.10",
        "events.out.tfevents.1700000000.host.10.0",
    ]


def test_run_created_after_start_and_nested_runs(tmp_path) -> None:
    write_torch_scalars(tmp_path / "a", [("x", 1.0, 1)])
    t = Tailer([str(tmp_path)], corrupt_grace=0)
    t.scan()
    assert len(_points(t)) == 1
    write_torch_scalars(tmp_path / "b" / "nested", [("y", 2.0, 1)])
    t.scan()
    assert [(p[0], p[1]) for p in _points(t)] == [("b/nested", "y")]


def test_corrupt_record_reported_once_with_file_and_offset(tmp_path) -> None:
    path = write_torch_scalars(tmp_path, [("a", float(i), i) for i in range(20)])
    b = bytearray(Path(path).read_bytes())
    b[300] ^= 0x40
    Path(path).write_bytes(bytes(b))
    notices = []
    pts = read_all(tmp_path, on_notice=notices.append)
    corrupt = [n for n in notices if n.kind == "corrupt"]
    assert len(corrupt) == 1 and path in corrupt[0].message and "offset" in corrupt[0].message
    assert len(pts) == 19


def test_several_logdirs_get_prefixed_run_names(tmp_path) -> None:
    write_torch_scalars(tmp_path / "one" / "r", [("x", 1.0, 1)])
    write_torch_scalars(tmp_path / "two" / "r", [("x", 1.0, 1)])
    pts = read_all([tmp_path / "one", tmp_path / "two"])
    assert sorted(p[0] for p in pts) == ["one/r", "two/r"]


def test_many_runs_hold_no_file_descriptors(tmp_path) -> None:
    """Files are opened per read and closed: thousands of runs cannot exhaust descriptors."""
    src = write_torch_scalars(tmp_path / "src", [("a", 1.0, 1)])
    for i in range(300):
        run = tmp_path / "logs" / f"r{i}"
        run.mkdir(parents=True)
        shutil.copy(src, run / os.path.basename(src))
    before = len(os.listdir("/proc/self/fd"))
    t = Tailer([str(tmp_path / "logs")], corrupt_grace=0)
    t.scan()
    assert len(_points(t)) == 300
    assert len(os.listdir("/proc/self/fd")) == before


def test_rewritten_between_polls_is_read_again(tmp_path) -> None:
    """Truncated and written past the old offset before the next poll: same inode, bigger."""
    path = write_torch_scalars(tmp_path / "a", [("a", 1.0, 1), ("a", 2.0, 2)])
    other = Path(write_torch_scalars(tmp_path / "b", [("b", float(i), i) for i in range(10)])).read_bytes()
    notices = []
    t = _tailer(tmp_path / "a", notices)
    assert len(_points(t)) == 2
    with open(path, "r+b") as f:  # in place: the inode stays
        f.truncate(0)
        f.write(other)
    assert [p[1] for p in _points(t)] == ["b"] * 10
    assert notices[-1].kind == "truncated" and "rewritten" in notices[-1].message


def test_chunks_without_any_fast_path_record(tmp_path) -> None:
    """Only long records (200-character tags): every chunk takes the protobuf path."""
    rows = [("t" * 200 + str(i % 3), float(i), i) for i in range(30)]
    write_torch_scalars(tmp_path / "run", rows)
    for chunk in (64, 300, 4 << 20):
        t = Tailer([str(tmp_path)], corrupt_grace=0, chunk_bytes=chunk)
        t.scan()
        assert [(p[1], p[4]) for p in _points(t)] == [(r[0], r[1]) for r in rows]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_file_never_yields_a_wrong_or_repeated_scalar(tmp_path_factory, mixed, data) -> None:
    """Random flips, zero-fills and cuts: reading never fails, and what it yields is a
    subsequence of the true scalars (every damaged record lost, every other one kept once)."""
    raw, whole = mixed
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(b) - 1))
        if data.draw(st.booleans()):
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        else:
            n = data.draw(st.integers(1, 40))
            b[i : i + n] = bytes(len(b[i : i + n]))  # a zero-filled region
    del b[data.draw(st.integers(len(b) // 2, len(b))) :]
    d = tmp_path_factory.mktemp("damaged")
    (d / "run").mkdir()
    (d / "run" / "events.out.tfevents.1.h.1.0").write_bytes(bytes(b))
    got = [(p[1], p[2], p[3]) for p in read_all(d)]
    truth = [(p[1], p[2], p[3]) for p in whole]
    it = iter(truth)
    assert all(any(g == t for t in it) for g in got), "not a subsequence of the true scalars"


def test_discovery_relists_only_changed_directories(tmp_path) -> None:
    from hjepa_watch.events.discovery import Discoverer

    write_torch_scalars(tmp_path / "a", [("x", 1.0, 1)])
    d = Discoverer(str(tmp_path))
    first = d.runs()
    assert [r.name for r in first] == ["a"]
    again = d.runs()
    assert again[0] is first[0]  # unchanged: the cached listing
    time.sleep(1.1)
    write_torch_scalars(tmp_path / "a", [("x", 2.0, 2)])  # a second file in the same run
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "events.out.tfevents.1.h.1.0").write_bytes(b"")
    runs = d.runs()
    assert [r.name for r in runs] == ["a", "b/c"] and len(runs[0].files) == 2
    shutil.rmtree(tmp_path / "b")
    assert [r.name for r in d.runs()] == ["a"]
