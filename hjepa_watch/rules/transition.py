"""Alert transitions: the objects evaluation emits, their summaries and their JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

from hjepa_watch.alerts import AlertKey, AlertState
from hjepa_watch.rules.schema import Rule

_PHRASE = {
    "above": "is above",
    "below": "is below",
    "outside": "is outside",
    "inside": "is inside",
    "nonfinite": "is not finite",
    "trend_up": "trends up beyond",
    "trend_down": "trends down beyond",
    "spike": "spiked past",
    "drop_from_max": "fell from its maximum by more than",
    "rise_from_min": "rose from its minimum by more than",
    "stale": "has not been written for more than (s)",
}


def default_summary(rule: Rule) -> str:
    """The summary used when a rule has none."""
    if rule.condition == "nonfinite":
        return "{metric} of {run} is {value} at step {step}"
    return "{metric} of {run} " + _PHRASE[rule.condition] + " {threshold} ({stat:.4g} at step {step})"


def render(template: str, fields: dict) -> str:
    """Fill a template with plain named fields (validated at load time: no code runs)."""
    try:
        return template.format_map(fields)
    except (ValueError, TypeError, KeyError, IndexError):
        return template  # a value of an unexpected type: say the template, never crash


@dataclass
class Transition:
    """One alert transition: the JSON line of DESIGN.md §4.

    Attributes:
        key: the alert's identity.
        state: pending, firing or resolved.
        metric: the tag that triggered it.
        severity, step, wall_time, value, segment, summary: as in DESIGN.md §4.
        stat: the condition's statistic (the window mean, slope, spike factor, ...).
        threshold: the rule's threshold.
        annotations: rendered annotations of the rule.
    """

    key: AlertKey
    state: AlertState
    metric: str
    severity: str
    step: int
    wall_time: float
    value: float
    segment: int
    summary: str
    stat: float
    threshold: object
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The JSON object of DESIGN.md §4, plus ``stat``, ``threshold`` and annotations."""
        out = {
            "type": "alert",
            "rule": self.key.rule,
            "run": self.key.run,
            "metric": self.metric,
            "labels": self.key.label_dict,
            "state": self.state.value,
            "severity": self.severity,
            "step": self.step,
            "wall_time": self.wall_time,
            "value": self.value,
            "segment": self.segment,
            "summary": self.summary,
            "stat": self.stat,
            "threshold": list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        return out
