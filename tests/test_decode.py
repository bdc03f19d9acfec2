"""Every scalar encoding writers use, through the whole ingest path."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from .conftest import (
    ProtoWriter,
    read_all,
    same_points,
    scalars_metadata,
    tensor_value,
    tf2_tensor,
    write_torch_scalars,
)


def _by_tag(points):
    out: dict[str, list[tuple[int, float]]] = {}
    for _run, tag, step, _wt, value, _seg in points:
        out.setdefault(tag, []).append((step, value))
    return out


def test_torch_simple_value_and_new_style(tmp_path) -> None:
    write_torch_scalars(tmp_path / "a", [("loss", 0.5, 1), ("loss", 0.25, 2)])
    write_torch_scalars(tmp_path / "b", [("loss", 0.5, 1), ("loss", 0.25, 2)], new_style=True)
    pts = read_all(tmp_path)
    assert _by_tag([p for p in pts if p[0] == "a"]) == {"loss": [(1, 0.5), (2, 0.25)]}
    assert _by_tag([p for p in pts if p[0] == "b"]) == {"loss": [(1, 0.5), (2, 0.25)]}


def test_nan_and_inf_are_kept(tmp_path) -> None:
    write_torch_scalars(tmp_path, [("g", float("nan"), 1), ("g", float("inf"), 2), ("g", float("-inf"), 3)])
    vals = [p[4] for p in read_all(tmp_path)]
    assert math.isnan(vals[0]) and vals[1] == math.inf and vals[2] == -math.inf


def test_tf2_tensor_content_and_other_dtypes(tmp_path) -> None:
    w = ProtoWriter(tmp_path)
    w.event(1, tensor_value("f32", tf2_tensor(1.5), metadata=True))
    w.event(1, tensor_value("f64", tf2_tensor(2.25, "float64"), metadata=True))
    w.event(1, tensor_value("i64", tf2_tensor(7, "int64"), metadata=True))
    dv = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=tensor_shape_pb2.TensorShapeProto())
    dv.double_val.append(3.5)
    iv = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=tensor_shape_pb2.TensorShapeProto())
    iv.int_val.append(-4)
    hv = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF, tensor_shape=tensor_shape_pb2.TensorShapeProto())
    hv.half_val.append(int(np.array([0.5], np.float16).view(np.uint16)[0]))
    w.event(2, tensor_value("dv", dv, True), tensor_value("iv", iv, True), tensor_value("hv", hv, True))
    w.close()
    got = _by_tag(read_all(tmp_path))
    assert got == {
        "f32": [(1, 1.5)],
        "f64": [(1, 2.25)],
        "i64": [(1, 7.0)],
        "dv": [(2, 3.5)],
        "iv": [(2, -4.0)],
        "hv": [(2, 0.5)],
    }


def test_plugin_metadata_remembered_from_first_value(tmp_path) -> None:
    """TF1 writers send metadata only with a tag's first value, and files of a run share it."""
    w = ProtoWriter(tmp_path, suffix=".1")
    w.event(1, tensor_value("loss", tf2_tensor(1.0), metadata=True))
    w.event(2, tensor_value("loss", tf2_tensor(0.5), metadata=False))
    w.close()
    w = ProtoWriter(tmp_path, suffix=".2")
    w.event(3, tensor_value("loss", tf2_tensor(0.25), metadata=False))
    w.event(3, tensor_value("no_plugin", tf2_tensor(9.0), metadata=False))
    w.close()
    assert _by_tag(read_all(tmp_path)) == {"loss": [(1, 1.0), (2, 0.5), (3, 0.25)]}


def test_non_scalars_are_counted_and_skipped(tmp_path) -> None:
    from hjepa_watch.events.tailer import Tailer

    w = ProtoWriter(tmp_path)
    histo = summary_pb2.HistogramProto(min=0, max=1, num=2, sum=1, sum_squares=1, bucket_limit=[1], bucket=[2])
    img = summary_pb2.Summary.Image(height=1, width=1, colorspace=1, encoded_image_string=b"png")
    text_meta = summary_pb2.SummaryMetadata()
    text_meta.plugin_data.plugin_name = "text"
    text = summary_pb2.Summary.Value(tag="notes", metadata=text_meta, tensor=tensor_pb2.TensorProto(dtype=7))
    w.event(1, summary_pb2.Summary.Value(tag="h", histo=histo), summary_pb2.Summary.Value(tag="i", image=img), text)
    w.event(1, summary_pb2.Summary.Value(tag="x", simple_value=1.0))
    w.raw(event_pb2.Event(wall_time=1.0, step=1, log_message=event_pb2.LogMessage(message="hi")))
    w.close()
    t = Tailer([str(tmp_path)], corrupt_grace=0)
    t.scan()
    pts = [p for b in t.poll() for p in b.points()]
    assert [(p.tag, p.value) for p in pts] == [("x", 1.0)]
    assert t.stats.skipped == {"histogram": 1, "image": 1, "text": 1, "file_version": 1, "log_message": 1}


def test_several_values_per_event_keep_file_order(tmp_path) -> None:
    w = ProtoWriter(tmp_path)
    w.event(1, summary_pb2.Summary.Value(tag="a", simple_value=1.0))
    w.event(
        2,
        summary_pb2.Summary.Value(tag="b", simple_value=2.0),
        summary_pb2.Summary.Value(tag="c", simple_value=3.0, metadata=scalars_metadata()),
    )
    w.event(3, summary_pb2.Summary.Value(tag="a", simple_value=4.0))
    w.close()
    assert [(p[1], p[2], p[4]) for p in read_all(tmp_path)] == [
        ("a", 1, 1.0),
        ("b", 2, 2.0),
        ("c", 2, 3.0),
        ("a", 3, 4.0),
    ]


def test_fast_and_slow_paths_agree_with_tensorboard(tmp_path) -> None:
    """Long tags, huge and zero steps, odd values: compared with tensorboard's own loader."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    rows = [("t" * 120, 1.0, 0), ("t" * 130, 2.0, 1), ("s", 3.0, 2**34), ("s", 4.0, 2**36), ("s", 0.0, 5)]
    rows += [(f"tag/{i % 7}", float(i) / 3, i) for i in range(300)]
    path = write_torch_scalars(tmp_path, rows)
    want = [
        (v.tag, e.step, e.wall_time, v.simple_value)
        for e in LegacyEventFileLoader(path).Load()
        for v in e.summary.value
    ]
    got = [(p[1], p[2], p[3], p[4]) for p in read_all(tmp_path)]
    assert got == [(t, s, w, float(np.float32(v))) for t, s, w, v in want]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=140),
            st.one_of(st.integers(0, 2**40), st.integers(-5, -1)),
            st.floats(width=32, allow_nan=True, allow_infinity=True),
            st.floats(min_value=0, max_value=4e9),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_random_simple_values_match_tensorboard(tmp_path_factory, events) -> None:
    """Any tag (unicode, long), step (0, huge, negative), value and wall time: both paths agree."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    d = tmp_path_factory.mktemp("rand")
    w = ProtoWriter(d)
    for tag, step, value, wall in events:
        w.event(step, summary_pb2.Summary.Value(tag=tag, simple_value=value), wall_time=wall)
    path = w.close()
    want = [
        (v.tag, e.step, e.wall_time, float(np.float32(v.simple_value)))
        for e in LegacyEventFileLoader(path).Load()
        for v in e.summary.value
    ]
    got = [(p[1], p[2], p[3], p[4]) for p in read_all(d)]
    assert same_points(got, want)


def test_add_scalars_and_add_hparams_make_sub_runs(tmp_path) -> None:
    """torch writes one sub-run per add_scalars key and one per add_hparams call."""
    from hjepa_watch.events.tailer import Tailer

    from .conftest import torch_writer

    w = torch_writer(tmp_path / "run")
    w.add_scalars("loss", {"a": 1.0, "b": 2.0}, 1)
    w.add_hparams({"lr": 0.1}, {"hp/acc": 0.5})
    w.add_histogram("h", np.arange(10.0), 1)
    w.add_text("t", "hello", 1)
    w.close()
    t = Tailer([str(tmp_path)], corrupt_grace=0)
    t.scan()
    pts = sorted((p.run.split("/")[1], p.tag, p.value) for b in t.poll() for p in b.points())
    assert [p[1:] for p in pts] == [("hp/acc", 0.5), ("loss", 1.0), ("loss", 2.0)]
    assert {p[0] for p in pts[1:]} == {"loss_a", "loss_b"}
    assert t.stats.skipped["hparams"] == 3 and t.stats.skipped["histogram"] == 1 and t.stats.skipped["text"] == 1
