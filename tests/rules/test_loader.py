"""Rule files: good fixtures load, every bad fixture reports each error at its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hjepa_watch.rules.loader import RuleLoadError, load_rules
from hjepa_watch.rules.pack import default_pack
from hjepa_watch.rules.selectors import PatternError, compile_pattern

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"


def _expectations(path: Path) -> list[tuple[int, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"# expect: (\d+): (.*)", line)
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return out


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.good.yaml")), ids=lambda p: p.name)
def test_good_fixtures_load(path) -> None:
    assert load_rules([str(path)])


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.bad.yaml")), ids=lambda p: p.name)
def test_bad_fixtures_report_each_error_at_its_line(path) -> None:
    with pytest.raises(RuleLoadError) as e:
        load_rules([str(path)])
    got = [(err.line, err.message) for err in e.value.errors]
    want = _expectations(path)
    assert len(got) == len(want), got
    for (gl, gm), (wl, wm) in zip(got, want, strict=True):
        assert gl == wl and gm.startswith(wm), (gl, gm, wl, wm)
    assert all(str(err).startswith(f"{path}:{err.line}: ") for err in e.value.errors)


def test_default_pack_is_valid() -> None:
    assert len(load_rules([default_pack()])) >= 5


def test_duplicate_names_across_files(tmp_path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("rules:\n  - {name: x, metric: m, condition: nonfinite}\n")
    b.write_text(
        "rules:\n  - {name: y, metric: m, condition: nonfinite}\n  - {name: x, metric: m, condition: nonfinite}\n"
    )
    with pytest.raises(RuleLoadError) as e:
        load_rules([str(tmp_path)])
    (err,) = e.value.errors
    assert err.file.endswith("b.yaml") and err.line == 3 and "duplicate name" in err.message


def test_check_rules_cli_exit_codes() -> None:
    def run(*paths):
        return subprocess.run(
            [sys.executable, "-m", "hjepa_watch", "check-rules", *map(str, paths)], capture_output=True, text=True
        )

    ok = run(FIXTURES / "basic.good.yaml")
    assert ok.returncode == 0 and "7 rules OK" in ok.stdout
    bad = run(*sorted(FIXTURES.glob("*.yaml")))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    n = sum(len(_expectations(p)) for p in FIXTURES.glob("*.bad.yaml"))
    assert len([ln for ln in bad.stderr.splitlines() if re.match(r".+\.yaml:\d+: ", ln)]) == n
    missing = run(FIXTURES / "nope.yaml")
    assert missing.returncode == 1 and "no such file" in missing.stderr


@pytest.mark.parametrize(
    "pattern,name,labels",
    [
        ("train/loss", "train/loss", {}),
        ("train/loss", "train/loss/total", None),
        ("train/*", "train/loss/total", {}),
        ("train/collapse/level{level}_std_sqrt_d", "train/collapse/level12_std_sqrt_d", {"level": "12"}),
        ("train/collapse/level{level}_std_sqrt_d", "train/collapse/level1/x_std_sqrt_d", None),
        ("x/[ab]?", "x/bz", {}),
        ("x/[!ab]", "x/a", None),
        ("a.b", "aXb", None),
    ],
)
def test_selectors(pattern, name, labels) -> None:
    assert compile_pattern(pattern).match(name) == labels


@pytest.mark.parametrize("bad", ["", "x{", "x}", "{a}{a}", "{}", "{a-b}", "x[ab"])
def test_bad_selectors(bad) -> None:
    with pytest.raises(PatternError):
        compile_pattern(bad)


def test_exponent_thresholds_that_yaml_reads_as_strings(tmp_path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("rules:\n  - {name: lr, metric: m, condition: below, threshold: 1e-12}\n")
    (r,) = load_rules([str(f)])
    assert r.rule.threshold == 1e-12
