"""The command line as users run it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import write_torch_scalars


def hjepa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hjepa_watch", *args], capture_output=True, text=True, timeout=120)


def test_replay_prints_summary_line(tmp_path) -> None:
    write_torch_scalars(tmp_path / "r1", [("a", float(i), i) for i in range(10)])
    write_torch_scalars(tmp_path / "r2", [("a", float("nan"), 1)])
    p = hjepa("replay", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert last["type"] == "summary"
    assert {k: last[k] for k in ("runs", "files", "scalars", "corrupt_records", "alerts_fired")} == {
        "runs": 2,
        "files": 2,
        "scalars": 11,
        "corrupt_records": 0,
        "alerts_fired": 0,
    }
    assert last["seconds"] >= 0


def test_replay_reports_corrupt_record_in_one_line(tmp_path) -> None:
    path = write_torch_scalars(tmp_path, [("a", float(i), i) for i in range(10)])
    b = bytearray(Path(path).read_bytes())
    b[200] ^= 1
    Path(path).write_bytes(bytes(b))
    p = hjepa("replay", str(tmp_path), "--json")
    assert p.returncode == 0
    assert json.loads(p.stdout.splitlines()[-1])["corrupt_records"] == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupt record at offset" in lines[0] and "Traceback" not in p.stderr


def test_missing_logdir_is_one_line_exit_2(tmp_path) -> None:
    p = hjepa("replay", str(tmp_path / "nope"))
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "does not exist" in p.stderr


def test_logdir_that_is_a_file_exit_2(tmp_path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    p = hjepa("replay", str(f))
    assert p.returncode == 2 and "not a directory" in p.stderr and "Traceback" not in p.stderr


def test_usage_error_exit_2() -> None:
    p = hjepa("replay")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert hjepa().returncode == 2


def test_daemon_side_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import hjepa_watch, hjepa_watch.cli, hjepa_watch.events.tailer, hjepa_watch.replay\n"
        "print('ok')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
