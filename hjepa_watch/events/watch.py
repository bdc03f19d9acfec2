"""Live mode: when to read. inotify (watchdog) for low latency, polling as the floor.

inotify never fires for writes made on another NFS/CIFS/SSHFS host, and a watch can
fail to be set (inotify limits, unsupported file systems), so every
``poll_interval`` seconds everything is stat'ed and re-scanned regardless; in
between, watchdog events wake the loop at once for the files they name. Waiting is
blocking (no busy loop); the observer holds one inotify descriptor, never one per
file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hjepa_watch.events.discovery import LogdirError, is_event_file
from hjepa_watch.events.tailer import Notice, ScalarBatch, Tailer


@dataclass
class Changes:
    """What woke the loop.

    Attributes:
        paths: event files that were written, created or moved into place.
        rescan: a directory appeared or moved, or a file the tailer does not know.
    """

    paths: set[str] = field(default_factory=set)
    rescan: bool = False


class ChangeWatcher:
    """Collects file-system events from watchdog and hands them out in batches.

    Args:
        logdirs: directories to watch recursively.
        on_notice: told once if inotify cannot be used (polling carries on alone).
    """

    def __init__(self, logdirs: Sequence[str], on_notice: Callable[[Notice], None] | None = None) -> None:
        self.logdirs = list(logdirs)
        self.on_notice = on_notice
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._changes = Changes()
        self._observer = None
        self._watched: set[str] = set()

    def start(self) -> bool:
        """Start watching; False (and a notice) when inotify is not available."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return False
        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                watcher._on_event(event)

        self._handler = _Handler()
        self._observer = Observer()
        self._observer.daemon = True
        self.rewatch()
        try:
            self._observer.start()
        except OSError as e:
            self._tell(f"inotify unavailable ({e.strerror or e}); polling only")
            self._observer = None
            return False
        return True

    def rewatch(self) -> None:
        """Watch LOGDIRs that exist now (one may appear after start, or come back)."""
        if self._observer is None:
            return
        for d in self.logdirs:
            if d in self._watched or not os.path.isdir(d):
                continue
            try:
                self._observer.schedule(self._handler, d, recursive=True)
                self._watched.add(d)
            except OSError as e:  # ENOSPC: the inotify watch limit
                self._tell(f"cannot watch {d} with inotify ({e.strerror or e}); polling it")

    def _tell(self, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(Notice("watch", "", message))

    def _on_event(self, event) -> None:
        kind = event.event_type
        paths = [event.src_path, getattr(event, "dest_path", "")]
        with self._lock:
            if event.is_directory:
                if kind in ("created", "moved", "deleted"):
                    self._changes.rescan = True
                    if kind == "deleted" and event.src_path in self._watched:
                        self._watched.discard(event.src_path)
            else:
                for p in paths:
                    p = os.fsdecode(p)
                    if p and is_event_file(os.path.basename(p)):
                        self._changes.paths.add(p)
                        if kind in ("created", "moved"):
                            self._changes.rescan = True
            if self._changes.paths or self._changes.rescan:
                self._wake.set()

    def wait(self, timeout: float) -> Changes:
        """Block until something changes or ``timeout`` seconds pass; return what changed."""
        self._wake.wait(max(timeout, 0.0))
        with self._lock:
            out, self._changes = self._changes, Changes()
            self._wake.clear()
        return out

    def stop(self) -> None:
        """Stop the observer thread."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None


class Rescanner:
    """Scans for runs; a LOGDIR that disappears is reported once and waited for.

    Deleted or unmounted directories are normal for a daemon that runs for weeks:
    what was read is kept, and when the directory comes back it is watched again.
    """

    def __init__(self, tailer: Tailer, watcher: ChangeWatcher) -> None:
        self.tailer, self.watcher = tailer, watcher
        self.missing: set[str] = set()

    def __call__(self) -> None:
        """Scan once."""
        try:
            self.tailer.scan()
        except LogdirError as e:
            if str(e) not in self.missing:
                self.missing.add(str(e))
                self.tailer.report("logdir", "", f"{e}; waiting for it to come back")
            return
        if self.missing:
            self.tailer.report("logdir", "", "log directory is back")
            self.missing.clear()
            self.watcher.rewatch()


def follow(
    tailer: Tailer,
    *,
    poll_interval: float = 2.0,
    stop: threading.Event | None = None,
    use_inotify: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[ScalarBatch]:
    """Yield scalar batches as they are written, until ``stop`` is set.

    Args:
        tailer: the tailer to drive (its ``on_notice`` receives watch notices too).
        poll_interval: seconds between full stat-and-scan passes.
        stop: set it to end the generator (checked at least every ``poll_interval``).
        use_inotify: False for polling only.
        clock: monotonic time source.
    """
    stop = stop or threading.Event()
    watcher = ChangeWatcher(tailer.logdirs, tailer.on_notice)
    if use_inotify:
        watcher.start()
    scan = Rescanner(tailer, watcher)

    try:
        scan()
        yield from tailer.poll()
        next_full = clock() + poll_interval
        while not stop.is_set():
            # Wake at least twice a second to notice ``stop``; that costs nothing measurable.
            changes = watcher.wait(min(next_full - clock(), 0.5))
            if stop.is_set():
                break
            now = clock()
            if now >= next_full:
                scan()
                yield from tailer.poll()
                next_full = now + poll_interval
                continue
            if changes.rescan or any(not tailer.knows(p) for p in changes.paths):
                scan()
            if changes.paths:
                yield from tailer.poll(changes.paths)
    finally:
        watcher.stop()
