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


def discover(
    logdir: str,
    prefix: str = "",
    on_warning: Callable[[str, str], None] | None = None,
) -> list[RunFiles]:
    """Return the runs under ``logdir``, sorted by name.

    Symlinked directories are followed once each (a loop ends where it began);
    directories that cannot be listed are reported through ``on_warning(key,
    message)`` and skipped.

    Raises:
        LogdirError: ``logdir`` does not exist, is not a directory, or cannot be listed.
    """
    try:
        root = os.stat(logdir)
    except FileNotFoundError:
        raise LogdirError(f"log directory does not exist: {logdir}") from None
    except OSError as e:
        raise LogdirError(f"cannot access log directory {logdir}: {e.strerror}") from None
    if not os.path.isdir(logdir):
        raise LogdirError(f"not a directory: {logdir}")
    if not os.access(logdir, os.R_OK | os.X_OK):
        raise LogdirError(f"cannot read log directory: {logdir}")
    seen = {(root.st_dev, root.st_ino)}
    runs: list[RunFiles] = []
    stack = [logdir]
    while stack:
        path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError as e:
            if on_warning is not None:
                on_warning(f"dir:{path}", f"cannot list {path}: {e.strerror}; skipped")
            continue
        files = []
        for entry in entries:
            try:
                if entry.is_dir():
                    st = entry.stat()
                    key = (st.st_dev, st.st_ino)
                    if key not in seen:
                        seen.add(key)
                        stack.append(entry.path)
                elif is_event_file(entry.name) and entry.is_file():
                    files.append(entry.path)
            except OSError:
                continue  # a dangling symlink, or gone meanwhile
        if files:
            rel = os.path.relpath(path, logdir)
            name = rel if not prefix else (prefix if rel == "." else f"{prefix}/{rel}")
            files.sort(key=lambda p: natural_key(os.path.basename(p)))
            runs.append(RunFiles(name, path, tuple(files)))
    runs.sort(key=lambda r: natural_key(r.name))
    return runs


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
