"""``hjepa-watch test-rules``: unit tests for rule files (DESIGN.md §6, promtool's idea, by step).

A test feeds series written in a compact notation to the rules, step by step, and
checks which alerts are firing at given steps::

    values: "1.0x5 0.5 0.05x6 _ nan inf -inf 1+0.5x3"

``a`` one value; ``axn`` a repeated n+1 times; ``a+bxn`` / ``a-bxn`` a ramp of n+1
values; ``_`` (or ``_xn``) no point at that step (or n+1 steps); ``nan``, ``inf``,
``-inf``. Point i of a series is at step ``start_step + i * interval`` and at writer
time ``start_time + step * seconds_per_step``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hjepa_watch.alerts import AlertKey, AlertState
from hjepa_watch.events.segments import SegmentTracker
from hjepa_watch.events.tailer import ScalarBatch
from hjepa_watch.rules.evaluate import Evaluator
from hjepa_watch.rules.loader import PositionedYaml, RuleError, RuleLoadError, error_message, load_rules, yaml_error
from hjepa_watch.rules.transition import Transition

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(
    rf"^(?P<a>_|nan|[-+]?inf|{_NUM})(?:(?P<op>[-+])(?P<b>{_NUM[5:]}))?(?:x(?P<n>\d+))?$",
    re.IGNORECASE,
)


def parse_series(text: str) -> list[float | None]:
    """Expand the compact notation; None marks a gap.

    Raises:
        ValueError: a token that is not of the notation.
    """
    out: list[float | None] = []
    for tok in str(text).split():
        m = _TOKEN.match(tok)
        if not m:
            raise ValueError(f"cannot read {tok!r} (forms: a, axn, a+bxn, a-bxn, _, _xn, nan, inf, -inf)")
        a, op, b, n = m.group("a"), m.group("op"), m.group("b"), m.group("n")
        count = int(n) + 1 if n is not None else 1
        if a == "_":
            if op:
                raise ValueError(f"a gap cannot ramp: {tok!r}")
            out += [None] * count
            continue
        start = float(a)
        if op and n is None:
            raise ValueError(f"a ramp needs a count: {tok!r} (like {a}{op}{b}x10)")
        step = (float(b) if op == "+" else -float(b)) if op else 0.0
        if op and not math.isfinite(start):
            raise ValueError(f"cannot ramp from {a}: {tok!r}")
        out += [start + step * k for k in range(count)]
    return out


class _Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str
    labels: dict[str, str] = Field(default_factory=dict)
    run: str | None = None
    summary: str | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _str_labels(cls, v):
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at_step: int
    firing: list[_Expected]


class _Series(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str
    values: str
    run: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, v):
        v = str(v)
        parse_series(v)
        return v


class _Test(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    interval: int = Field(default=1, gt=0)
    start_step: int = 0
    seconds_per_step: float = Field(default=1.0, gt=0)
    start_time: float = 1.7e9
    run: str = "test-run"
    input_series: list[_Series]
    expect: list[_Check]


class _TestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_files: list[str]
    tests: list[_Test]


@dataclass
class Failure:
    """One failed check."""

    test: str
    step: int
    expected: list[str]
    got: list[str]
    detail: str = ""

    def __str__(self) -> str:
        exp = ", ".join(self.expected) or "(none)"
        got = ", ".join(self.got) or "(none)"
        extra = f"\n    {self.detail}" if self.detail else ""
        return (
            f"  test {self.test!r}, at step {self.step}:\n    expected firing: {exp}\n    got firing:      {got}{extra}"
        )


@dataclass
class TestResult:
    """The outcome of one test of a file."""

    file: str
    name: str
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0


def _key_text(rule: str, labels: dict[str, str], run: str | None = None) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{rule}{{{inner}}}" + (f" in {run}" if run else "")


def _matches(exp: _Expected, key: AlertKey, last: dict[AlertKey, Transition]) -> bool:
    if exp.rule != key.rule or (exp.run is not None and exp.run != key.run):
        return False
    labels = key.label_dict
    if any(labels.get(k) != v for k, v in exp.labels.items()):
        return False
    if exp.summary is not None:
        t = last.get(key)
        return t is not None and t.summary == exp.summary
    return True


def run_test(test: _Test, rules, file: str) -> TestResult:
    """Feed a test's series to the rules step by step and check the expectations."""
    result = TestResult(file, test.name)
    ev = Evaluator(rules)
    captured = {k for r in ev.rules for k in _captures(r)}
    points: dict[int, list[tuple[str, str, float]]] = {}
    for s in test.input_series:
        for i, v in enumerate(parse_series(s.values)):
            if v is not None:
                step = test.start_step + i * test.interval
                points.setdefault(step, []).append((s.run or test.run, s.metric, v))
    checks = sorted(test.expect, key=lambda c: c.at_step)
    steps = sorted(set(points) | {c.at_step for c in checks})
    tags: dict[str, list[str]] = {}
    trackers: dict[str, SegmentTracker] = {}
    last: dict[AlertKey, Transition] = {}
    ci = 0
    for step in steps:
        wall = test.start_time + step * test.seconds_per_step
        by_run: dict[str, list[tuple[str, float]]] = {}
        for run, metric, v in points.get(step, []):
            by_run.setdefault(run, []).append((metric, v))
        transitions = ev.tick(wall)
        for run, rows in by_run.items():
            table = tags.setdefault(run, [])
            ids = []
            for metric, _ in rows:
                if metric not in table:
                    table.append(metric)
                ids.append(table.index(metric))
            tag_id = np.array(ids, np.int32)
            steps_arr = np.full(len(rows), step, np.int64)
            seg = trackers.setdefault(run, SegmentTracker()).assign(tag_id, steps_arr)
            batch = ScalarBatch(
                run,
                "<test>",
                table,
                tag_id,
                steps_arr,
                np.full(len(rows), wall),
                np.array([v for _, v in rows]),
                seg,
                0,
            )
            transitions += ev.process(batch)
        for t in transitions:
            last[t.key] = t
        while ci < len(checks) and checks[ci].at_step == step:
            _check(checks[ci], ev, last, captured, result)
            ci += 1
    return result


def _captures(rule) -> set[str]:
    from hjepa_watch.rules.selectors import compile_pattern

    return set(compile_pattern(rule.metric).captures)


def _check(check: _Check, ev: Evaluator, last, captured, result: TestResult) -> None:
    firing = [k for k, a in ev.alerts().items() if a.state is AlertState.FIRING]
    unmatched = list(firing)
    ok = True
    for exp in check.firing:
        hit = next((k for k in unmatched if _matches(exp, k, last)), None)
        if hit is None:
            ok = False
        else:
            unmatched.remove(hit)
    if unmatched:
        ok = False
    if not ok:
        detail = ""
        summaries = [f"{k.rule}: {last[k].summary!r}" for k in firing if k in last]
        if any(e.summary for e in check.firing) and summaries:
            detail = "summaries: " + "; ".join(summaries)
        result.failures.append(
            Failure(
                result.name,
                check.at_step,
                [_key_text(e.rule, e.labels, e.run) for e in check.firing],
                [_key_text(k.rule, {a: b for a, b in k.labels if a in captured}, None) for k in firing],
                detail,
            )
        )


def load_test_file(path: str) -> tuple[_TestFile, list]:
    """Load a test file and the rules it names (relative to the test file).

    Raises:
        RuleLoadError: the test file or its rule files have errors.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RuleLoadError([RuleError(path, 0, f"cannot read: {e.strerror}")]) from None
    pos = PositionedYaml(text, path)
    try:
        data = pos.load()
    except yaml.YAMLError as e:
        raise RuleLoadError([yaml_error(path, e)]) from None
    if pos.errors:
        raise RuleLoadError(pos.errors)
    try:
        tf = _TestFile.model_validate(data)
    except ValidationError as e:
        errs = []
        for err in e.errors():
            loc, msg = error_message(err, data)
            errs.append(RuleError(path, pos.line_of(loc), msg.replace("rule #", "test #")))
        raise RuleLoadError(errs) from None
    base = Path(path).parent
    rules = load_rules([str(base / f) for f in tf.rule_files])
    return tf, rules


def run_files(
    paths: list[str],
    clock: Callable[[], float],
    on_result: Callable[[TestResult], None] | None = None,
) -> list[TestResult]:
    """Run every test of every file."""
    results = []
    for path in paths:
        tf, rules = load_test_file(path)
        for test in tf.tests:
            t0 = clock()
            r = run_test(test, rules, path)
            r.seconds = clock() - t0
            results.append(r)
            if on_result is not None:
                on_result(r)
    return results


def write_junit(results: list[TestResult], path: str) -> None:
    """JUnit XML, one testsuite per file."""
    root = ET.Element("testsuites")
    by_file: dict[str, list[TestResult]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, rs in by_file.items():
        suite = ET.SubElement(
            root, "testsuite", name=file, tests=str(len(rs)), failures=str(sum(bool(r.failures) for r in rs))
        )
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=file, name=r.name, time=f"{r.seconds:.3f}")
            if r.failures:
                f = ET.SubElement(case, "failure", message=f"{len(r.failures)} check(s) failed")
                f.text = "\n".join(map(str, r.failures))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
