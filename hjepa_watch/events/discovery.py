"""Finding runs and their event files under a log directory.

A run is a directory that directly holds a file whose name contains ``tfevents``
(TensorBoard's rule); its name is its path relative to LOGDIR (``.`` for LOGDIR
itself). Every event file of a run is followed, in the order the writers created
them: names are compared with their digit runs as numbers, because pid and counter
are not zero-padded and plain string order puts ``.10.`` before ``.9.``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

EVENT_MARK = "tfevents"
_DIGITS = re.compile(r"(\d+)")


class LogdirError(Exception):
    """A log directory is missing or cannot be read (a permanent condition)."""


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs numerically: ``a.9.x`` < ``a.10.x``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name) if part)


def is_event_file(name: str) -> bool:
    """True for names TensorBoard treats as event files."""
    return EVENT_MARK in name


@dataclass(frozen=True)
class RunFiles:
    """One run found on disk.

    Attributes:
        name: run name, relative to its LOGDIR (prefixed when several LOGDIRs are watched).
        path: the run directory.
        files: its event files, in creation order.
    """

    name: str
    path: str
    files: tuple[str, ...]


@dataclass
class _Listing:
    stamp: tuple[int, int, int]  # (mtime_ns, ctime_ns, size) of the directory when listed
    subdirs: list[tuple[str, tuple[int, int]]]  # path, (dev, ino)
    run: RunFiles | None


class Discoverer:
    """Finds runs under one LOGDIR, again and again, cheaply.

    A directory is listed again only when its own mtime/ctime/size changed (a file or
    subdirectory was created, removed or renamed in it); otherwise its last listing
    stands. So a poll of a quiet tree of thousands of runs costs one ``stat`` per
    directory instead of listing every directory and stat'ing every entry.

    Args:
        logdir: the log directory.
        prefix: run-name prefix (several LOGDIRs).
        on_warning: ``(key, message)`` for a directory that cannot be listed.
    """

    def __init__(self, logdir: str, prefix: str = "", on_warning: Callable[[str, str], None] | None = None) -> None:
        self.logdir, self.prefix, self.on_warning = logdir, prefix, on_warning
        self._listings: dict[str, _Listing] = {}

    def runs(self) -> list[RunFiles]:
        """Return the runs under the LOGDIR, sorted by name.

        Symlinked directories are followed once each (a loop ends where it began).

        Raises:
            LogdirError: the LOGDIR does not exist, is not a directory, or cannot be listed.
        """
        logdir = self.logdir
        try:
            root = os.stat(logdir)
        except FileNotFoundError:
            self._listings.clear()
            raise LogdirError(f"log directory does not exist: {logdir}") from None
        except OSError as e:
            raise LogdirError(f"cannot access log directory {logdir}: {e.strerror}") from None
        if not stat.S_ISDIR(root.st_mode):
            raise LogdirError(f"not a directory: {logdir}")
        if not os.access(logdir, os.R_OK | os.X_OK):
            raise LogdirError(f"cannot read log directory: {logdir}")
        seen = {(root.st_dev, root.st_ino)}
        runs: list[RunFiles] = []
        stack = [(logdir, root)]
        listed: dict[str, _Listing] = {}
        while stack:
            path, st = stack.pop()
            stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            listing = self._listings.get(path)
            if listing is None or listing.stamp != stamp:
                listing = self._list(path, stamp)
                if listing is None:
                    continue
            listed[path] = listing
            if listing.run is not None:
                runs.append(listing.run)
            for sub, key in listing.subdirs:
                if key in seen:
                    continue
                seen.add(key)
                try:
                    stack.append((sub, os.stat(sub)))
                except OSError:
                    continue  # gone meanwhile
        self._listings = listed
        runs.sort(key=lambda r: natural_key(r.name))
        return runs

    def _list(self, path: str, stamp: tuple[int, int, int]) -> _Listing | None:
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return None  # removed while we walked
        except OSError as e:
            if self.on_warning is not None:
                self.on_warning(f"dir:{path}", f"cannot list {path}: {e.strerror}; skipped")
            return None
        files: list[str] = []
        subdirs: list[tuple[str, tuple[int, int]]] = []
        for entry in entries:
            try:
                if entry.is_dir():
                    st = entry.stat()
                    subdirs.append((entry.path, (st.st_dev, st.st_ino)))
                elif is_event_file(entry.name) and entry.is_file():
                    files.append(entry.path)
            except OSError:
                continue  # a dangling symlink, or gone meanwhile
        run = None
        if files:
            rel = os.path.relpath(path, self.logdir)
            name = rel if not self.prefix else (self.prefix if rel == "." else f"{self.prefix}/{rel}")
            files.sort(key=lambda p: natural_key(os.path.basename(p)))
            run = RunFiles(name, path, tuple(files))
        return _Listing(stamp, subdirs, run)


def discover(
    logdir: str,
    prefix: str = "",
    on_warning: Callable[[str, str], None] | None = None,
) -> list[RunFiles]:
    """Return the runs under ``logdir``, sorted by name (one-shot :class:`Discoverer`).

    Raises:
        LogdirError: ``logdir`` does not exist, is not a directory, or cannot be listed.
    """
    return Discoverer(logdir, prefix, on_warning).runs()


def logdir_prefixes(logdirs: list[str]) -> list[str]:
    """Run-name prefixes for several LOGDIRs: none for one, else distinct basenames."""
    if len(logdirs) == 1:
        return [""]
    out: list[str] = []
    for d in logdirs:
        base = os.path.basename(os.path.normpath(os.path.abspath(d))) or "root"
        name, k = base, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out
