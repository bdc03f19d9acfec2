"""Fixtures that write real event files with real writers.

* torch's ``SummaryWriter`` (``add_scalar``, and ``new_style=True`` tensors);
* tensorboard's own ``EventFileWriter`` with Event/Summary protos built by hand, for
  TF2-style tensor scalars (``tensor_content``), double/int tensors, metadata sent
  only with a tag's first value, histograms, images and text.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from hjepa_watch.events.tailer import Tailer

UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "upstream-hjepa-logs"


def torch_writer(logdir: str | Path):
    """A torch SummaryWriter (imported lazily: the daemon side must not need torch)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(logdir))


def write_torch_scalars(logdir: str | Path, rows: Iterable[tuple[str, float, int]], new_style: bool = False) -> str:
    """Write (tag, value, step) rows with torch's add_scalar; return the file path."""
    w = torch_writer(logdir)
    for tag, value, step in rows:
        w.add_scalar(tag, value, step, new_style=new_style)
    w.close()
    return newest_event_file(logdir)


def newest_event_file(logdir: str | Path) -> str:
    """The newest event file directly in ``logdir``."""
    return max(glob.glob(os.path.join(str(logdir), "*tfevents*")), key=os.path.getmtime)


def scalars_metadata() -> summary_pb2.SummaryMetadata:
    """Plugin metadata marking a tensor as a scalar."""
    m = summary_pb2.SummaryMetadata()
    m.plugin_data.plugin_name = "scalars"
    return m


def tensor_value(tag: str, tensor: tensor_pb2.TensorProto, metadata: bool) -> summary_pb2.Summary.Value:
    """A Summary.Value holding ``tensor``, with scalars metadata if asked."""
    v = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if metadata:
        v.metadata.CopyFrom(scalars_metadata())
    return v


def tf2_tensor(value: float, dtype: str = "float32") -> tensor_pb2.TensorProto:
    """A rank-0 tensor as TF2's tf.summary.scalar writes it: raw bytes in tensor_content."""
    dt = {"float32": types_pb2.DT_FLOAT, "float64": types_pb2.DT_DOUBLE, "int64": types_pb2.DT_INT64}[dtype]
    return tensor_pb2.TensorProto(
        dtype=dt,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        tensor_content=np.array(value, dtype=dtype).tobytes(),
    )


class ProtoWriter:
    """tensorboard's EventFileWriter, writing Events built from protos."""

    def __init__(self, logdir: str | Path, suffix: str = "") -> None:
        self.w = EventFileWriter(str(logdir), filename_suffix=suffix)
        self.path = self.w.get_logdir()

    def event(self, step: int, *values: summary_pb2.Summary.Value, wall_time: float | None = None) -> None:
        """Write one event holding ``values``."""
        self.w.add_event(
            event_pb2.Event(
                wall_time=time.time() if wall_time is None else wall_time,
                step=step,
                summary=summary_pb2.Summary(value=list(values)),
            )
        )

    def raw(self, event: event_pb2.Event) -> None:
        """Write any event."""
        self.w.add_event(event)

    def close(self) -> str:
        """Close and return the file path."""
        self.w.close()
        return newest_event_file(self.path)


def read_all(logdirs, **kw) -> list[tuple]:
    """Every scalar under ``logdirs`` as (run, tag, step, wall_time, value, segment) tuples."""
    t = Tailer([str(d) for d in (logdirs if isinstance(logdirs, list) else [logdirs])], corrupt_grace=0.0, **kw)
    t.scan()
    return [tuple(p) for b in t.poll() for p in b.points()]


def same_points(a: list[tuple], b: list[tuple]) -> bool:
    """Equal, with NaN equal to NaN."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and isinstance(v, float) and np.isnan(u) and np.isnan(v):
                continue
            if u != v:
                return False
    return True


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test advances."""
    return FakeClock()


@pytest.fixture
def upstream() -> Path:
    """The public H-JEPA trainer's real logs; skip when ../shared is absent."""
    if not UPSTREAM.is_dir():
        pytest.skip("../shared/data/upstream-hjepa-logs is absent")
    return UPSTREAM
