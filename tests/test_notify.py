"""Notifications through real servers on 127.0.0.1: an HTTP server (json://) and aiosmtpd (mailto://)."""

from __future__ import annotations

import base64
import email
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hjepa_watch.notify.channels import Channel, Redactor, masked
from hjepa_watch.notify.message import render, sample_alert
from hjepa_watch.notify.outbox import Sender, send
from hjepa_watch.state import StateDB

from .test_daemon import Daemon

SECRET = "S3cretT0kenXYZ"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook:
    """A real HTTP server that records JSON posts; can answer errors for a while."""

    def __init__(self, port: int | None = None, fail_with: int | None = None) -> None:
        self.posts: list[dict] = []
        self.fail_with = fail_with
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hook.fail_with:
                    self.send_response(hook.fail_with)
                    self.end_headers()
                    return
                hook.posts.append(json.loads(data))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, user: str = "") -> str:
        return f"json://{user + '@' if user else ''}127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self) -> None:
            self.messages: list[email.message.Message] = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    handler = Handler()
    port = free_port()
    c = Controller(handler, hostname="127.0.0.1", port=port)
    c.start()
    yield handler, port
    c.stop()


def _alert(**kw) -> dict:
    base = sample_alert(time.time())
    base.update(run="exp/a", step=900, wall_time=time.time() - 30, summary="level 0 of exp/a collapsed")
    return {**base, **kw}


def test_message_fields_and_hint() -> None:
    title, body = render([_alert()], time.time())
    assert title == "[CRITICAL] collapse_std firing on exp/a (level=0)"
    for part in (
        "exp/a",
        "train/collapse/level0_std_sqrt_d",
        "0.05",
        "threshold 0.1",
        "step 900",
        "firing for",
        "what to check",
    ):
        assert part in body
    title, _ = render([_alert(), _alert(rule="grad_spike", severity="warning")], time.time())
    assert title == "[CRITICAL] 2 alerts on exp/a (2 firing)"


def test_email_with_chart_through_a_real_smtp_server(smtp) -> None:
    handler, port = smtp
    url = f"mailto://127.0.0.1:{port}?to=ops@example.org&from=hjepa@example.org&mode=insecure"
    from hjepa_watch.notify.chart import render_png

    png = render_png(list(range(50)), [1.0] * 40 + [0.05] * 10, title="t", threshold=0.1, firing_from=40)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    title, body = render([_alert()], time.time())
    assert send(Channel(masked(url), url), title, body, png).ok
    (msg,) = handler.messages
    assert msg["Subject"] == title and msg["To"] == "ops@example.org"
    parts = list(msg.walk())
    assert any("collapse_std" in (p.get_payload(decode=True) or b"").decode(errors="ignore") for p in parts)
    pngs = [p for p in parts if p.get_content_type() == "image/png"]
    assert pngs and pngs[0].get_payload(decode=True)[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_delivery_and_permanent_failure(hook, tmp_path) -> None:
    assert send(Channel("h", hook.url()), "t", "b").ok
    assert hook.posts[0]["title"] == "t" and hook.posts[0]["message"] == "b"
    hook.fail_with = 404
    out = send(Channel("h", hook.url()), "t", "b")
    assert not out.ok and out.permanent
    hook.fail_with = 503
    out = send(Channel("h", hook.url()), "t", "b")
    assert not out.ok and not out.permanent


def test_redactor_and_masking() -> None:
    url = f"slack://T1JJ3T3L2/A1BRTD4JD/{SECRET}/#alerts"
    assert SECRET not in masked(url)
    assert SECRET not in Redactor([url])(f"error posting to {url}: token {SECRET} refused")


def _rules(tmp_path: Path) -> Path:
    r = tmp_path / "rules.yaml"
    r.write_text(
        "rules:\n"
        "  - {name: loss_nan, metric: 'train/loss/{part}', condition: nonfinite, severity: critical}\n"
        "  - {name: loss_spike, metric: 'train/loss/{part}', condition: spike, threshold: 5, window: 3}\n"
    )
    return r


def _config(tmp_path: Path, url: str, **extra) -> Path:
    cfg = tmp_path / "config.yaml"
    lines = [f"channels: {{team: '{url}'}}", "group_wait: 0"] + [f"{k}: {v}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    cfg.chmod(0o600)
    return cfg


def _write(logdir: Path, name: str, values: list[float]) -> None:
    from .conftest import write_torch_scalars

    write_torch_scalars(logdir / name, [("train/loss/total", v, s) for s, v in enumerate(values)])


def test_daemon_retries_until_the_server_is_up_exactly_once_each(tmp_path) -> None:
    port = free_port()  # nothing listens here yet
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    d = Daemon(logdir, state, _rules(tmp_path), "--config", str(_config(tmp_path, f"json://127.0.0.1:{port}/hook")))
    _write(logdir, "a", [1, 1, 1, 1, float("nan")])
    _write(logdir, "b", [1, float("inf")])
    d.wait_for(lambda: len(d.lines) == 2)
    d.wait_for(lambda: any("will retry" in e for e in d.err))
    time.sleep(1.0)
    hook = Hook(port)
    try:
        deadline = time.monotonic() + 60
        while len(hook.posts) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # and nothing more arrives
        assert sorted(p["title"] for p in hook.posts) == [
            "[CRITICAL] loss_nan firing on a (part=total)",
            "[CRITICAL] loss_nan firing on b (part=total)",
        ]
    finally:
        d.stop()
        hook.close()
    rows = StateDB(str(state)).outbox()
    assert [r["status"] for r in rows] == ["sent", "sent"] and all(r["attempts"] >= 2 for r in rows)


def test_pending_notifications_survive_sigkill(tmp_path) -> None:
    port = free_port()
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    cfg = _config(tmp_path, f"json://127.0.0.1:{port}/hook")
    d = Daemon(logdir, state, _rules(tmp_path), "--config", str(cfg))
    _write(logdir, "a", [1, float("nan")])
    d.wait_for(lambda: len(d.lines) == 1)
    d.p.kill()
    d.p.wait()
    assert [r["status"] for r in StateDB(str(state)).outbox()] == ["pending"]
    hook = Hook(port)
    try:
        d2 = Daemon(logdir, state, _rules(tmp_path), "--config", str(cfg))
        deadline = time.monotonic() + 30
        while not hook.posts and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        d2.stop()
        assert len(hook.posts) == 1 and d2.lines == []
    finally:
        hook.close()


def test_grouping_silence_and_inhibition(tmp_path, hook) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    cfg = _config(tmp_path, hook.url())
    cfg.write_text(cfg.read_text().replace("group_wait: 0", "group_wait: 2"))
    d = Daemon(logdir, state, _rules(tmp_path), "--config", str(cfg))
    # One run, two alerts at once: one message. The spike comes while loss is non-finite: inhibited.
    from .conftest import write_torch_scalars

    write_torch_scalars(
        logdir / "a",
        [("train/loss/total", v, s) for s, v in enumerate([1, 1, 1, float("nan")])]
        + [("train/loss/h0", v, s) for s, v in enumerate([1, 1, 1, 50])],
    )
    d.wait_for(lambda: len(d.lines) >= 2)
    deadline = time.monotonic() + 20
    while not hook.posts and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.5)
    assert len(hook.posts) == 1
    assert {x["rule"] for x in d.lines} == {"loss_nan", "loss_spike"}
    assert "loss_spike" not in hook.posts[0]["message"]  # inhibited by the run's non-finite loss
    d.stop()
    # A silence mutes a new alert of run b; the history still has it.
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "silence", "--state", str(state), "add", "--run", "b*", "--for", "1h"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and "silence 1" in p.stdout
    d = Daemon(logdir, state, _rules(tmp_path), "--config", str(cfg))
    _write(logdir, "b", [1, float("nan")])
    d.wait_for(lambda: len(d.lines) == 1)
    time.sleep(3)
    d.stop()
    assert len(hook.posts) == 1


def test_secret_never_in_logs_database_or_dashboard(tmp_path) -> None:
    port = free_port()
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    url = f"json://admin:{SECRET}@127.0.0.1:{port}/{SECRET}"
    d = Daemon(logdir, state, _rules(tmp_path), "--config", str(_config(tmp_path, url)))
    _write(logdir, "a", [1, float("nan")])
    d.wait_for(lambda: any("will retry" in e for e in d.err))
    d.stop()
    assert SECRET not in "\n".join(d.err)
    files = [state, Path(str(state) + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    assert SECRET.encode() not in raw


def test_notify_test_command(hook) -> None:
    import subprocess
    import sys

    bad = f"json://127.0.0.1:{free_port()}/x"
    p = subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "notify-test", hook.url(), bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1
    assert p.stdout.splitlines()[0].startswith("ok") and "failed" in p.stdout.splitlines()[1]
    (post,) = hook.posts
    assert post["title"].startswith("[TEST]")
    att = post.get("attachments") or []
    assert att and base64.b64decode(att[0]["base64"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_routing_by_severity_with_resolved_opt_in_and_repeats(tmp_path) -> None:
    crit, warn = Hook(), Hook()
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"channels: {{crit: '{crit.url()}', warn: '{warn.url()}'}}\n"
        "group_wait: 0\nrepeat_interval: 1.5s\n"
        "routes:\n"
        "  - {match: {severity: critical}, channels: [crit], send_resolved: true}\n"
        "  - {match: {severity: warning, rule: 'loss_*'}, channels: [warn]}\n"
    )
    cfg.chmod(0o600)
    try:
        d = Daemon(logdir, state, _rules(tmp_path), "--config", str(cfg))
        _write(logdir, "a", [1, 1, 1, 1, float("nan"), 1, 1, 1, 1, 50, 1])
        _write(logdir, "b", [1, float("nan")])  # stays firing: reminders
        d.wait_for(lambda: len(d.lines) >= 5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            len(warn.posts) >= 1 and sum("on b" in p["title"] for p in crit.posts) >= 2
        ):
            time.sleep(0.1)
        d.stop()
        titles = [p["title"] for p in crit.posts]
        text = "\n".join(p["message"] for p in crit.posts)
        assert "**loss_nan** FIRING on **a**" in text
        assert "**loss_nan** RESOLVED on **a**" in text  # opted in for critical (may share a message)
        assert sum(t == "[CRITICAL] loss_nan firing on b (part=total)" for t in titles) >= 2  # a reminder
        assert [p["title"] for p in warn.posts] == ["[WARNING] loss_spike firing on a (part=total)"]  # no resolved
    finally:
        crit.close()
        warn.close()


def test_apprise_config_file_channels(tmp_path, hook) -> None:
    from hjepa_watch.notify.channels import make_channels

    conf = tmp_path / "apprise.yml"
    conf.write_text(f"urls:\n  - {hook.url()}:\n      tag: oncall\n")
    (ch,) = make_channels([], None, str(conf))
    assert ch.name == "oncall" and send(ch, "t", "b").ok and hook.posts


def test_slack_message_formatting(monkeypatch) -> None:
    """Slack itself is unreachable here: its HTTP boundary is replaced, apprise's payload checked."""
    import apprise.plugins.slack as slack

    sent = []

    class Response:
        status_code = 200
        content = b"ok"
        text = "ok"

    def fake(method, url, data=None, **kw):
        sent.append((url, json.loads(data)))
        return Response()

    monkeypatch.setattr(slack.requests, "request", fake)
    title, body = render([_alert()], time.time())
    url = f"slack://T1JJ3T3L2/A1BRTD4JD/{SECRET}/#alerts"
    assert send(Channel(masked(url), url), title, body).ok
    ((hook_url, payload),) = sent
    assert hook_url.startswith("https://hooks.slack.com/services/")
    text = json.dumps(payload)
    assert title in text and "level 0 of exp/a collapsed" in text and "what to check" in text
    assert "**" not in text  # Markdown bold became Slack's own formatting


def test_two_hundred_simultaneous_alerts_make_one_message(tmp_path, hook) -> None:
    state = StateDB(str(tmp_path / "s.db"))
    transitions = [_alert(labels={"i": str(i)}, step=i, wall_time=1e9 + i) for i in range(200)]
    state.commit(transitions=transitions, route=lambda t: (["team"], None))
    sender = Sender(str(tmp_path / "s.db"), [Channel("team", hook.url())])
    assert sender.deliver_due() == 1
    (post,) = hook.posts
    assert post["title"] == "[CRITICAL] 200 alerts on exp/a (200 firing)"
    assert "and 180 more" in post["message"]
    assert {r["status"] for r in state.outbox()} == {"sent"}
    assert sender.deliver_due() == 0  # nothing is sent twice


def test_world_readable_config_with_secrets_is_warned_about(tmp_path, hook) -> None:
    logdir, state = tmp_path / "logs", tmp_path / "state.db"
    logdir.mkdir()
    cfg = _config(tmp_path, hook.url())
    cfg.chmod(0o644)
    d = Daemon(logdir, state, _rules(tmp_path), "--config", str(cfg))
    d.wait_for(lambda: any("readable by others" in e for e in d.err))
    d.stop()
