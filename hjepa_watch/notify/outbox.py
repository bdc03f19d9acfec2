"""Delivering the outbox: grouped, retried with backoff and jitter, never blocking evaluation.

The daemon writes every notification into the outbox in the same transaction as
its transition; this sender, in its own thread with its own database connection,
sends what is due and records the outcome. Delivery is at-least-once: a row is
marked sent only after apprise reports success; a crash in between sends it again
on restart. Rows are deduplicated upstream (one per transition and channel).

Failures: a transient one (network down, HTTP 5xx, SMTP refusing) is retried with
exponential backoff and jitter; a permanent one (HTTP 4xx, authentication, a URL
apprise does not know) is reported once and kept in the database as ``failed``.
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apprise

from hjepa_watch.notify.channels import Channel, ChannelError, Redactor
from hjepa_watch.notify.chart import render_png
from hjepa_watch.notify.message import render
from hjepa_watch.state import StateDB

_PERMANENT = re.compile(
    r"error=4(?!08|29)\d\d|\b4(?!08|29)\d\d\b.*(?:Bad Request|Unauthorized|Forbidden|Not Found)|"
    r"[Aa]uthenticat|535",
    re.S,
)


@dataclass
class Outcome:
    """The result of one send attempt."""

    ok: bool
    permanent: bool = False
    error: str = ""


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.lines.append(record.getMessage())


_send_lock = threading.Lock()  # the apprise logger is process-wide: one capture at a time


def send(channel: Channel, title: str, body: str, png: bytes | None = None) -> Outcome:
    """Send one message through one channel; classify a failure."""
    try:
        plugin = channel.plugin()
    except ChannelError as e:
        return Outcome(False, True, str(e))
    attach = None
    tmp = None
    if png is not None and getattr(plugin, "attachment_support", False):
        tmp = tempfile.NamedTemporaryFile(prefix="hjepa-watch-", suffix=".png", delete=False)  # noqa: SIM115
        tmp.write(png)
        tmp.close()
        attach = apprise.AppriseAttachment(tmp.name)
    capture = _Capture()
    logger = logging.getLogger("apprise")
    with _send_lock:
        logger.addHandler(capture)
        try:
            ok = plugin.notify(body=body, title=title, body_format=apprise.NotifyFormat.MARKDOWN, attach=attach)
        except Exception as e:  # a plugin bug must not kill the sender
            ok = False
            capture.lines.append(f"{type(e).__name__}: {e}")
        finally:
            logger.removeHandler(capture)
            if tmp is not None:
                Path(tmp.name).unlink(missing_ok=True)
    if ok:
        return Outcome(True)
    error = "; ".join(capture.lines) or "the service did not accept the message"
    return Outcome(False, bool(_PERMANENT.search(error)), error)


def backoff(attempts: int, rng: random.Random, base: float = 2.0, cap: float = 600.0) -> float:
    """Seconds before the next attempt: exponential, capped, with ±50% jitter."""
    return min(cap, base * 2 ** max(attempts - 1, 0)) * rng.uniform(0.5, 1.5)


class Sender:
    """Sends due outbox rows, grouped per channel and run.

    Args:
        state_path: the state database (opened again: SQLite connections are per thread).
        channels: the configured channels, by name.
        group_wait: seconds to wait for more alerts of the same run before sending.
        max_group: alerts per message; more pending for one channel make one digest.
        on_notice: told once about each permanent failure.
        clock: wall clock.
    """

    def __init__(
        self,
        state_path: str,
        channels: list[Channel],
        *,
        group_wait: float = 0.0,
        max_group: int = 20,
        on_notice: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.state_path = state_path
        self.channels = {c.name: c for c in channels}
        self.group_wait = group_wait
        self.max_group = max_group
        self.on_notice = on_notice
        self.clock = clock
        self.redact = Redactor([c.url for c in channels])
        self.rng = random.Random(seed)
        self.wake = threading.Event()
        self._db: StateDB | None = None
        self.sent = 0
        self.failed = 0

    def _state(self) -> StateDB:
        if self._db is None:
            self._db = StateDB(self.state_path)
        return self._db

    def deliver_due(self) -> int:
        """Send everything due now; return the number of messages sent."""
        db = self._state()
        now = self.clock()
        rows = db.due(now)
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            groups.setdefault((r["channel"], r["run"]), []).append(r)
        # Rate limit: many runs alerting at once on one channel become one digest.
        by_channel: dict[str, list[list[dict]]] = {}
        for (ch, _), items in groups.items():
            if now - min(i["created_at"] for i in items) >= self.group_wait:
                by_channel.setdefault(ch, []).append(items)
        messages = 0
        for ch, batches in by_channel.items():
            if len(batches) > 1 and sum(len(b) for b in batches) > self.max_group:
                batches = [[r for b in batches for r in b]]
            for items in batches:
                messages += self._send_group(db, ch, items, now)
        return messages

    def _send_group(self, db: StateDB, name: str, items: list[dict], now: float) -> int:
        ids = [i["id"] for i in items]
        channel = self.channels.get(name)
        if channel is None:
            db.mark(ids, "failed", now, f"channel {name} is no longer configured")
            self._tell(f"notification to {name} dropped: the channel is no longer configured")
            return 0
        title, body = render(items, now)
        png = self._chart(items)
        outcome = send(channel, title, body, png)
        if outcome.ok:
            db.mark(ids, "sent", now)
            self.sent += 1
            return 1
        error = self.redact(outcome.error)[:500]
        attempts = max(i["attempts"] for i in items) + 1
        if outcome.permanent:
            db.mark(ids, "failed", now, error)
            self.failed += 1
            self._tell(f"notification to {name} failed for good ({len(ids)} alerts kept in the database): {error}")
        else:
            db.mark(ids, "pending", now, error, now + backoff(attempts, self.rng))
            if attempts == 1:
                self._tell(f"notification to {name} failed, will retry: {error}")
        return 0

    def _chart(self, items: list[dict]) -> bytes | None:
        d = next((i for i in items if i["state"] == "firing" and i.get("payload")), None)
        if d is None:
            return None
        p = d["payload"]
        try:
            return render_png(
                p["steps"],
                p["values"],
                title=f"{d['metric']} · {d['run']}",
                threshold=d["threshold"] if isinstance(d["threshold"], int | float | list) else None,
                firing_from=p.get("since", d["step"]),
            )
        except Exception:  # a chart is a nicety: text goes out without it
            return None

    def _tell(self, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(self.redact(message))

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Deliver until ``stop`` is set; then one last pass (the outbox flush)."""
        while not stop.is_set():
            try:
                self.deliver_due()
            except Exception as e:  # keep sending whatever happens; say what happened
                self._tell(f"notification sender error: {type(e).__name__}: {e}")
            self.wake.wait(interval)
            self.wake.clear()
        try:
            self.deliver_due()
        finally:
            if self._db is not None:
                self._db.close()


def notify_test(urls: list[str], now: float) -> list[tuple[str, Outcome]]:
    """Send a sample alert, with a chart, through each URL; (masked URL, outcome) per URL."""
    from hjepa_watch.notify.channels import masked
    from hjepa_watch.notify.message import sample_alert

    alert = sample_alert(now)
    title, body = render([alert], now)
    steps = list(range(0, 1300, 10))
    values = [0.9 if s < 1000 else max(0.9 - (s - 1000) / 200, 0.05) for s in steps]
    png = render_png(steps, values, title=f"{alert['metric']} · {alert['run']}", threshold=0.1, firing_from=1180)
    redact = Redactor(urls)
    out = []
    for url in urls:
        outcome = send(Channel(masked(url), url), "[TEST] " + title, body, png)
        outcome.error = redact(outcome.error)
        out.append((masked(url), outcome))
    return out
