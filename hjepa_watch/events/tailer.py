"""Following every event file of every run under one or more LOGDIRs.

:class:`Tailer` turns the files into :class:`ScalarBatch` es: it discovers runs,
keeps one :class:`~hjepa_watch.events.records.RecordReader` per file, decodes and
assigns segments, and copes with what happens to files on real systems: replaced
(rsync, S3/GCS re-upload: noticed by inode, kept when the old bytes are still
there), truncated (size went down: read again from the start), deleted,
unreadable (reported once, retried), empty. It holds no file open between polls.

It does not wait or watch: :mod:`hjepa_watch.events.watch` says when to poll.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from hjepa_watch.events import decode as _decode
from hjepa_watch.events.decode import ScalarPoint
from hjepa_watch.events.discovery import Discoverer, logdir_prefixes
from hjepa_watch.events.records import CorruptReport, RecordReader
from hjepa_watch.events.segments import SegmentTracker

_FINGERPRINT = 32


@dataclass
class ScalarBatch:
    """Scalars of one run read from one file in one step, in file order.

    Attributes:
        run: run name.
        path: the event file.
        tags: the run's tag table (``tag_id`` indexes it).
        tag_id, step, wall_time, value, segment: one entry per scalar.
        end_offset: the file offset the batch was read up to.
    """

    run: str
    path: str
    tags: list[str]
    tag_id: np.ndarray
    step: np.ndarray
    wall_time: np.ndarray
    value: np.ndarray
    segment: np.ndarray
    end_offset: int

    def __len__(self) -> int:
        return len(self.step)

    def points(self) -> Iterator[ScalarPoint]:
        """The scalars as :class:`ScalarPoint` s (convenient, not fast)."""
        tags = self.tags
        for t, s, w, v, g in zip(
            self.tag_id.tolist(),
            self.step.tolist(),
            self.wall_time.tolist(),
            self.value.tolist(),
            self.segment.tolist(),
            strict=True,
        ):
            yield ScalarPoint(self.run, tags[t], s, w, v, g)


@dataclass
class Notice:
    """Something about the input worth one line in the log.

    Attributes:
        kind: ``corrupt``, ``unreadable``, ``replaced``, ``truncated``, ``deleted``,
            ``new_run`` or ``logdir``.
        path: the file or directory concerned.
        message: one line, for people.
    """

    kind: str
    path: str
    message: str


@dataclass
class IngestStats:
    """Counters over everything read so far."""

    runs: int = 0
    files: int = 0
    scalars: int = 0
    corrupt_records: int = 0
    bytes_read: int = 0
    skipped: Counter = field(default_factory=Counter)


@dataclass
class _File:
    reader: RecordReader
    ino: tuple[int, int] | None = None
    head: bytes = b""
    tail: bytes = b""


@dataclass
class _Run:
    name: str
    path: str
    decoder: _decode.RunDecoder = field(default_factory=_decode.RunDecoder)
    segments: SegmentTracker = field(default_factory=SegmentTracker)
    files: dict[str, _File] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    listed: object = None  # the discovery listing last merged in


class Tailer:
    """Reads new scalars from every event file of every run under the LOGDIRs.

    Args:
        logdirs: directories to follow.
        corrupt_grace: seconds a corrupt region is re-checked before reading skips
            it (0 for offline replay, where nothing more will be written).
        clock: monotonic time source (injected for tests).
        on_notice: receives a :class:`Notice` for each new condition (once each).
        chunk_bytes: bytes read per step (bounds memory).
    """

    def __init__(
        self,
        logdirs: Sequence[str],
        *,
        corrupt_grace: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_notice: Callable[[Notice], None] | None = None,
        chunk_bytes: int = 4 << 20,
    ) -> None:
        self.logdirs = [os.path.abspath(d) for d in logdirs]
        self._prefixes = logdir_prefixes(self.logdirs)
        self._discoverers = [Discoverer(d, p, self._warning) for d, p in zip(self.logdirs, self._prefixes, strict=True)]
        self.corrupt_grace = corrupt_grace
        self.clock = clock
        self.on_notice = on_notice
        self.chunk_bytes = chunk_bytes
        self.runs: dict[str, _Run] = {}
        self._by_path: dict[str, _Run] = {}
        self._warned: set[str] = set()
        self._scalars = 0
        self._bytes = 0
        self._corrupt_forgotten = 0  # corrupt regions of files deleted since

    # -- notices -------------------------------------------------------------

    def report(self, kind: str, path: str, message: str, key: str | None = None) -> None:
        """Pass a :class:`Notice` to ``on_notice``; with ``key``, only once until cleared."""
        if key is not None:
            if key in self._warned:
                return
            self._warned.add(key)
        if self.on_notice is not None:
            self.on_notice(Notice(kind, path, message))

    def _warning(self, key: str, message: str) -> None:
        self.report("unreadable", key.split(":", 1)[-1], message, key)

    # -- discovery -----------------------------------------------------------

    def scan(self) -> None:
        """Find runs and files that appeared since the last scan.

        Raises:
            hjepa_watch.events.discovery.LogdirError: a LOGDIR is missing or unreadable.
        """
        for discoverer in self._discoverers:
            for found in discoverer.runs():
                run = self.runs.get(found.name)
                if run is None:
                    run = self.runs[found.name] = _Run(found.name, found.path)
                    self.report("new_run", found.path, f"new run {found.name}")
                if run.listed is found:
                    continue  # unchanged since the last scan
                run.listed = found
                for path in found.files:
                    if path not in run.files:
                        run.files[path] = _File(RecordReader(path, 0, self.corrupt_grace, self.chunk_bytes))
                        self._by_path[path] = run
                # Creation order, with files we still follow that vanished from the listing kept.
                listed = set(found.files)
                run.order = list(found.files) + [p for p in run.order if p not in listed]

    def knows(self, path: str) -> bool:
        """True if ``path`` is an event file being followed."""
        return path in self._by_path

    # -- reading -------------------------------------------------------------

    def poll(self, paths: Collection[str] | None = None) -> Iterator[ScalarBatch]:
        """Yield the new scalars of all files (or of ``paths`` only).

        A batch counts as consumed when the next one is requested or the generator
        ends; one that was handed out but not consumed is handed out again.
        """
        for run in list(self.runs.values()):
            for path in list(run.order):
                if paths is not None and path not in paths:
                    continue
                f = run.files.get(path)
                if f is not None:
                    yield from self._poll_file(run, path, f)

    def _poll_file(self, run: _Run, path: str, f: _File) -> Iterator[ScalarBatch]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._forget(run, path)
            return
        except OSError as e:
            self.report("unreadable", path, f"cannot stat {path}: {e.strerror}; will retry", f"file:{path}")
            return
        ino = (st.st_dev, st.st_ino)
        if f.ino is not None and ino != f.ino:
            self._replaced(path, f, st.st_size)
        elif st.st_size < f.reader.offset:
            self._restart(path, f, "truncated", f"{path} was truncated; reading it again from the start")
        elif st.st_size > f.reader.offset and not self._tail_intact(path, f):
            # Truncated and written past our offset again between two polls (e.g. a
            # tensorboardX writer starting in the same second under the same name).
            self._restart(path, f, "truncated", f"{path} was rewritten; reading it again from the start")
        f.ino = ino
        reader = f.reader
        if st.st_size == reader.offset:
            return
        try:
            for res in reader.read(self.clock(), _decode.plan, _decode.cut, self._on_corrupt, st.st_size):
                cols = run.decoder.decode(res)
                before = run.segments
                run.segments = SegmentTracker(before.segment, before.last_step.copy(), before.tag_segment.copy())
                seg = run.segments.assign(cols.tag_id, cols.step)
                if res.base == 0 and not f.head:
                    f.head = res.buf[: min(_FINGERPRINT, res.end)].tobytes()
                lo = res.end - res.base
                f.tail = res.buf[max(lo - _FINGERPRINT, 0) : lo].tobytes()
                batch = ScalarBatch(
                    run.name, path, run.decoder.tags, cols.tag_id, cols.step, cols.wall_time, cols.value, seg, res.end
                )
                try:
                    yield batch
                except GeneratorExit:
                    run.segments = before  # not consumed: it will be read again
                    raise
                self._scalars += len(batch)
                self._bytes += res.end - res.base
            self._warned.discard(f"file:{path}")
        except FileNotFoundError:
            self._forget(run, path)
        except OSError as e:
            self.report("unreadable", path, f"cannot read {path}: {e.strerror}; will retry", f"file:{path}")

    def _on_corrupt(self, report: CorruptReport) -> None:
        action = "skipped" if self.corrupt_grace <= 0 else f"re-checking for {self.corrupt_grace:g}s before skipping"
        self.report(
            "corrupt",
            report.path,
            f"{report.path}: corrupt record at offset {report.offset} ({report.reason}); {action}",
        )

    def _forget(self, run: _Run, path: str) -> None:
        gone = run.files.pop(path, None)
        if gone is not None:
            self._corrupt_forgotten += gone.reader.corrupt_skipped
        self._by_path.pop(path, None)
        run.order = [p for p in run.order if p != path]
        self.report("deleted", path, f"{path} was deleted; its scalars read so far are kept")

    def _restart(self, path: str, f: _File, kind: str, message: str) -> None:
        f.reader = RecordReader(path, 0, self.corrupt_grace, self.chunk_bytes, f.reader.corrupt_skipped)
        f.head = f.tail = b""
        self.report(kind, path, message)

    @staticmethod
    def _tail_intact(path: str, f: _File) -> bool:
        """The bytes just before the committed offset are still those we read."""
        if not f.tail:
            return True
        try:
            with open(path, "rb", buffering=0) as fh:
                fh.seek(f.reader.offset - len(f.tail))
                return fh.read(len(f.tail)) == f.tail
        except OSError:
            return True  # the read that follows reports it

    def _replaced(self, path: str, f: _File, size: int) -> None:
        """A new inode under the same name: keep the offset if the old bytes are still there."""
        offset = f.reader.offset
        same = False
        if size >= offset and f.head:
            try:
                with open(path, "rb") as fh:
                    head = fh.read(len(f.head))
                    fh.seek(offset - len(f.tail))
                    same = head == f.head and fh.read(len(f.tail)) == f.tail
            except OSError:
                same = False
        if same:
            self.report("replaced", path, f"{path} was replaced by a copy that extends it; reading on at {offset}")
        else:
            self._restart(path, f, "replaced", f"{path} was replaced by different content; reading it from the start")

    # -- state ---------------------------------------------------------------

    def file_record(self, path: str, offset: int) -> dict:
        """A file's position to persist, as of ``offset`` (a batch's ``end_offset``)."""
        run = self._by_path[path]
        f = run.files[path]
        dev, ino = f.ino if f.ino is not None else (None, None)
        return {
            "path": path,
            "run": run.name,
            "offset": offset,
            "dev": dev,
            "ino": ino,
            "head": f.head,
            "tail": f.tail,
            "corrupt_skipped": f.reader.corrupt_skipped,
        }

    def run_record(self, name: str) -> dict:
        """A run's decoder and segment state to persist."""
        run = self.runs[name]
        return {
            "name": name,
            "path": run.path,
            "plugins": run.decoder.plugins,
            "segments": run.segments.to_state(run.decoder.tags),
        }

    def restore(self, runs: list[dict], files: list[dict]) -> None:
        """Resume from persisted records (before the first :meth:`scan`)."""
        for r in runs:
            run = self.runs[r["name"]] = _Run(r["name"], r["path"])
            run.decoder.plugins.update(r.get("plugins", {}))
            run.segments = SegmentTracker.from_state(r["segments"], run.decoder.tag_id)
        for f in files:
            run = self.runs.get(f["run"])
            if run is None:
                run = self.runs[f["run"]] = _Run(f["run"], os.path.dirname(f["path"]))
            reader = RecordReader(f["path"], f["offset"], self.corrupt_grace, self.chunk_bytes, f["corrupt_skipped"])
            ino = (f["dev"], f["ino"]) if f["ino"] is not None else None
            run.files[f["path"]] = _File(reader, ino, f["head"] or b"", f["tail"] or b"")
            run.order.append(f["path"])
            self._by_path[f["path"]] = run

    @property
    def stats(self) -> IngestStats:
        """Counters over everything read so far."""
        s = IngestStats(
            runs=len(self.runs), scalars=self._scalars, bytes_read=self._bytes, corrupt_records=self._corrupt_forgotten
        )
        for run in self.runs.values():
            s.files += len(run.files)
            s.skipped.update(run.decoder.skipped.counts)
            for f in run.files.values():
                s.corrupt_records += f.reader.corrupt_skipped + int(f.reader.holding)
        return s
