"""The systemd units pass `systemd-analyze verify` and carry the hardening they promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "systemd"
HARDENING = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "RestrictAddressFamilies=",
    "DynamicUser=yes",
    "StateDirectory=hjepa-watch",
    "EnvironmentFile=-/etc/hjepa-watch/secrets.env",
    "Type=notify",
]


@pytest.mark.parametrize("unit,instance", [("hjepa-watch.service", None), ("hjepa-watch@.service", "srv-logs")])
def test_units_verify(tmp_path, unit, instance) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs Debian's systemd)")
    text = (UNITS / unit).read_text()
    for key in HARDENING:
        assert key in text, key
    # Verify the unit as installed, with ExecStart pointing at this environment's command.
    exe = Path(sys.executable).with_name("hjepa-watch")
    (tmp_path / unit).write_text(text.replace("/opt/hjepa-watch/bin/hjepa-watch", str(exe)))
    target = tmp_path / unit
    if instance:
        target = tmp_path / unit.replace("@.", f"@{instance}.")
        target.symlink_to(tmp_path / unit)
    p = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
