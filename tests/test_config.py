"""Configuration precedence (argument > environment > file > default) and sd_notify."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from hjepa_watch.config import ConfigError, load_settings


def test_precedence(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("poll_interval: 5\ncorrupt_grace: 7\nlogdirs: [/from/file]\nrules: [r.yaml]\n")
    assert load_settings({}, str(cfg)).poll_interval == 5
    monkeypatch.setenv("HJEPA_WATCH_POLL_INTERVAL", "3")
    monkeypatch.setenv("HJEPA_WATCH_LOGDIRS", "/a,/b")
    s = load_settings({}, str(cfg))
    assert (s.poll_interval, s.logdirs, s.corrupt_grace, s.rules) == (3, ["/a", "/b"], 7, ["r.yaml"])
    s = load_settings({"poll_interval": 1.5, "logdirs": ["/arg"]}, str(cfg))
    assert (s.poll_interval, s.logdirs) == (1.5, ["/arg"])
    monkeypatch.setenv("HJEPA_WATCH_CONFIG", str(cfg))
    assert load_settings({}).corrupt_grace == 7
    assert load_settings({}, None).state is None  # default


def test_errors_name_the_setting_and_source(tmp_path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings({}, str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("logdirs: [a\n")
    with pytest.raises(ConfigError, match="bad configuration"):
        load_settings({}, str(bad))
    monkeypatch.setenv("HJEPA_WATCH_CORRUPT_GRACE", "-1")
    with pytest.raises(ConfigError, match=r"corrupt_grace.*environment HJEPA_WATCH_CORRUPT_GRACE"):
        load_settings({})


def test_sd_notify_ready_watchdog_stopping(tmp_path) -> None:
    """A real notify socket, as systemd gives one: READY=1, WATCHDOG=1, STOPPING=1."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    (tmp_path / "logs").mkdir()
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen(
        [sys.executable, "-m", "hjepa_watch", str(tmp_path / "logs"), "--state", str(tmp_path / "s.db"), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    got = []
    try:
        while "WATCHDOG=1" not in got or "READY=1" not in got:
            got.append(sock.recv(100).decode())
        p.terminate()
        while "STOPPING=1" not in got:
            got.append(sock.recv(100).decode())
    finally:
        p.kill()
        p.wait()
        sock.close()
    assert got.index("READY=1") < got.index("STOPPING=1")
