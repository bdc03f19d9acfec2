"""Durable state in one SQLite file: offsets, run and alert state, series windows, history, outbox.

Everything the daemon needs to go on after a restart or a crash exactly where it
stopped is written in one transaction per processed batch: the file's new offset,
the run's segment state, the alert instances and series windows the batch changed,
and its transitions. So a crash loses nothing and repeats nothing: either the batch
and all its effects are in, or none of them, and it is read again.

Series windows are stored as ring buffers of points (one row per point slot), so a
commit costs in proportion to the new points, never to the window sizes.

WAL mode; ``synchronous=NORMAL`` (a process crash loses nothing committed; a power
cut may lose the last commits, which are then read again: still exactly once).
The schema is versioned with ``PRAGMA user_version`` and migrated forward; a newer
or damaged database is a :class:`StateError`, never rewritten.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 2
#: Points kept per series window across restarts when a rule's window is a duration.
DURATION_RING = 4096

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE files (
        path TEXT PRIMARY KEY, run TEXT NOT NULL, offset INTEGER NOT NULL, dev INTEGER, ino INTEGER,
        head BLOB, tail BLOB, corrupt_skipped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE runs (name TEXT PRIMARY KEY, path TEXT NOT NULL, state TEXT NOT NULL);
    CREATE TABLE alerts (
        rule TEXT NOT NULL, run TEXT NOT NULL, labels TEXT NOT NULL, tag TEXT NOT NULL,
        state TEXT NOT NULL, active_at REAL, fired_at REAL, resolved_at REAL, last_sent_at REAL,
        data TEXT NOT NULL, PRIMARY KEY (rule, run, labels)
    );
    CREATE TABLE series (
        id INTEGER PRIMARY KEY, run TEXT NOT NULL, tag TEXT NOT NULL, segment INTEGER NOT NULL,
        start_step INTEGER NOT NULL, count INTEGER NOT NULL, ring INTEGER NOT NULL, UNIQUE (run, tag)
    );
    CREATE TABLE points (
        series INTEGER NOT NULL, slot INTEGER NOT NULL, segment INTEGER NOT NULL, seq INTEGER NOT NULL,
        step INTEGER NOT NULL, wall REAL NOT NULL, value REAL, PRIMARY KEY (series, slot)
    ) WITHOUT ROWID;
    CREATE TABLE history (
        id INTEGER PRIMARY KEY, rule TEXT NOT NULL, run TEXT NOT NULL, labels TEXT NOT NULL,
        metric TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL, step INTEGER NOT NULL,
        wall_time REAL NOT NULL, value REAL, segment INTEGER NOT NULL, summary TEXT NOT NULL,
        stat REAL, threshold TEXT, recorded_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX history_identity ON history (rule, run, labels, state, segment, step, wall_time);
    CREATE INDEX history_time ON history (wall_time);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY, history_id INTEGER NOT NULL REFERENCES history (id), channel TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL, last_error TEXT, created_at REAL NOT NULL, sent_at REAL
    );
    CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
    """,
    2: """
    ALTER TABLE outbox ADD COLUMN payload TEXT;
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY, run TEXT NOT NULL, rule TEXT NOT NULL, comment TEXT,
        created_at REAL NOT NULL, expires_at REAL NOT NULL
    );
    """,
}


class StateError(Exception):
    """The state database cannot be used (damaged, newer schema, unwritable)."""


def default_state_path() -> str:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME`` or ~/.local/state, + hjepa-watch/state.db."""
    if os.environ.get("STATE_DIRECTORY"):
        return str(Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "state.db")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "hjepa-watch" / "state.db")


@dataclass
class SeriesRows:
    """A series window as stored: its segment bookkeeping and its points in order."""

    run: str
    tag: str
    segment: int
    start_step: int
    count: int
    step: np.ndarray
    wall: np.ndarray
    value: np.ndarray


def _num(x: float | None) -> float | None:
    """SQLite has no NaN: store NaN as NULL (and read NULL back as NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class StateDB:
    """The daemon's SQLite state.

    Args:
        path: the database file (created with its directory if missing).
        readonly: open for reading only (``history``).

    Raises:
        StateError: the file is not a database, is damaged, has a newer schema, or
            cannot be created or written.
    """

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        try:
            if readonly:
                if not os.path.exists(path):
                    raise StateError(f"no state database at {path}")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA busy_timeout=10000")  # the sender thread writes too
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            ok = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise StateError(f"state database {path} is damaged ({ok}); move it aside to start afresh")
            self._migrate(readonly)
        except sqlite3.DatabaseError as e:
            raise StateError(f"state database {path} cannot be used: {e}") from None
        except OSError as e:
            raise StateError(f"cannot create the state database {path}: {e.strerror}") from None

    def _migrate(self, readonly: bool) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema v{version}, newer than this hjepa-watch's "
                f"v{SCHEMA_VERSION}: upgrade hjepa-watch, or use another --state"
            )
        if version == SCHEMA_VERSION:
            return
        if readonly:
            raise StateError(f"state database {self.path} has schema v{version}; run the daemon once to migrate it")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executescript(_MIGRATIONS[v].replace("\n    ", "\n"))
            except sqlite3.DatabaseError:
                self.db.execute("ROLLBACK")
                raise
            # executescript commits; set the version in its own transaction.
            self.db.execute(f"PRAGMA user_version={v}")

    def close(self) -> None:
        """Close the connection (everything is already committed)."""
        self.db.close()

    # -- loading -------------------------------------------------------------

    def files(self) -> list[dict]:
        """Every file's saved reading position."""
        cols = ("path", "run", "offset", "dev", "ino", "head", "tail", "corrupt_skipped")
        return [dict(zip(cols, r, strict=True)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM files")]

    def runs(self) -> list[dict]:
        """Every run's saved decoder and segment state."""
        return [
            {"name": n, "path": p, **json.loads(s)} for n, p, s in self.db.execute("SELECT name, path, state FROM runs")
        ]

    def alerts(self) -> list[dict]:
        """Every alert instance's saved state."""
        out = []
        q = "SELECT rule, run, labels, tag, state, active_at, fired_at, resolved_at, last_sent_at, data FROM alerts"
        for rule, run, labels, tag, state, active, fired, resolved, sent, data in self.db.execute(q):
            out.append(
                {
                    "rule": rule,
                    "run": run,
                    "labels": json.loads(labels),
                    "tag": tag,
                    "state": state,
                    "active_at": active,
                    "fired_at": fired,
                    "resolved_at": resolved,
                    "last_sent_at": sent,
                    **json.loads(data),
                }
            )
        return out

    def series(self) -> list[SeriesRows]:
        """Every series window, points in order."""
        out = []
        for sid, run, tag, segment, start, count in self.db.execute(
            "SELECT id, run, tag, segment, start_step, count FROM series"
        ).fetchall():
            rows = self.db.execute(
                "SELECT step, wall, value FROM points WHERE series = ? AND segment = ? ORDER BY seq", (sid, segment)
            ).fetchall()
            step = np.array([r[0] for r in rows], np.int64)
            wall = np.array([r[1] for r in rows], np.float64)
            value = np.array([np.nan if r[2] is None else r[2] for r in rows], np.float64)
            out.append(SeriesRows(run, tag, segment, start, count, step, wall, value))
        return out

    # -- committing ----------------------------------------------------------

    def commit(
        self,
        *,
        files: Iterable[dict] = (),
        runs: Iterable[dict] = (),
        alerts: Iterable[dict] = (),
        series: Iterable[tuple[SeriesRows, int, int]] = (),
        transitions: Iterable[dict] = (),
        route: Callable[[dict], tuple[list[str], str | None]] | None = None,
    ) -> list[dict]:
        """Write one batch's effects atomically.

        Args:
            files: file positions (as :meth:`files` returns them).
            runs: run states.
            alerts: alert instance states.
            series: (window with only its *new* points, their first sequence number,
                ring size) per changed series.
            transitions: JSON objects of DESIGN.md §4.
            route: for a new transition, the channels to notify and a JSON payload
                (the chart's data) to queue with it in the outbox.

        Returns:
            The transitions that were new (not already in the history).
        """
        now = time.time()
        db = self.db
        fresh: list[dict] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO files (path, run, offset, dev, ino, head, tail, corrupt_skipped) "
                "VALUES (:path, :run, :offset, :dev, :ino, :head, :tail, :corrupt_skipped)",
                list(files),
            )
            db.executemany(
                "INSERT OR REPLACE INTO runs (name, path, state) VALUES (?, ?, ?)",
                [
                    (r["name"], r["path"], json.dumps({k: v for k, v in r.items() if k not in ("name", "path")}))
                    for r in runs
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO alerts (rule, run, labels, tag, state, active_at, fired_at, resolved_at, "
                "last_sent_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_alert_row(a) for a in alerts],
            )
            for rows, first_seq, ring in series:
                self._write_series(rows, first_seq, ring)
            for t in transitions:
                cur = db.execute(
                    "INSERT OR IGNORE INTO history (rule, run, labels, metric, state, severity, step, wall_time, "
                    "value, segment, summary, stat, threshold, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        t["rule"],
                        t["run"],
                        json.dumps(t["labels"], sort_keys=True),
                        t["metric"],
                        t["state"],
                        t["severity"],
                        t["step"],
                        t["wall_time"],
                        _num(t["value"]),
                        t["segment"],
                        t["summary"],
                        _num(t.get("stat")),
                        json.dumps(t.get("threshold")),
                        now,
                    ),
                )
                if cur.rowcount:
                    fresh.append(t)
                    channels, payload = route(t) if route is not None else ([], None)
                    for ch in channels:
                        db.execute(
                            "INSERT INTO outbox (history_id, channel, created_at, payload) VALUES (?, ?, ?, ?)",
                            (cur.lastrowid, ch, now, payload),
                        )
            db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StateError(f"cannot write the state database {self.path}: {e}") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return fresh

    def _write_series(self, rows: SeriesRows, first_seq: int, ring: int) -> None:
        db = self.db
        db.execute(
            "INSERT INTO series (run, tag, segment, start_step, count, ring) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run, tag) DO UPDATE SET segment = excluded.segment, start_step = excluded.start_step, "
            "count = excluded.count, ring = excluded.ring",
            (rows.run, rows.tag, rows.segment, rows.start_step, rows.count, ring),
        )
        sid = db.execute("SELECT id FROM series WHERE run = ? AND tag = ?", (rows.run, rows.tag)).fetchone()[0]
        n = len(rows.step)
        keep = min(n, ring)
        seqs = range(first_seq + n - keep, first_seq + n)
        db.executemany(
            "INSERT OR REPLACE INTO points (series, slot, segment, seq, step, wall, value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (sid, s % ring, rows.segment, s, int(st), float(w), _num(float(v)))
                for s, st, w, v in zip(
                    seqs,
                    rows.step[-keep:].tolist(),
                    rows.wall[-keep:].tolist(),
                    rows.value[-keep:].tolist(),
                    strict=True,
                )
            ],
        )
        # Ring slots of an older segment, or beyond a smaller ring, must not come back.
        db.execute(
            "DELETE FROM points WHERE series = ? AND (segment != ? OR seq < ? OR slot >= ?)",
            (sid, rows.segment, rows.count - ring, ring),
        )

    # -- silences ------------------------------------------------------------

    def add_silence(self, run: str, rule: str, seconds: float, comment: str = "", now: float | None = None) -> int:
        """Mute notifications of matching alerts (globs) for ``seconds``; return its id."""
        now = time.time() if now is None else now
        cur = self.db.execute(
            "INSERT INTO silences (run, rule, comment, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (run, rule, comment, now, now + seconds),
        )
        return int(cur.lastrowid)

    def silences(self, now: float | None = None, active_only: bool = True) -> list[dict]:
        """Silences (the active ones by default)."""
        now = time.time() if now is None else now
        q = "SELECT id, run, rule, comment, created_at, expires_at FROM silences"
        rows = self.db.execute(q + (" WHERE expires_at > ?" if active_only else ""), (now,) if active_only else ())
        cols = ("id", "run", "rule", "comment", "created_at", "expires_at")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def expire_silence(self, sid: int, now: float | None = None) -> bool:
        """End a silence now; False if there is none with that id."""
        now = time.time() if now is None else now
        cur = self.db.execute("UPDATE silences SET expires_at = ? WHERE id = ? AND expires_at > ?", (now, sid, now))
        return cur.rowcount > 0

    # -- outbox --------------------------------------------------------------

    def due(self, now: float) -> list[dict]:
        """Pending notifications whose next attempt is due, with their transitions."""
        q = (
            "SELECT o.id, o.channel, o.attempts, o.created_at, o.payload, h.rule, h.run, h.labels, h.metric, "
            "h.state, h.severity, h.step, h.wall_time, h.value, h.segment, h.summary, h.stat, h.threshold "
            "FROM outbox o JOIN history h ON h.id = o.history_id "
            "WHERE o.status = 'pending' AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?) ORDER BY o.id"
        )
        cols = ("id", "channel", "attempts", "created_at", "payload", "rule", "run", "labels", "metric", "state")
        cols += ("severity", "step", "wall_time", "value", "segment", "summary", "stat", "threshold")
        out = []
        for r in self.db.execute(q, (now,)).fetchall():
            d = dict(zip(cols, r, strict=True))
            d["labels"] = json.loads(d["labels"])
            d["threshold"] = json.loads(d["threshold"]) if d["threshold"] else None
            d["value"] = math.nan if d["value"] is None else d["value"]
            d["payload"] = json.loads(d["payload"]) if d["payload"] else None
            out.append(d)
        return out

    def mark(self, ids: list[int], status: str, now: float, error: str | None = None, retry_at: float | None = None):
        """Record the outcome of an attempt for outbox rows."""
        self.db.executemany(
            "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?, next_attempt_at = ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
            [(status, error, retry_at, status, now, i) for i in ids],
        )

    def last_firing(self, rule: str, run: str, labels: dict) -> tuple[int, dict] | None:
        """The newest firing transition of an alert: (history id, DESIGN.md §4 object)."""
        row = self.db.execute(
            "SELECT id, metric, severity, step, wall_time, value, segment, summary, stat, threshold FROM history "
            "WHERE rule = ? AND run = ? AND labels = ? AND state = 'firing' ORDER BY id DESC LIMIT 1",
            (rule, run, json.dumps(labels, sort_keys=True)),
        ).fetchone()
        if row is None:
            return None
        hid, metric, severity, step, wall, value, segment, summary, stat, threshold = row
        return hid, {
            "type": "alert",
            "rule": rule,
            "run": run,
            "labels": labels,
            "metric": metric,
            "state": "firing",
            "severity": severity,
            "step": step,
            "wall_time": wall,
            "value": math.nan if value is None else value,
            "segment": segment,
            "summary": summary,
            "stat": stat,
            "threshold": json.loads(threshold) if threshold else None,
        }

    def enqueue(self, history_id: int, channels: list[str], payload: str | None = None) -> None:
        """Queue one more notification of a past transition (a reminder)."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT INTO outbox (history_id, channel, created_at, payload) VALUES (?, ?, ?, ?)",
                [(history_id, ch, now, payload) for ch in channels],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def outbox(self) -> list[dict]:
        """Every outbox row (for inspection and tests)."""
        cols = ("id", "history_id", "channel", "status", "attempts", "last_error", "sent_at")
        return [dict(zip(cols, r, strict=True)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM outbox")]

    # -- history -------------------------------------------------------------

    def history(self, limit: int | None = None) -> list[dict]:
        """Past transitions, oldest first (the newest ``limit`` if given)."""
        q = (
            "SELECT rule, run, labels, metric, state, severity, step, wall_time, value, segment, summary, stat "
            "FROM history ORDER BY wall_time DESC, id DESC"
        )
        rows = self.db.execute(q + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        cols = ("rule", "run", "labels", "metric", "state", "severity", "step", "wall_time", "value", "segment")
        out = []
        for r in reversed(rows):
            d = dict(zip((*cols, "summary", "stat"), r, strict=True))
            d["labels"] = json.loads(d["labels"])
            d["value"] = math.nan if d["value"] is None else d["value"]
            out.append({"type": "alert", **d})
        return out


def _alert_row(a: dict) -> tuple:
    core = ("rule", "run", "labels", "tag", "state", "active_at", "fired_at", "resolved_at", "last_sent_at")
    data = {k: v for k, v in a.items() if k not in core}
    return (
        a["rule"],
        a["run"],
        json.dumps(a["labels"], sort_keys=True),
        a["tag"],
        a["state"],
        a["active_at"],
        a["fired_at"],
        a["resolved_at"],
        a["last_sent_at"],
        json.dumps(data, allow_nan=True),
    )
