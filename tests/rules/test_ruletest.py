"""test-rules: the series notation, passing and failing tests, exit codes, JUnit."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hjepa_watch.ruletest import parse_series

REPO = Path(__file__).resolve().parents[2]


def test_series_notation() -> None:
    got = parse_series("1 2x2 1+0.5x2 5-1x1 _ _x1 nan inf -inf 1e-3")
    assert got[:10] == [1, 2, 2, 2, 1, 1.5, 2, 5, 4, None]
    assert got[10:12] == [None, None]
    assert math.isnan(got[12]) and got[13] == math.inf and got[14] == -math.inf and got[15] == 1e-3


@pytest.mark.parametrize("bad", ["1+", "abc", "1x", "_+1x2", "1+2"])
def test_series_notation_errors(bad) -> None:
    with pytest.raises(ValueError):
        parse_series(bad)


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hjepa_watch", "test-rules", *map(str, args)], capture_output=True, text=True
    )


def test_default_pack_tests_pass() -> None:
    p = _run(REPO / "rules" / "tests")
    assert p.returncode == 0, p.stdout + p.stderr
    assert ", 0 failed" in p.stdout


RULES = """rules:
  - name: high
    metric: "m/{k}"
    condition: above
    threshold: 1
    for: 2
    summary: "{k} at {value:g}"
"""


def _files(tmp_path, expect: str) -> Path:
    (tmp_path / "r.yaml").write_text(RULES)
    t = tmp_path / "t.yaml"
    t.write_text(
        "rule_files: [r.yaml]\ntests:\n  - name: two\n    interval: 10\n    input_series:\n"
        '      - {metric: m/a, values: "0 2 2 2"}\n      - {metric: m/b, values: "0 0 5 5"}\n'
        f"    expect:\n{expect}"
    )
    return t


def test_pass_with_labels_and_summary(tmp_path) -> None:
    t = _files(
        tmp_path,
        "      - {at_step: 10, firing: []}\n"
        "      - {at_step: 20, firing: [{rule: high, labels: {k: a}, summary: 'a at 2'}]}\n",
    )
    p = _run(t)
    assert p.returncode == 0 and "1 passed, 0 failed" in p.stdout


def test_fail_says_which_test_which_step_expected_and_got(tmp_path) -> None:
    t = _files(tmp_path, "      - {at_step: 30, firing: [{rule: high, labels: {k: a}}]}\n")
    junit = tmp_path / "junit.xml"
    p = _run(t, "--junit", junit)
    assert p.returncode == 1
    assert "test 'two', at step 30" in p.stdout
    assert 'expected firing: high{k="a"}' in p.stdout
    assert (
        'got firing:      high{k="a"}, high{k="b"}' in p.stdout
        or 'got firing:      high{k="b"}, high{k="a"}' in p.stdout
    )
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "1"


def test_malformed_test_file_is_a_line_error(tmp_path) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    t = tmp_path / "t.yaml"
    t.write_text(
        "rule_files: [r.yaml]\ntests:\n  - name: x\n    input_series:\n"
        "      - {metric: m, values: '1 2 zz'}\n    expect: []\n"
    )
    p = _run(t)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"{t}:5: " in p.stderr and "zz" in p.stderr
