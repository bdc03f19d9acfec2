"""Rule files as pydantic models (DESIGN.md §5): every key checked, every error one line.

Fields whose meaning depends on the condition (threshold, clear, window, reduce, ...)
are validated after ``condition`` with messages that say what the condition needs,
instead of pydantic's one-error-per-union-member noise.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from hjepa_watch.rules.selectors import PatternError, compile_pattern

Condition = Literal[
    "above",
    "below",
    "outside",
    "inside",
    "nonfinite",
    "trend_up",
    "trend_down",
    "spike",
    "drop_from_max",
    "rise_from_min",
    "stale",
]
RANGE_CONDITIONS = ("outside", "inside")
LEVEL_CONDITIONS = ("above", "below", "outside", "inside")
WINDOWED = ("trend_up", "trend_down", "spike")
Reduce = Literal["mean", "median", "min", "max", "last"]
Severity = Literal["info", "warning", "critical"]

#: Names every template may use; rules add their captures and static labels.
TEMPLATE_FIELDS = (
    *("run", "rule", "metric", "value", "stat", "threshold", "step"),
    *("severity", "segment", "wall_time", "state", "condition"),
)
_SAMPLE = {"run": "run", "rule": "rule", "metric": "m", "value": 1.5, "stat": 1.5, "threshold": 1.0, "step": 10}
_SAMPLE |= {"severity": "warning", "segment": 0, "wall_time": 1.7e9, "state": "firing", "condition": "above"}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class Span:
    """A window, ``for`` or ``keep_firing_for``: a number of points or a duration.

    Attributes:
        points: consecutive points (None for a duration).
        seconds: wall-clock seconds of the writer's timestamps (None for points).
    """

    points: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return f"{self.points} points" if self.points is not None else f"{self.seconds:g}s"


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"500ms"`` -> seconds.

    Raises:
        ValueError: not of that form.
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (like 30s, 10m, 2h, 1d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_span(value: Any, what: str, allow_zero: bool = False) -> Span:
    """A points count (int) or a duration string as a :class:`Span`."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of points or a duration, not {value!r}")
    if isinstance(value, int):
        if value < 0 or (value == 0 and not allow_zero):
            raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'} points, not {value}")
        return Span(points=value)
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds <= 0 and not allow_zero:
            raise ValueError(f"{what} must be a positive duration, not {value!r}")
        return Span(seconds=seconds)
    raise ValueError(f"{what} must be a number of points (like 50) or a duration (like 10m), not {value!r}")


def _number(value: Any, what: str) -> float:
    if isinstance(value, str):
        # YAML 1.1 reads 1e-6 (no dot, or no exponent sign) as a string: accept it.
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{what} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if math.isnan(value):
        raise ValueError(f"{what} must not be NaN")
    return float(value)


def _level(value: Any, condition: str, what: str) -> float | tuple[float, float]:
    if condition in RANGE_CONDITIONS:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ValueError(f"{what} must be [low, high] for condition {condition}, not {value!r}")
        low, high = (_number(v, what) for v in value)
        if low > high:
            raise ValueError(f"{what} [low, high] has low > high: {value!r}")
        return (low, high)
    if isinstance(value, list | tuple):
        raise ValueError(f"{what} must be a single number for condition {condition}, not a list")
    return _number(value, what)


def template_fields(template: str) -> list[str]:
    """The field names a template refers to.

    Raises:
        ValueError: a malformed template, or a field with attribute or index access.
    """
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"malformed template {template!r}: {e}") from None
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        if not field or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
            raise ValueError(f"template field {{{field}}} must be a plain name (no positions, attributes or indexes)")
        names.append(field)
        if spec and "{" in spec:
            raise ValueError(f"template field {{{field}}} has a nested field in its format spec")
    return names


class Rule(BaseModel):
    """One alert rule (DESIGN.md §5). Field order matters: later checks use earlier fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str
    condition: Condition
    metric: str
    also: list[str] = Field(default_factory=list)
    runs: str = "*"
    threshold: Any = Field(default=None, validate_default=True)
    window: Any = Field(default=None, validate_default=True)
    reduce: Reduce | None = None
    mode: Literal["factor", "zscore"] = "factor"
    direction: Literal["up", "down", "both"] = "up"
    normalize: bool = False
    for_: Any = Field(default=0, alias="for", validate_default=True)
    clear: Any = None
    keep_firing_for: Any = None
    warmup: int = Field(default=0, ge=0)
    until: int | None = Field(default=None, gt=0)
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"rule name {v!r} may use letters, digits and _ . : - only")
        return v

    @field_validator("metric", "runs")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            compile_pattern(v)
        except PatternError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("also")
    @classmethod
    def _also(cls, v: list[str], info: ValidationInfo) -> list[str]:
        metric = info.data.get("metric")
        own = set(compile_pattern(metric).captures) if metric else set()
        for alt in v:
            try:
                p = compile_pattern(alt)
            except PatternError as e:
                raise ValueError(str(e)) from None
            extra = set(p.captures) - own
            if extra:
                raise ValueError(f"also pattern {alt!r} captures {sorted(extra)}, which metric does not")
        return v

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: Any, info: ValidationInfo) -> Any:
        cond = info.data.get("condition")
        if cond is None:
            return v
        if cond == "nonfinite":
            if v is not None:
                raise ValueError("condition nonfinite takes no threshold")
            return None
        if v is None:
            shape = "[low, high]" if cond in RANGE_CONDITIONS else "a number"
            raise ValueError(f"condition {cond} needs a threshold ({shape})")
        if cond == "stale" and isinstance(v, str):
            return parse_duration(v)
        t = _level(v, cond, "threshold")
        if cond == "spike" and t <= 0:
            raise ValueError("threshold of spike must be > 0 (a factor, or a z-score)")
        if cond in ("drop_from_max", "rise_from_min", "stale") and t <= 0:
            raise ValueError(f"threshold of {cond} must be > 0")
        if cond == "drop_from_max" and t > 1:
            raise ValueError("threshold of drop_from_max is a fraction of the maximum, in (0, 1]")
        return t

    @field_validator("window")
    @classmethod
    def _window(cls, v: Any, info: ValidationInfo) -> Span | None:
        cond = info.data.get("condition")
        if v is None:
            if cond in WINDOWED:
                raise ValueError(f"condition {cond} needs a window (points, or a duration like 10m)")
            return None
        if cond in ("nonfinite", "stale"):
            raise ValueError(f"condition {cond} takes no window")
        span = parse_span(v, "window")
        if cond in ("trend_up", "trend_down") and span.points is not None and span.points < 3:
            raise ValueError("a trend needs a window of at least 3 points")
        return span

    @field_validator("reduce")
    @classmethod
    def _reduce(cls, v: str | None, info: ValidationInfo) -> str | None:
        cond = info.data.get("condition")
        if v is not None and cond not in (*LEVEL_CONDITIONS, "drop_from_max", "rise_from_min"):
            raise ValueError(f"condition {cond} takes no reduce")
        return v

    @field_validator("for_")
    @classmethod
    def _for(cls, v: Any) -> Span:
        return parse_span(v, "for", allow_zero=True)

    @field_validator("keep_firing_for")
    @classmethod
    def _keep(cls, v: Any) -> Span | None:
        return None if v is None else parse_span(v, "keep_firing_for")

    @field_validator("clear")
    @classmethod
    def _clear(cls, v: Any, info: ValidationInfo) -> Any:
        cond, t = info.data.get("condition"), info.data.get("threshold")
        if v is None or cond is None:
            return v
        if cond in ("nonfinite", "stale"):
            raise ValueError(f"condition {cond} takes no clear level")
        c = _level(v, cond, "clear")
        if t is None:
            return c
        bad = {
            "above": lambda: c > t,
            "below": lambda: c < t,
            "outside": lambda: c[0] < t[0] or c[1] > t[1],
            "inside": lambda: c[0] > t[0] or c[1] < t[1],
        }.get(cond, lambda: c > t)
        if bad():
            raise ValueError(f"clear {v!r} must lie on the healthy side of threshold {t!r} (hysteresis)")
        return c

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        metric = info.data.get("metric")
        clash = set(v) & set(compile_pattern(metric).captures) if metric else set()
        if clash:
            raise ValueError(f"labels {sorted(clash)} are also captured by metric; rename one")
        for k in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                raise ValueError(f"label name {k!r} must be a plain name")
        return v

    @field_validator("summary")
    @classmethod
    def _summary(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _check_template(v, info)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for text in v.values():
            _check_template(text, info)
        return v


def _check_template(text: str, info: ValidationInfo) -> str:
    metric = info.data.get("metric")
    allowed = set(TEMPLATE_FIELDS) | set(info.data.get("labels") or {})
    if metric:
        allowed |= set(compile_pattern(metric).captures)
    fields = template_fields(text)
    for f in fields:
        if f not in allowed:
            raise ValueError(f"template names unknown field {{{f}}}; known: {', '.join(sorted(allowed))}")
    sample = {f: _SAMPLE.get(f, "x") for f in allowed}
    if info.data.get("threshold") is not None:
        sample["threshold"] = info.data["threshold"]
    try:
        text.format_map(sample)
    except (ValueError, TypeError) as e:
        raise ValueError(f"template {text!r} does not format: {e}") from None
    return text


class RuleFile(BaseModel):
    """A rule file: ``rules: [...]``, optionally on top of other files.

    Attributes:
        include: rule files loaded first (``default``: the bundled H-JEPA pack; paths
            are relative to this file). A rule here with the name of an included
            rule replaces it.
        disable: names of included rules to drop.
        rules: this file's rules.
    """

    model_config = ConfigDict(extra="forbid")

    include: list[str] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
